"""An open-loop HTTP load generator: a constant offered rate, whatever the server does.

    python -m bench.loadgen SPEC.json OUT.json

Run by bench/http_load.py and bench/ingest.py as a separate process (so the load generator's CPU
is not the server's, and its event loop is not Django's). Request ``k`` is *scheduled* at
``start + k / rate`` and its latency is measured from that scheduled moment, not from when it was
sent: if the server (or the client's connection pool) falls behind, the waiting counts, so
coordinated omission cannot hide latency. gevent + geventhttpclient (installed with locust) keep
hundreds of requests in flight on one core.

SPEC: ``{"base_url", "rate", "duration_s", "concurrency", "kind": "get"|"swipes", "path",
"tokens": [...], "users": [[external_id, token], ...], "candidates": [...], "batch": 20,
"session_prefix": "..."}``. OUT: per request ``[scheduled offset s, latency ms, status, swipes
accepted]`` plus totals.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
from geventhttpclient import HTTPClient  # noqa: E402
from geventhttpclient.url import URL  # noqa: E402


def swipe_body(spec: dict[str, Any], rng: random.Random, k: int) -> tuple[str, bytes, int]:
    user_id, token = spec["users"][k % len(spec["users"])]
    candidates = [c for c in rng.sample(spec["candidates"], spec["batch"] + 1) if c != user_id][: spec["batch"]]
    body = {
        "session_id": f"{spec['session_prefix']}-{k}",
        "timestamp": datetime.now(UTC).isoformat(),
        "swipes": [
            {
                "candidate_id": c,
                "action": rng.choice(("like", "pass", "pass")),
                "duration_ms": rng.randint(300, 6000),
                "event_id": f"{spec['session_prefix']}-{k}-{i}",
            }
            for i, c in enumerate(candidates)
        ],
    }
    return token, json.dumps(body).encode(), len(candidates)


def run(spec: dict[str, Any]) -> dict[str, Any]:
    url = URL(spec["base_url"])
    client = HTTPClient.from_url(
        url, concurrency=spec.get("concurrency", 128), connection_timeout=10, network_timeout=30
    )
    rng = random.Random(spec.get("seed", 1))
    rate, duration = float(spec["rate"]), float(spec["duration_s"])
    n = int(rate * duration)
    results: list[list[Any]] = []
    tokens = spec.get("tokens") or []

    def one(k: int, scheduled: float, start: float) -> None:
        sent = 0
        try:
            if spec["kind"] == "swipes":
                token, body, sent = swipe_body(spec, rng, k)
                headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
                response = client.post(spec["path"], body=body, headers=headers)
            else:
                token = tokens[k % len(tokens)]
                response = client.get(spec["path"], headers={"Authorization": f"Bearer {token}"})
            raw = response.read()
            status = response.status_code
            accepted = 0
            if spec["kind"] == "swipes" and status in (200, 201):
                data = json.loads(raw)
                accepted = data["created"] + data["duplicates"]
        except Exception as exc:
            status, accepted = f"error:{type(exc).__name__}", 0
        done = time.perf_counter()
        results.append([round(scheduled - start, 4), round((done - scheduled) * 1000, 3), status, sent, accepted])

    start = time.perf_counter() + 0.2
    greenlets = []
    for k in range(n):
        scheduled = start + k / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            gevent.sleep(delay)
        greenlets.append(gevent.spawn(one, k, scheduled, start))
    send_end = time.perf_counter()
    gevent.joinall(greenlets, timeout=60)
    unfinished = sum(1 for g in greenlets if not g.dead)
    return {
        "offered_rate": rate,
        "duration_s": duration,
        "requests": n,
        "unfinished": unfinished,
        "send_lag_s": round(send_end - (start + (n - 1) / rate), 3),  # > 0: the generator itself fell behind
        "results": results,
    }


def main() -> None:
    with open(sys.argv[1]) as fh:
        spec = json.load(fh)
    if spec["kind"] == "swipes" and not spec.get("session_prefix"):
        spec["session_prefix"] = f"bench-{uuid.uuid4().hex[:8]}"
    out = run(spec)
    with open(sys.argv[2], "w") as fh:
        json.dump(out, fh)


if __name__ == "__main__":
    main()
