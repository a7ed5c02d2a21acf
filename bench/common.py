"""Shared plumbing of the benchmarks: an isolated environment, Django set-up, phase timing,
percentiles, machine facts, JSON results and short tables.

Isolation: a benchmark never reads the developer's ``DATABASE_URL``, ``REDIS_URL``,
``ARTIFACT_ROOT`` or ``PATRA_VAR_DIR``. :func:`isolate` overwrites them, before Django is set
up, with the benchmark's own values, derived from these variables only:

* ``BENCH_POSTGRES_URL`` -- the PostgreSQL server (default ``postgres://postgres@127.0.0.1:5432``);
  each benchmark uses its own database on it, named ``patra_bench_*`` (created, and dropped
  when re-prepared: the name prefix is checked so no other database can ever be dropped).
* ``BENCH_REDIS_URL`` -- the Redis database for the cache (default ``redis://127.0.0.1:6379/14``);
  only keys under the cache prefix are deleted.
* ``BENCH_VAR_DIR`` -- the folder for SQLite files (``--embedded``), artifacts and indexes
  (default ``var/bench`` in the repository, which git ignores).
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO_DIR = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_DIR / "bench" / "results"
DB_PREFIX = "patra_bench"
BENCH_TENANT_SLUG = "bench"
DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
PERCENTILES: tuple[int, ...] = (50, 95, 99)


# --- Environment ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchEnv:
    """Where one benchmark keeps its state; ``database_url`` is empty in embedded mode."""

    db_name: str
    embedded: bool
    server_url: str
    database_url: str
    redis_url: str
    var_dir: Path

    @property
    def sqlite_path(self) -> Path:
        return self.var_dir / "patra.sqlite3"


def isolate(db_name: str, *, embedded: bool) -> BenchEnv:
    """Point the settings at the benchmark's own database, cache and folders (call before
    ``django.setup()``); returns where they are."""
    if not re.fullmatch(rf"{DB_PREFIX}_[a-z0-9_]+", db_name):
        raise ValueError(f"benchmark databases are named {DB_PREFIX}_<lowercase words>, not {db_name!r}")
    server = os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL).rstrip("/")
    redis_url = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    var_dir = Path(os.environ.get("BENCH_VAR_DIR", REPO_DIR / "var" / "bench")).resolve() / db_name
    var_dir.mkdir(parents=True, exist_ok=True)
    env = BenchEnv(
        db_name=db_name,
        embedded=embedded,
        server_url=server,
        database_url="" if embedded else f"{server}/{db_name}",
        redis_url="" if embedded else redis_url,
        var_dir=var_dir,
    )
    _export(env)
    return env


def _export(env: BenchEnv) -> None:
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        os.environ.pop(name, None)
    if not env.embedded:
        os.environ["DATABASE_URL"] = env.database_url
        os.environ["REDIS_URL"] = env.redis_url
    os.environ["PATRA_VAR_DIR"] = str(env.var_dir)
    os.environ["ARTIFACT_ROOT"] = str(env.var_dir / "artifacts")
    os.environ["ARTIFACT_CACHE_DIR"] = str(env.var_dir / "artifact-cache")
    os.environ["ARTIFACT_STORAGE"] = "local"
    # Whatever a service enqueues (profile hooks, index refreshes) runs in this process: the
    # benchmark has no worker fleet and must not leave tasks behind in a broker.
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "true"
    os.environ["PATRA_ENV"] = "development"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "patra.settings")


def database_exists(env: BenchEnv) -> bool:
    if env.embedded:
        return env.sqlite_path.exists()
    import psycopg

    with psycopg.connect(f"{env.server_url}/postgres", autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [env.db_name]).fetchone() is not None


def recreate_database(env: BenchEnv) -> None:
    """Drop (if present) and create the benchmark's database: only ever a ``patra_bench_*`` one."""
    assert env.db_name.startswith(f"{DB_PREFIX}_"), env.db_name
    if env.embedded:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{env.sqlite_path}{suffix}").unlink(missing_ok=True)
        return
    import psycopg
    from psycopg import sql

    with psycopg.connect(f"{env.server_url}/postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(env.db_name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(env.db_name)))


def setup_django() -> None:
    """``django.setup()`` with the isolated environment (opens no connection yet)."""
    import django

    django.setup()


def migrate_schema() -> None:
    """Bring the benchmark database's schema up to date."""
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def clear_cache() -> int:
    """Delete the benchmark's cache keys (only those under the cache prefix); returns how many."""
    from django.conf import settings
    from django.core.cache import cache

    if not settings.REDIS_URL:
        cache.clear()  # local memory: this process's own
        return 0
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter(f"{settings.CACHE_KEY_PREFIX}:*", count=5_000))
    for start in range(0, len(keys), 5_000):
        client.delete(*keys[start : start + 5_000])
    return len(keys)


