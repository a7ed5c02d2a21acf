"""Readiness of the parts the service depends on: database, cache and broker.

``ready``: everything answers. ``degraded``: the database answers but the cache or broker does
not (feeds still answer, slower; tasks wait). ``unavailable``: the database does not answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection


def _timed(check: Callable[[], None]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        check()
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_cache() -> None:
    cache.set("health:ping", "1", timeout=10)
    if cache.get("health:ping") != "1":
        raise RuntimeError("cache did not return the value just written")


def _check_broker() -> None:
    from patra.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=0, timeout=1)


def health_report() -> dict[str, Any]:
    checks: dict[str, dict[str, Any]] = {"database": _timed(_check_database), "cache": _timed(_check_cache)}
    if settings.REDIS_URL and not settings.CELERY_TASK_ALWAYS_EAGER:
        checks["broker"] = _timed(_check_broker)
    else:
        checks["broker"] = {"ok": True, "mode": "eager (tasks run in-process)"}
    if not checks["database"]["ok"]:
        overall, reason = "unavailable", "database unreachable"
    elif not all(c["ok"] for c in checks.values()):
        down = ", ".join(name for name, c in checks.items() if not c["ok"])
        overall, reason = "degraded", f"unreachable: {down}"
    else:
        overall, reason = "ready", ""
    models = _serving_models()
    building = _stores_building()
    if overall == "ready" and building:
        # This process answers feeds of these tenants 503 warming_up until their stores exist.
        overall, reason = (
            "degraded",
            "warming up: building the candidate store of tenant " + ", ".join(str(t) for t in building),
        )
    if overall == "ready" and any(m["last_error"] for m in models.values()):
        # A model that failed to load: the previous version keeps serving, but operators must know.
        overall, reason = (
            "degraded",
            "a model version failed to load: "
            + "; ".join(f"{name}: {m['last_error']}" for name, m in models.items() if m["last_error"]),
        )
    if not checks["database"]["ok"]:
        # A failed query leaves the connection unusable; drop it so the next request reconnects.
        connection.close_if_unusable_or_obsolete()
    return {"status": overall, "reason": reason, "checks": checks, "models": models, "mode": _mode()}


def _serving_models() -> dict[str, dict[str, Any]]:
    """What this process serves (loaded in-process, per tenant), with any load error."""
    from recommender.services.index import index_statuses

    return {f"index:tenant-{tenant_id}": status for tenant_id, status in index_statuses().items()}


def _stores_building() -> list[int]:
    from recommender.feed.store import stores_building

    return stores_building()


def _mode() -> str:
    return "real" if settings.USING_POSTGRES or settings.REDIS_URL else "embedded"
