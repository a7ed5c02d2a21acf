"""Throughput of the ML API's batch endpoints at batch sizes 1, 8, 32 and 128, in one run.

    .venv/bin/python -m bench.ml_batch [--embedded] [--items 256] [--reuse]

What is measured: the same work -- ``--items`` (256) texts to embed, profiles to embed, and users
to rank (``--candidates`` (20) candidates each) -- sent through the whole HTTP stack (Django's
handler, middleware, bearer-key authentication, DRF parsing and validation, the view, JSON
rendering; DRF's ``APIClient``, no sockets) as requests of 1, 8, 32 and 128 items. Per endpoint
and size: wall-clock seconds for all the items, items/s, requests/s, mean ms per request, and the
ratio of items/s to batch size 1 (the gain of batching).

* ``embeddings_texts``: ``POST /api/v1/ml/embeddings/batch {"texts"}``, the profiles' bios (one
  model call per request, so batching amortises the model's per-call cost);
* ``embeddings_profiles``: the same with ``{"profile_ids"}``: stored vectors, from the Redis
  cache after the warm-up (batching amortises the queries and the cache round trip);
* ``rank``: ``POST /api/v1/ml/profiles/rank/batch``, each user with ``--candidates`` random
  candidates (one vector lookup, Elo read and candidate-profile read per request).

Throttles are off (``THROTTLE_*=off``) and ``DEBUG`` is off: the benchmark measures the work, not
the limits. Each size gets one warm-up request first (model load, candidate store build, cache
fill), not timed.

Preparation (skipped with ``--reuse`` when the database holds exactly this population): the first
``--profiles`` (1,000) rows of the vendored OkCupid sample through ``population_load``, a
``--swipes`` (10,000) swipe history from ``SwipeSimulator`` through ``sessions_replay``, and MiniLM
embeddings through ``embeddings_upsert``.

Isolation: its own database ``patra_bench_ml_batch`` (PostgreSQL + Redis unless ``--embedded``)
and ``var/bench`` folder; see bench/common.py. Writes ``bench/results/ml_batch[_sqlite].json``.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from bench.common import (
    Phases,
    backend_info,
    clear_cache,
    format_table,
    isolate,
    machine_info,
    mark_prepared,
    migrate_schema,
    new_tenant,
    prepared_tenant,
    recreate_database,
    setup_django,
    write_result,
)

BATCH_SIZES: tuple[int, ...] = (1, 8, 32, 128)
ENDPOINTS: tuple[str, ...] = ("embeddings_texts", "embeddings_profiles", "rank")
EMBED = "/api/v1/ml/embeddings/batch"
RANK = "/api/v1/ml/profiles/rank/batch"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embedded", action="store_true", help="SQLite + local-memory cache instead of PG + Redis")
    parser.add_argument("--profiles", type=int, default=1000, help="population size (OkCupid sample rows)")
    parser.add_argument("--swipes", type=int, default=10_000, help="simulated swipe history")
    parser.add_argument("--items", type=int, default=256, help="items per endpoint and batch size")
    parser.add_argument("--candidates", type=int, default=20, help="candidates per ranked user")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--reuse", action="store_true", help="reuse a prepared database with this population")
    return parser.parse_args(argv)


def manifest(args: argparse.Namespace) -> str:
    return f"ml_batch okcupid-sample profiles={args.profiles} swipes={args.swipes} seed={args.seed}"


def prepare(args: argparse.Namespace, phases: Phases) -> Any:
    from django.utils import timezone

    from recommender.models import Profile
    from recommender.services.embeddings import embeddings_upsert
    from recommender.services.simulation import population_load, sessions_replay
    from recommender.simulation import SwipeSimulator, build_population, load_sample

    tenant = new_tenant()
    with phases("population"):
        population = build_population(load_sample(limit=args.profiles), seed=args.seed)
        profiles = population_load(tenant=tenant, population=population)
    with phases("swipe history"):
        simulator = SwipeSimulator(population, seed=args.seed)
        sessions = simulator.simulate_history(args.swipes, start=timezone.now() - timedelta(days=30), days=30)
        sessions_replay(tenant=tenant, profiles=profiles, sessions=sessions, model_version="simulator-naive-feed")
    with phases("embeddings (MiniLM)"):
        embeddings_upsert(profile_ids=list(Profile.objects.filter(tenant=tenant).values_list("pk", flat=True)))
    mark_prepared(tenant, manifest(args))
    return tenant


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _workloads(tenant: Any, args: argparse.Namespace) -> dict[str, tuple[list[Any], Callable[[Sequence[Any]], Any]]]:
    """endpoint -> (the items, a function turning a chunk of them into the request body)."""
    from recommender.models import Profile, ProfileStatus

    rng = random.Random(args.seed)
    rows = list(
        Profile.objects.filter(tenant=tenant, status=ProfileStatus.ACTIVE)
        .exclude(bio="")
        .order_by("pk")
        .values_list("external_id", "bio", "gender")
    )
    rng.shuffle(rows)
    items = rows[: args.items]
    if len(items) < args.items:
        raise SystemExit(f"only {len(items)} profiles with a bio; lower --items or raise --profiles")
    limit = 2000  # ML_TEXT_MAX_CHARS
    texts = [bio[:limit] for _ext, bio, _g in items]
    ids = [str(ext) for ext, _bio, _g in items]
    all_ids = [str(ext) for ext, _bio, _g in rows]
    rank_items = [
        (uid, [c for c in rng.sample(all_ids, args.candidates + 1) if c != uid][: args.candidates]) for uid in ids
    ]
    return {
        "embeddings_texts": (texts, lambda chunk: {"texts": list(chunk)}),
        "embeddings_profiles": (ids, lambda chunk: {"profile_ids": list(chunk)}),
        "rank": (rank_items, lambda chunk: {"requests": [{"user_id": u, "candidate_ids": c} for u, c in chunk]}),
    }


def measure(client: Any, path: str, items: list[Any], body: Callable[[Sequence[Any]], Any], size: int) -> dict:
    warm = client.post(path, body(items[:size]), format="json")
    if warm.status_code != 200:
        raise SystemExit(f"{path} answered {warm.status_code}: {warm.content[:300]!r}")
    chunks = _chunks(items, size)
    started = time.perf_counter()
    for chunk in chunks:
        response = client.post(path, body(chunk), format="json")
        if response.status_code != 200:
            raise SystemExit(f"{path} answered {response.status_code}: {response.content[:300]!r}")
    seconds = time.perf_counter() - started
    return {
        "batch_size": size,
        "items": len(items),
        "requests": len(chunks),
        "seconds": round(seconds, 3),
        "items_per_second": round(len(items) / seconds, 2),
        "requests_per_second": round(len(chunks) / seconds, 2),
        "ms_per_request": round(1000 * seconds / len(chunks), 2),
        "fallback": warm.json().get("fallback"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    env = isolate("patra_bench_ml_batch", embedded=args.embedded)
    for scope in ("USER", "SERVICE", "ML"):
        for window in ("BURST", "SUSTAINED"):
            os.environ[f"THROTTLE_{scope}_{window}"] = "off"
    os.environ["DEBUG"] = "false"  # no per-query bookkeeping
    warnings.filterwarnings("ignore", message="No directory at")  # whitenoise: no collectstatic needed here
    setup_django()
    phases = Phases()
    from rest_framework.test import APIClient

    from accounts.services import service_key_create

    tenant = prepared_tenant(manifest(args)) if args.reuse else None
    if tenant is None:
        recreate_database(env)
        migrate_schema()
        tenant = prepare(args, phases)
    else:
        migrate_schema()
    clear_cache()
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {service_key_create(tenant=tenant, name=f'bench-{time.time_ns()}').raw}"
    )
    workloads = _workloads(tenant, args)
    load_before = os.getloadavg()
    results: dict[str, list[dict]] = {}
    for endpoint in ENDPOINTS:
        items, body = workloads[endpoint]
        path = RANK if endpoint == "rank" else EMBED
        results[endpoint] = []
        for size in BATCH_SIZES:
            row = measure(client, path, items, body, size)
            results[endpoint].append(row)
            print(f"   {endpoint} batch {size}: {row['items_per_second']:.1f} items/s", flush=True)
        base = results[endpoint][0]["items_per_second"]
        for row in results[endpoint]:
            row["speedup_vs_1"] = round(row["items_per_second"] / base, 2)
    payload = {
        "benchmark": "ml_batch",
        "command": "python -m bench.ml_batch " + " ".join(argv if argv is not None else sys.argv[1:]),
        "params": vars(args),
        "machine": machine_info(),
        "backend": backend_info(),
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]},
        "preparation_seconds": dict(phases.seconds),
        "results": results,
    }
    path = write_result("ml_batch" + ("_sqlite" if args.embedded else ""), payload)
    rows = [
        [endpoint, r["batch_size"], r["requests"], r["items_per_second"], r["ms_per_request"], r["speedup_vs_1"]]
        for endpoint, table in results.items()
        for r in table
    ]
    print(format_table(["endpoint", "batch", "requests", "items/s", "ms/request", "x vs 1"], rows))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
