"""The HTTP and database half of deploy/test-image.sh: run on the host against the image's web
and worker processes (started by that script), with the checkout's venv.

    python deploy/image_smoke.py BASE_URL DATABASE_URL SERVICE_KEY

Checks, in order: /livez, then /readyz (waiting while the new process warms up), then the
service's own health report; a batch of profiles through the API, whose embeddings (MiniLM from
the packaged weights) the worker computes from the Redis queue; a user token and that user's
feed. Exits non-zero with the reason on the first failure.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

SF = (37.7749, -122.4194)
BIOS = [
    "Weekend hiker, weekday coffee snob; looking for someone to explore trails with.",
    "Jazz records, long dinners and bad puns. I cook, you choose the wine.",
    "Marathon runner and amateur baker: I will share my sourdough starter.",
    "Bookshop regular, board game night host, always up for a road trip.",
]


def request(base: str, method: str, path: str, key: str = "", body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data else {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(base + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")[:300]


def wait_for(what: str, check: Callable[[], tuple[bool, Any]], seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        try:
            ok, last = check()
        except OSError as exc:  # not listening yet
            ok, last = False, exc
        if ok:
            print(f"ok: {what}")
            return last
        time.sleep(1)
    raise SystemExit(f"FAILED: {what} within {seconds:.0f} s; last: {last}")


def probes(base: str) -> None:
    def answers(path: str) -> Callable[[], tuple[bool, Any]]:
        def check() -> tuple[bool, Any]:
            status, body = request(base, "GET", path)
            return status == 200, (status, body)

        return check

    wait_for("GET /livez answers 200", answers("/livez"), 180)
    wait_for("GET /readyz answers 200", answers("/readyz"), 180)
    status, body = request(base, "GET", "/api/v1/health")
    checks = body.get("checks", {}) if isinstance(body, dict) else {}
    down = sorted(name for name in ("database", "cache", "broker") if not checks.get(name, {}).get("ok"))
    if status != 200 or body.get("mode") != "real" or down:
        raise SystemExit(f"FAILED: /api/v1/health: {status} {body}")
    print(f"ok: GET /api/v1/health: {body['status']}, real mode, database, cache and broker answer")


def profiles(base: str, key: str) -> list[str]:
    items: list[dict[str, Any]] = []
    for i in range(8):
        gender, seeking = ("woman", ["man"]) if i % 2 else ("man", ["woman"])
        items.append(
            {
                "external_id": str(uuid.uuid4()),
                "age": 28 + i,
                "gender": gender,
                "seeking": seeking,
                "lat": SF[0] + i * 0.001,
                "lon": SF[1],
                "bio": BIOS[i % len(BIOS)],
            }
        )
    status, body = request(base, "POST", "/internal/v1/profiles/batch", key, {"profiles": items})
    if status != 201 or body.get("created") != len(items):
        raise SystemExit(f"FAILED: POST /internal/v1/profiles/batch: {status} {body}")
    print(f"ok: {len(items)} profiles created, enqueued {body.get('enqueued')}")
    return [item["external_id"] for item in items]


def embeddings(database_url: str, ids: list[str]) -> None:
    def check() -> tuple[bool, Any]:
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM recommender_profileembedding e JOIN recommender_profile p "
                "ON p.id = e.profile_id WHERE p.external_id::text = ANY(%s)",
                (ids,),
            ).fetchone()
        done = row[0] if row else 0
        return done == len(ids), f"{done} of {len(ids)} embedded"

    wait_for("the worker embedded every new profile (Redis queue, packaged MiniLM)", check, 300)


def feed(base: str, key: str, ids: list[str]) -> None:
    status, body = request(base, "POST", f"/internal/v1/users/{ids[0]}/tokens", key)
    if status != 201 or not str(body.get("token", "")).startswith("put_"):
        raise SystemExit(f"FAILED: POST /internal/v1/users/<id>/tokens: {status} {body}")
    token = body["token"]

    def check() -> tuple[bool, Any]:
        status, body = request(base, "GET", "/api/v1/feed?count=5", token)
        shown = {rec["user_id"] for rec in body.get("recommendations", [])} if status == 200 else set()
        if status >= 500 and status != 503:  # 503 warming_up is expected while the store builds
            raise SystemExit(f"FAILED: GET /api/v1/feed: {status} {str(body)[:300]}")
        if status != 200:
            print(f"   feed answered {status}: {str(body)[:200]}; trying again")
        return bool(shown) and shown <= set(ids[1:]), (status, body)

    status, body = wait_for("GET /api/v1/feed recommends the new profiles", check, 120)[:2]
    print(f"   {len(body['recommendations'])} recommendations, model_version {body['model_version']!r}")


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 64
    base, database_url, key = argv[1].rstrip("/"), argv[2], argv[3]
    probes(base)
    ids = profiles(base, key)
    embeddings(database_url, ids)
    feed(base, key, ids)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
