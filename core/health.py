"""Readiness of the parts the service depends on: database, cache and broker.

``ready``: everything answers. ``degraded``: the database answers but the cache or broker does
not (feeds still answer, slower; tasks wait), or an app reports that what this process serves is
not ready. ``unavailable``: the database does not answer.

Apps report what this process serves through a readiness source they register at start-up
(:func:`register_readiness`, from ``AppConfig.ready``): core sits under every app and probes only
the database, the cache and the broker itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.cache import cache
from django.db import connection


@dataclass(frozen=True)
class Readiness:
    """What an app serves in this process: ``models`` is merged into the report's ``models``;
    ``problem``, when set, turns a ``ready`` report ``degraded`` with it as the reason."""

    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    problem: str = ""


ReadinessSource = Callable[[], Readiness]

_sources: list[ReadinessSource] = []


def register_readiness(source: ReadinessSource) -> None:
    """Add ``source`` to every health report (once, however often an app registers it)."""
    if source not in _sources:
        _sources.append(source)


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
    # The project's Celery app (patra/celery.py) is Celery's default app in every thread: core
    # sits under the project package and does not import it.
    with current_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=0, timeout=1)


def dependency_checks() -> dict[str, dict[str, Any]]:
    """The database, the cache and the broker, each ``{"ok": ...}`` (also ``GET /readyz``'s)."""
    checks: dict[str, dict[str, Any]] = {"database": _timed(_check_database), "cache": _timed(_check_cache)}
    if settings.REDIS_URL and not settings.CELERY_TASK_ALWAYS_EAGER:
        checks["broker"] = _timed(_check_broker)
    else:
        checks["broker"] = {"ok": True, "mode": "eager (tasks run in-process)"}
    return checks


def _status(checks: dict[str, dict[str, Any]]) -> tuple[str, str]:
    if not checks["database"]["ok"]:
        return "unavailable", "database unreachable"
    if not all(c["ok"] for c in checks.values()):
        down = ", ".join(name for name, c in checks.items() if not c["ok"])
        return "degraded", f"unreachable: {down}"
    return "ready", ""


def health_report() -> dict[str, Any]:
    checks = dependency_checks()
    overall, reason = _status(checks)
    models: dict[str, dict[str, Any]] = {}
    for source in _sources:
        readiness = source()
        models.update(readiness.models)
        if overall == "ready" and readiness.problem:
            overall, reason = "degraded", readiness.problem
    if not checks["database"]["ok"]:
        # A failed query leaves the connection unusable; drop it so the next request reconnects.
        connection.close_if_unusable_or_obsolete()
    return {"status": overall, "reason": reason, "checks": checks, "models": models, "mode": _mode()}


def _mode() -> str:
    return "real" if settings.USING_POSTGRES or settings.REDIS_URL else "embedded"