# --- The prepared tenant ----------------------------------------------------------------------


def prepared_tenant(manifest: str) -> Any:
    """The benchmark tenant if its preparation finished with exactly ``manifest``, else None.

    The manifest (population, sizes, seed) is written into the tenant's name only once every
    preparation step succeeded, so an interrupted preparation is never reused.
    """
    from accounts.models import Tenant

    return Tenant.objects.filter(slug=BENCH_TENANT_SLUG, name=manifest).first()


def new_tenant() -> Any:
    from accounts.models import Tenant

    return Tenant.objects.create(slug=BENCH_TENANT_SLUG, name="preparing")


def mark_prepared(tenant: Any, manifest: str) -> None:
    if len(manifest) > 200:
        raise ValueError("manifest longer than Tenant.name")
    tenant.name = manifest
    tenant.save(update_fields=["name"])


# --- Timing -----------------------------------------------------------------------------------


@dataclass
class Phases:
    """Wall-clock seconds of named preparation phases, printed as they finish."""

    seconds: dict[str, float] = field(default_factory=dict)
    quiet: bool = False

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if not self.quiet:
            print(f"-- {name} ...", flush=True)
        start = time.perf_counter()
        yield
        elapsed = time.perf_counter() - start
        self.seconds[name] = round(self.seconds.get(name, 0.0) + elapsed, 2)
        if not self.quiet:
            print(f"   {name}: {elapsed:.1f} s", flush=True)


def cumulative_progress(bar: Any) -> Callable[[int], None]:
    """Adapt a tqdm bar to callbacks that report a running total rather than an increment."""
    done = 0

    def advance(total_so_far: int) -> None:
        nonlocal done
        bar.update(total_so_far - done)
        done = total_so_far

    return advance


# --- Statistics -------------------------------------------------------------------------------


def summarize(values: Sequence[float], digits: int = 3) -> dict[str, float]:
    """n, mean, p50, p95, p99 and max (linear-interpolated percentiles) of ``values``."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return {"n": 0}
    out: dict[str, float] = {"n": int(arr.size), "mean": round(float(arr.mean()), digits)}
    for q, v in zip(PERCENTILES, np.percentile(arr, PERCENTILES), strict=True):
        out[f"p{q}"] = round(float(v), digits)
    out["max"] = round(float(arr.max()), digits)
    return out


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial proportion (good for small rates)."""
    if trials == 0:
        return (0.0, 0.0)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * np.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


# --- Machine and run facts --------------------------------------------------------------------


def _meminfo_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO_DIR, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def _gpu() -> str:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    except ImportError:
        return "none"


def machine_info() -> dict[str, Any]:
    """Facts a reader needs to compare runs: hardware, software, code version, date."""
    return {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _meminfo_gib(),
        "gpu": _gpu(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain")),
    }


def backend_info() -> dict[str, Any]:
    """The database and cache actually used (after django.setup())."""
    from django.conf import settings
    from django.db import connection

    info: dict[str, Any] = {"database": connection.vendor, "cache": "redis" if settings.REDIS_URL else "locmem"}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            info["postgres_version"] = cursor.fetchone()[0]
    return info


# --- Output -----------------------------------------------------------------------------------


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` (small, stable key order, meant to be committed)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
    return path


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain Markdown table (numbers right-aligned), readable in a terminal and in docs."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    numeric = [all(_is_number(row[i]) for row in rows) and bool(rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        padded = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "| " + " | ".join(padded) + " |"

    dashes = [("-" * (w + 1) + ":") if num else ("-" * (w + 2)) for w, num in zip(widths, numeric, strict=True)]
    rule = "|" + "|".join(dashes) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in cells)])


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _cell(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return f"{value:,.2f}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
