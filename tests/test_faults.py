"""Faults under load, against a production server (gunicorn, 2 workers) in real mode.

The server runs on its own throw-away PostgreSQL cluster and Redis server (bench/server.py), so
stopping them never disturbs the shared services other tests use; the tests are marked
postgres/redis and run in the real-mode run of CI. One command each::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/patra REDIS_URL=redis://127.0.0.1:6379/0 \
        .venv/bin/pytest tests/test_faults.py -k redis      # or -k postgres

* Redis stopped during a load of feed and swipe requests: feeds still answer (from the database),
  swipes are still stored, health says ``degraded``; Redis back: ``ready`` again, no restart.
* PostgreSQL stopped: every request fails fast with 503 and a clear JSON body; PostgreSQL back:
  requests succeed again, no restart.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
import pytest

from bench.server import (
    Gunicorn,
    ThrowawayPostgres,
    ThrowawayRedis,
    http_json,
    manage,
    service_env,
    wait_until,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

N_USERS = 16
FAST_S = 4.0  # "fails fast": well under any client or load-balancer timeout


@dataclass
class Stack:
    server: Gunicorn
    redis: ThrowawayRedis
    pg: ThrowawayPostgres
    users: list[tuple[str, str]]  # (external id, user token)
    service_key: str
    sent: dict[str, int] = field(default_factory=lambda: {"created": 0})

    def get(self, path: str, token: str = "") -> tuple[int, object, float]:
        return http_json(self.server.url + path, token=token, timeout=15)

    def post(self, path: str, body: object, token: str = "") -> tuple[int, object, float]:
        return http_json(self.server.url + path, method="POST", body=body, token=token, timeout=15)

    def swipe(self, i: int) -> tuple[int, object, float]:
        user_id, token = self.users[i % len(self.users)]
        others = [u for u, _ in self.users if u != user_id]
        body = {
            "session_id": f"s-{uuid.uuid4()}",
            "timestamp": datetime.now(UTC).isoformat(),
            "swipes": [
                {"candidate_id": c, "action": random.choice(["like", "pass"])} for c in random.sample(others, 3)
            ],
        }
        status, data, seconds = self.post("/api/v1/events/swipes", body, token)
        if status in (200, 201):
            self.sent["created"] += data["created"]
        return status, data, seconds

    def feed(self, i: int) -> tuple[int, object, float]:
        return self.get("/api/v1/feed?count=5", self.users[i % len(self.users)][1])

    def stored_swipes(self) -> int:
        with psycopg.connect(self.pg.url()) as conn:
            return conn.execute("SELECT count(*) FROM recommender_swipe").fetchone()[0]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not (ThrowawayPostgres.available() and ThrowawayRedis.available()):
        pytest.fail("the fault tests need the PostgreSQL server binaries and redis-server")
    tmp_path = tmp_path_factory.mktemp("faults")
    pg = ThrowawayPostgres().init()
    redis = ThrowawayRedis()
    server = None
    try:
        pg.start()
        pg.createdb()
        redis.start()
        env = service_env(
            database_url=pg.url(), redis_url=redis.url, var_dir=tmp_path, ML_ENABLED="false", DB_CONNECT_TIMEOUT="2"
        )
        # one process for both (each manage.py start costs seconds of imports)
        script = (
            "from django.core.management import call_command; call_command('migrate', verbosity=0); "
            "call_command('create_service_key', tenant='default', name='faults')"
        )
        key = manage(env, "shell", "-c", script).strip().splitlines()[-1]
        server = Gunicorn(env, workers=2, log_path=tmp_path / "gunicorn.log").start()
        users = []
        for i in range(N_USERS):
            man = i % 2 == 0
            ext = str(uuid.uuid4())
            profile = {
                "external_id": ext,
                "age": 30,
                "gender": "man" if man else "woman",
                "seeking": ["woman"] if man else ["man"],
                "lat": 37.77,
                "lon": -122.42,
                "bio": f"fault test profile {i}",
            }
            status, body, _ = http_json(server.url + "/internal/v1/profiles", method="POST", body=profile, token=key)
            assert status == 201, body
            status, body, _ = http_json(server.url + f"/internal/v1/users/{ext}/tokens", method="POST", token=key)
            assert status == 201, body
            users.append((ext, body["token"]))
        yield Stack(server=server, redis=redis, pg=pg, users=users, service_key=key)
    finally:
        if server is not None:
            server.stop()
        redis.stop()
        pg.destroy()


def test_redis_down_degrades_and_recovers_without_restart(stack: Stack):
    status, health, _ = stack.get("/api/v1/health")
    assert status == 200 and health["status"] == "ready", health
    assert stack.feed(0)[0] == 200 and stack.swipe(0)[0] == 201
    pid = stack.server.proc.pid

    stack.redis.stop()
    outage: list[tuple[str, int, float]] = []
    deadline = time.monotonic() + 4
    i = 0
    while time.monotonic() < deadline:  # a steady mix of feeds and swipe batches during the outage
        status, body, seconds = stack.feed(i)
        outage.append(("feed", status, seconds))
        assert status == 200 and "recommendations" in body, body
        status, body, seconds = stack.swipe(i)
        outage.append(("swipe", status, seconds))
        assert status == 201, body
        i += 1
    assert len(outage) >= 8
    assert max(s for _, _, s in outage) < FAST_S, outage
    status, health, _ = stack.get("/api/v1/health")
    assert status == 200 and health["status"] == "degraded", health
    assert not health["checks"]["cache"]["ok"]

    stack.redis.start()  # same port, empty: the cache refills by itself
    wait_until(lambda: stack.get("/api/v1/health")[1]["status"] == "ready", 20, "health to be ready again")
    assert stack.feed(1)[0] == 200 and stack.swipe(1)[0] == 201
    assert stack.server.proc.pid == pid and stack.server.alive()  # recovered without a restart
    assert stack.stored_swipes() == stack.sent["created"]  # nothing accepted was lost


def test_postgres_restart_fails_fast_with_503_and_recovers(stack: Stack):
    assert stack.feed(0)[0] == 200 and stack.swipe(0)[0] == 201
    user_token = stack.users[0][1]
    pid = stack.server.proc.pid

    stack.pg.stop()
    checks = {
        "feed": lambda: stack.feed(0),
        "swipes": lambda: stack.swipe(1),
        "me": lambda: stack.get("/api/v1/me", user_token),
        "profile": lambda: stack.get(f"/internal/v1/profiles/{stack.users[2][0]}", stack.service_key),
    }
    for _ in range(2):  # twice: the second request meets the broken pooled connection too
        for name, call in checks.items():
            status, body, seconds = call()
            assert status == 503, (name, status, body)
            assert body == {"detail": "The database is unavailable; retry shortly.", "code": "database_unavailable"}
            assert seconds < FAST_S, (name, seconds)
    status, health, seconds = stack.get("/api/v1/health")
    assert status == 503 and health["status"] == "unavailable" and seconds < FAST_S, health

    stack.pg.start()
    wait_until(lambda: stack.get("/api/v1/health")[1]["status"] == "ready", 30, "health to be ready again")
    for name, call in checks.items():
        status, body, _ = call()
        assert status in (200, 201), (name, status, body)
    assert stack.server.proc.pid == pid and stack.server.alive()
    assert stack.stored_swipes() == stack.sent["created"]
