"""In-process latency of a 20-item feed (``feed_for``, ``log_impressions=False``), split by stage.

    .venv/bin/python -m bench.feed_latency --population okcupid-sample
    .venv/bin/python -m bench.feed_latency --population okcupid-full
    .venv/bin/python -m bench.feed_latency --population synthetic --size 1000000 --reuse

What is measured: ``--warmup`` (50) feeds, then ``--users`` (500) feeds, one per distinct random
active user (seeded), each timed with ``time.perf_counter`` around ``feed_for``. Reported: the
wall-clock p50/p95/p99/mean/max, the mean and p95 of every ``FeedResult.stage_ms`` key (a stage a
call skipped counts as 0 ms), and ``other``: wall-clock minus the stages (feature extraction, the
index refresh check, result assembly). Loading the user's Profile row is outside the timing (the
API has it from authentication). The candidate store is built and the index loaded before the
warm-up, and timed separately (``startup``). The embedding cache is emptied before the warm-up,
so the measured feeds see the cache a freshly started process would (``--prefill-cache`` fills
it with every vector first, the steady state of a busy server).

Preparation (timed per phase, skipped by ``--reuse`` when the database already holds exactly
this population, history and seed):

* **okcupid-sample / okcupid-full**: ``build_population`` over the vendored 3,000-row sample or
  the 59,946 rows of the authors' files (``--okcupid-dir``); profiles through
  ``profiles_bulk_create`` in chunks (``--loader orm``, validated like the API); a naive-feed
  swipe history from ``SwipeSimulator.simulate_history`` written by ``sessions_replay`` (the
  services the API uses: impressions, swipes, Elo, matches); MiniLM embeddings through
  ``embeddings_upsert``; then ``index_build``.
* **synthetic --size N**: ``synthetic_rows`` bootstrapped from the full OkCupid rows (the sample
  if the files are missing) and ``build_population``. At this size the service path is too slow
  or too big, so three documented shortcuts are used, all in this file:

  - profiles are written with PostgreSQL ``COPY`` (``copy_profiles``, ``--loader copy``; the
    default above 100,000 profiles). Model validation is skipped, the generator only emits valid
    values and the table's check constraints still apply;
  - swipes come from ``load_synthetic``'s random process (``bulk_load.simulate_swipes``)
    instead of ``SwipeSimulator`` (whose calibration holds an n x 256 array): sessions of users
    drawn by a lognormal activity, candidates of a sought gender drawn by a lognormal
    attractiveness, likes with a per-gender base rate scaled by attractiveness. Swipes and the
    resulting mutual-like matches are inserted with ``COPY`` (``bulk_load.load_history``), then
    ``elo_rebuild`` recomputes the ratings;
  - embeddings are synthetic unit vectors (``synthetic_vectors``): the sum of a seeded random
    384-d topic vector per interest tag plus gaussian noise, normalised, so the index has the
    cluster structure of shared interests. Encoding a million bios with MiniLM on 2 CPU cores
    would take days. They are stored under the configured model name and the real text hash,
    so ``index_build`` takes them as current and does not re-embed.

``--embeddings synthetic`` uses the same synthetic vectors for an OkCupid population (encoding
the 59,946 full-population bios takes 10 minutes on a quiet machine and an hour on a busy one);
the vectors only change which neighbours the index returns, not the work a feed does.

Isolation: the benchmark uses its own database ``patra_bench_feed_<population>`` (PostgreSQL
unless ``--embedded``), Redis database and ``var/bench/...`` folder; see bench/common.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    REPO_DIR,
    BenchEnv,
    Phases,
    backend_info,
    clear_cache,
    cumulative_progress,
    database_exists,
    format_table,
    isolate,
    machine_info,
    mark_prepared,
    migrate_schema,
    new_tenant,
    prepared_tenant,
    recreate_database,
    setup_django,
    summarize,
    write_result,
)

POPULATIONS: tuple[str, ...] = ("okcupid-sample", "okcupid-full", "synthetic")
DEFAULT_OKCUPID_DIR = REPO_DIR.parent / "shared" / "datasets" / "okcupid"
DEFAULT_SWIPES = {"okcupid-sample": 100_000, "okcupid-full": 100_000, "synthetic": 200_000}
COPY_THRESHOLD = 100_000  # --loader auto: above this many profiles, COPY instead of the ORM
ORM_CHUNK = 20_000
COPY_CHUNK = 50_000
HISTORY_DAYS = 30
PREPARE_VERSION = 2  # bump when preparation changes, so --reuse does not pick up old data
# 2: the synthetic history is load_synthetic's (no impressions), not a copy of its generator


# --- Arguments --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.feed_latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--population", choices=POPULATIONS, default="okcupid-sample")
    parser.add_argument("--size", type=int, default=1_000_000, help="profiles of the synthetic population")
    parser.add_argument("--okcupid-dir", type=Path, default=DEFAULT_OKCUPID_DIR, help="the authors' OkCupid files")
    parser.add_argument("--swipes", type=int, help="history swipes (default 100,000; 200,000 for synthetic)")
    parser.add_argument("--users", type=int, default=500, help="measured feeds, one per random user")
    parser.add_argument("--warmup", type=int, default=50, help="feeds before measuring")
    parser.add_argument("--count", type=int, default=20, help="items per feed")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--loader", choices=("auto", "orm", "copy"), default="auto", help="how profiles are written")
    parser.add_argument(
        "--embeddings",
        choices=("auto", "minilm", "synthetic"),
        default="auto",
        help="auto: MiniLM for the OkCupid populations, synthetic topic vectors for the synthetic one",
    )
    parser.add_argument("--reuse", action="store_true", help="skip preparation if the bench database holds it")
    parser.add_argument("--prepare-only", action="store_true", help="prepare the database, measure nothing")
    parser.add_argument(
        "--cf-model", default="lmf", help="collaborative model the feed pools (trained if none is active; 'none': off)"
    )
    parser.add_argument(
        "--retrain-cf", action="store_true", help="with --reuse: train and activate a new collaborative version first"
    )
    parser.add_argument("--prefill-cache", action="store_true", help="cache every embedding before measuring")
    parser.add_argument("--embedded", action="store_true", help="SQLite and local-memory cache instead of PG+Redis")
    args = parser.parse_args(argv)
    if args.population == "synthetic" and args.embedded:
        parser.error("the synthetic population is written with PostgreSQL COPY: it cannot run --embedded")
    if args.loader == "copy" and args.embedded:
        parser.error("--loader copy needs PostgreSQL")
    if args.swipes is None:
        args.swipes = DEFAULT_SWIPES[args.population]
    return args


def run_name(args: argparse.Namespace) -> str:
    """Result file and database suffix, e.g. ``okcupid_full`` or ``synthetic_1000000_sqlite``."""
    name = args.population.replace("-", "_")
    if args.population == "synthetic":
        name += f"_{args.size}"
    return name + ("_sqlite" if args.embedded else "")


# --- Population -------------------------------------------------------------------------------


def source_rows(args: argparse.Namespace) -> tuple[list[Any], str]:
    """OkCupid-shaped rows of the population and a description of where they came from."""
    from recommender.simulation import load_sample, read_okcupid, synthetic_rows
    from recommender.simulation.okcupid import source_paths

    full_paths = source_paths(args.okcupid_dir)
    have_full = all(Path(p).exists() for p in full_paths)
    if args.population == "okcupid-sample":
        return load_sample(), "vendored OkCupid sample"
    if args.population == "okcupid-full":
        if not have_full:
            raise SystemExit(f"{full_paths[0]} not found: pass --okcupid-dir with the authors' files")
        return read_okcupid(*full_paths), f"OkCupid ({args.okcupid_dir})"
    source = read_okcupid(*full_paths) if have_full else load_sample()
    origin = "full OkCupid rows" if have_full else "the vendored sample"
    return synthetic_rows(args.size, seed=args.seed, source=source), f"synthetic_rows bootstrapped from {origin}"


def manifest(args: argparse.Namespace) -> str:
    """What a prepared database holds; --reuse accepts only an exact match."""
    size = f" size={args.size}" if args.population == "synthetic" else ""
    vectors = "" if embeddings_method(args) == "minilm" else " embeddings=synthetic"
    return (
        f"feed_latency v{PREPARE_VERSION} population={args.population}{size} swipes={args.swipes} "
        f"seed={args.seed}{vectors}"
    )


def embeddings_method(args: argparse.Namespace) -> str:
    if args.embeddings != "auto":
        return str(args.embeddings)
    return "synthetic" if args.population == "synthetic" else "minilm"


# --- Writing rows fast ------------------------------------------------------------------------


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def history_stamps(n: int, seed: int) -> list[datetime]:
    """Creation times spread over the past year (seeded), one per profile.

    A real population was created over time. Rows that all share one timestamp would also make
    every index refresh re-read all of them (recommender/serving/index.py re-reads rows within
    INDEX_DELTA_OVERLAP_SECONDS of its watermark), which no production tenant looks like.
    """
    from django.utils import timezone

    now = timezone.now()
    ages = np.sort(np.random.default_rng([seed, 104]).uniform(0, 365 * 86_400, n))[::-1]
    return [now - timedelta(seconds=float(a)) for a in ages]


def copy_profiles(tenant: Any, population: Sequence[Any], stamps: Sequence[datetime]) -> None:
    """Write the population with COPY in chunks (documented shortcut: no model validation)."""
    from django.db import transaction
    from tqdm import tqdm

    from recommender.models import Profile
    from recommender.services.bulk_load import PROFILE_COLUMNS, copy_rows, profile_copy_row

    columns = PROFILE_COLUMNS
    with tqdm(total=len(population), desc="profiles (COPY)", unit="profile") as bar:
        for start in range(0, len(population), COPY_CHUNK):
            chunk = range(start, min(start + COPY_CHUNK, len(population)))
            with transaction.atomic():
                rows = (profile_copy_row(tenant.pk, population[i], stamps[i]) for i in chunk)
                copy_rows(Profile._meta.db_table, columns, rows)
            bar.update(len(chunk))


def orm_profiles(tenant: Any, population: Sequence[Any], stamps: Sequence[datetime]) -> None:
    """Write the population through ``population_load`` (``profiles_bulk_create``) in chunks;
    the rows get the service's own timestamps (``stamps`` is for the COPY loader's signature)."""
    from tqdm import tqdm

    from recommender.services.simulation import population_load

    with tqdm(total=len(population), desc="profiles (ORM)", unit="profile") as bar:
        for chunk in _chunks(population, ORM_CHUNK):
            population_load(tenant=tenant, population=chunk)
            bar.update(len(chunk))


def profile_pks(tenant: Any, population: Sequence[Any]) -> np.ndarray:
    """(n,) primary keys in population order (external ids are deterministic per index)."""
    from recommender.models import Profile

    by_external = {
        str(ext): pk for pk, ext in Profile.objects.filter(tenant=tenant).values_list("pk", "external_id").iterator()
    }
    return np.array([by_external[p.external_id] for p in population], dtype=np.int64)


# --- History ----------------------------------------------------------------------------------


def simulated_history(tenant: Any, population: Sequence[Any], pks: np.ndarray, n_swipes: int, seed: int) -> dict:
    """The naive-feed history of ``SwipeSimulator``, written through the ingestion services."""
    from django.utils import timezone
    from tqdm import tqdm

    from recommender.models import Profile
    from recommender.services.simulation import sessions_replay
    from recommender.simulation import SwipeSimulator

    by_pk = {p.pk: p for p in Profile.objects.filter(tenant=tenant)}
    profiles = [by_pk[int(pk)] for pk in pks]
    simulator = SwipeSimulator(population, seed=seed)
    start = timezone.now() - timedelta(days=HISTORY_DAYS)
    with tqdm(total=n_swipes, desc="swipes (services)", unit="swipe") as bar:
        advance = cumulative_progress(bar)
        sessions = simulator.simulate_history(n_swipes, start=start, days=HISTORY_DAYS, progress=advance)
        stats = sessions_replay(
            tenant=tenant, profiles=profiles, sessions=sessions, model_version="simulator-naive-feed"
        )
    return {"method": "SwipeSimulator + sessions_replay", **stats.__dict__}


def random_history(tenant: Any, population: Sequence[Any], pks: np.ndarray, n_swipes: int, seed: int) -> dict:
    """``load_synthetic``'s random history (``bulk_load.simulate_swipes``), written in time order
    with its mutual-like matches by ``bulk_load.load_history`` (COPY on PostgreSQL)."""
    from recommender.services.bulk_load import load_history, simulate_swipes

    swipes = simulate_swipes(population, n_swipes, seed)
    written, matches = load_history(tenant, pks, swipes, seed=seed)
    likes = int((swipes.action > 0).sum())
    return {"method": "bulk_load.simulate_swipes + load_history", "swipes": written, "likes": likes, "matches": matches}


# --- Embeddings -------------------------------------------------------------------------------


def minilm_embeddings(pks: np.ndarray) -> dict:
    """MiniLM vectors of every profile through the service (what production runs)."""
    from tqdm import tqdm

    from recommender.services.embeddings import embeddings_upsert

    with tqdm(total=len(pks), desc="embeddings (MiniLM)", unit="profile") as bar:
        computed = embeddings_upsert(profile_ids=pks.tolist(), progress=cumulative_progress(bar))
    return {"method": "MiniLM embeddings_upsert", "computed": computed}


def copy_embeddings(
    tenant: Any, population: Sequence[Any], pks: np.ndarray, stamps: Sequence[datetime], seed: int
) -> dict:
    """Store synthetic vectors as ProfileEmbedding rows (documented shortcut at 1M profiles)."""
    from django.conf import settings
    from django.db import transaction
    from tqdm import tqdm

    from recommender.ml.embeddings import profile_text
    from recommender.models import ProfileEmbedding
    from recommender.services.bulk_load import copy_rows, synthetic_vectors

    dim = 384  # all-MiniLM-L6-v2's width, so the index and the feed see the production shape
    vectors = synthetic_vectors(population, seed, dim)
    written = 0
    columns = ("profile_id", "tenant_id", "model_name", "dim", "vector", "text_hash", "updated_at")
    with tqdm(total=len(population), desc="embeddings (synthetic, COPY)", unit="profile") as bar:
        for start in range(0, len(population), COPY_CHUNK):
            rows = []
            for i in range(start, min(start + COPY_CHUNK, len(population))):
                text = profile_text(population[i].bio, population[i].prompts)
                if text:  # the service stores no embedding for an empty text either
                    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
                    vector = vectors[i].tobytes()
                    rows.append((int(pks[i]), tenant.pk, settings.EMBEDDING_MODEL, dim, vector, digest, stamps[i]))
            with transaction.atomic():
                written += copy_rows(ProfileEmbedding._meta.db_table, columns, rows)
            bar.update(min(COPY_CHUNK, len(population) - start))
    return {"method": "synthetic topic vectors + COPY", "written": written, "dim": dim}


# --- Preparation ------------------------------------------------------------------------------


def prepare(env: BenchEnv, args: argparse.Namespace, phases: Phases) -> tuple[Any, dict]:
    """Load population, history, embeddings and index into a fresh bench database."""
    from recommender.indexing import index_build
    from recommender.services.elo import elo_rebuild
    from recommender.simulation import build_population

    with phases("read rows"):
        rows, origin = source_rows(args)
    with phases("build population"):
        population = build_population(rows, seed=args.seed)
    del rows
    recreate_database(env)
    migrate_schema()
    tenant = new_tenant()
    loader = args.loader if args.loader != "auto" else ("copy" if len(population) > COPY_THRESHOLD else "orm")
    with phases(f"load profiles ({loader})"):
        stamps = history_stamps(len(population), args.seed)
        (copy_profiles if loader == "copy" else orm_profiles)(tenant, population, stamps)
    pks = profile_pks(tenant, population)
    synthetic = args.population == "synthetic"
    with phases("swipe history"):
        if synthetic:
            history = random_history(tenant, population, pks, args.swipes, args.seed)
        else:
            history = simulated_history(tenant, population, pks, args.swipes, args.seed)
    if synthetic:
        with phases("elo rebuild"):
            elo_rebuild(tenant=tenant, progress=True)
    with phases("embeddings"):
        embeddings = (
            copy_embeddings(tenant, population, pks, stamps, args.seed)
            if embeddings_method(args) == "synthetic"
            else minilm_embeddings(pks)
        )
    with phases("index build"):
        built = index_build(tenant=tenant, progress=True)
    with phases("analyze"):
        _analyze()
    mark_prepared(tenant, manifest(args))
    facts = {
        "source": origin,
        "profiles": len(population),
        "profile_loader": loader,
        "profiles_per_second": round(len(population) / max(phases.seconds[f"load profiles ({loader})"], 1e-9)),
        "history": history,
        "embeddings": embeddings,
        "index": {
            "size": built.size,
            "dim": built.dim,
            "recall_at_10": built.recall_at_10,
            "build_seconds": round(built.build_seconds, 1),
        },
        "phase_seconds": dict(phases.seconds),
    }
    (env.var_dir / "preparation.json").write_text(json.dumps(facts, indent=2, default=str))
    return tenant, facts


def _analyze() -> None:
    """Fresh planner statistics after bulk loads, as autovacuum would do given time."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def open_or_prepare(env: BenchEnv, args: argparse.Namespace, phases: Phases) -> tuple[Any, dict, bool]:
    """(tenant, preparation facts, reused?)."""
    if args.reuse and database_exists(env):
        migrate_schema()
        tenant = prepared_tenant(manifest(args))
        if tenant is not None:
            path = env.var_dir / "preparation.json"
            facts = json.loads(path.read_text()) if path.exists() else {}
            print(f"-- reusing the prepared database {env.db_name} ({tenant.name})")
            return tenant, facts, True
        print(f"-- {env.db_name} does not hold this preparation: preparing it again")
        from django.db import connections

        connections.close_all()  # the database is about to be dropped
    tenant, facts = prepare(env, args, phases)
    return tenant, facts, False


# --- Measurement ------------------------------------------------------------------------------


@dataclass
class Sample:
    wall_ms: float
    reported_ms: float
    stage_ms: dict[str, float]
    items: int
    fallback: str | None
    cache_hit: bool
    model_version: str


def pick_users(tenant: Any, n: int, seed: int) -> list[Any]:
    """``n`` distinct random active profiles (seeded), loaded before any timing."""
    from recommender.models import Profile, ProfileStatus

    ids = np.array(
        Profile.objects.filter(tenant=tenant, status=ProfileStatus.ACTIVE).order_by("pk").values_list("pk", flat=True)
    )
    chosen = np.random.default_rng([seed, 201]).choice(ids, size=min(n, len(ids)), replace=False)
    by_pk = Profile.objects.in_bulk(chosen.tolist())
    return [by_pk[int(pk)] for pk in chosen]


def ensure_collaborative(
    tenant: Any, model: str, var_dir: Path, phases: Phases, *, retrain: bool = False
) -> dict[str, Any]:
    """The production feed pools the active collaborative version: train one (the production
    pipeline, as in bench.online_eval) unless the tenant has one (or ``retrain``), then load it."""
    from bench.online_eval import train_collaborative
    from recommender.serving.collaborative import collaborative_wait
    from registry.models import ModelType, ModelVersion

    if model == "none":
        return {"model": None}
    active = ModelVersion.objects.filter(tenant=tenant, model_type=ModelType.COLLABORATIVE, status="active").first()
    if active is None or retrain:
        with phases("collaborative model"):
            train_collaborative(tenant, model, var_dir)
    serving = collaborative_wait(tenant.pk, timeout=600)
    return {"model": serving.model_name if serving else None, "version": serving.version if serving else None}


def startup(tenant: Any, prefill: bool, probe: Any = None) -> dict[str, float]:
    """Load the model, build the candidate store and load the index (timed), as a new server
    process does on its first feed. With a ``probe`` profile, also time the store's structured
    pre-filter for it: the first call sorts the snapshot into its (gender, age) partition."""
    import time

    from core import refresher
    from recommender.feed.store import candidate_store
    from recommender.serving.encoder import ml_available
    from recommender.serving.index import serving_index

    timings: dict[str, float] = {}
    start = time.perf_counter()
    timings["ml_available"] = ml_available()
    timings["model_load_s"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    with refresher.inline():  # timed as a build on the caller's thread, however long it takes
        candidate_store(tenant.pk)
    timings["store_build_s"] = round(time.perf_counter() - start, 2)
    if probe is not None:
        timings.update(_prefilter_timings(tenant, probe))
    start = time.perf_counter()
    with refresher.inline():  # a 1M-profile index takes longer than a request's first-load wait
        index = serving_index(tenant.pk)
    timings["index_load_s"] = round(time.perf_counter() - start, 2)
    timings["index_size"] = index.size if index is not None else 0
    if index is not None:
        # What one periodic delta refresh costs (a feed pays it every INDEX_REFRESH_SECONDS).
        start = time.perf_counter()
        index.apply_deltas()
        timings["index_delta_refresh_ms"] = round((time.perf_counter() - start) * 1000, 1)
    timings["cache_keys_cleared"] = clear_cache()
    if prefill:
        timings["cache_prefill_s"] = _prefill_cache(tenant)
    return timings


def _prefilter_timings(tenant: Any, probe: Any) -> dict[str, float]:
    """ms of the first pre-filter over the whole store (partition build included) and of the next
    one, as the collaborative source calls it on every feed."""
    import time

    from recommender.feed.features import profile_features
    from recommender.feed.store import candidate_store

    snap = candidate_store(tenant.pk).snapshot()
    features = profile_features(probe)
    out = {}
    for name in ("prefilter_first_ms", "prefilter_next_ms"):
        start = time.perf_counter()
        snap.prefilter_all(features)
        out[name] = round((time.perf_counter() - start) * 1000, 2)
    return out


def _prefill_cache(tenant: Any) -> float:
    import time

    from recommender.models import ProfileEmbedding
    from recommender.services.embeddings import profile_vectors

    start = time.perf_counter()
    ids = list(ProfileEmbedding.objects.filter(tenant=tenant).values_list("profile_id", flat=True))
    for chunk in _chunks(ids, 5_000):
        profile_vectors(tenant_id=tenant.pk, profile_ids=chunk)
    return round(time.perf_counter() - start, 2)


def measure(tenant: Any, users: Sequence[Any], count: int) -> list[Sample]:
    import time

    from tqdm import tqdm

    from recommender.feed.pipeline import feed_for

    samples = []
    for user in tqdm(users, desc="feeds", unit="feed", leave=False):
        start = time.perf_counter()
        result = feed_for(tenant=tenant, user=user, count=count, log_impressions=False)
        wall = (time.perf_counter() - start) * 1000
        samples.append(
            Sample(
                wall,
                result.latency_ms,
                dict(result.stage_ms),
                len(result.items),
                result.fallback,
                result.cache_hit,
                result.model_version,
            )
        )
    return samples


def stage_split(samples: Sequence[Sample]) -> dict[str, dict[str, float]]:
    """Mean and p95 per stage over all calls (0 where a call skipped it), plus ``other``."""
    names = sorted({k for s in samples for k in s.stage_ms}, key=lambda k: _stage_order(k))
    split = {}
    for name in names:
        values = [s.stage_ms.get(name, 0.0) for s in samples]
        stats = summarize(values)
        split[name] = {"mean": stats["mean"], "p95": stats["p95"], "calls": sum(name in s.stage_ms for s in samples)}
    other = summarize([s.wall_ms - sum(s.stage_ms.values()) for s in samples])
    split["other"] = {"mean": other["mean"], "p95": other["p95"], "calls": len(samples)}
    return split


STAGE_ORDER = (
    "store",
    "history",
    "vectors_user",
    "candidates",
    "filter",
    "vectors",
    "collaborative",
    "score",
    "select",
    "live_check",
)


def _stage_order(name: str) -> tuple[int, str]:
    return (STAGE_ORDER.index(name) if name in STAGE_ORDER else len(STAGE_ORDER), name)


def summary_payload(samples: Sequence[Sample], count: int) -> dict[str, Any]:
    fallbacks: dict[str, int] = {}
    for s in samples:
        key = s.fallback or "none"
        fallbacks[key] = fallbacks.get(key, 0) + 1
    return {
        "feed_count": count,
        "latency_ms": summarize([s.wall_ms for s in samples]),
        "reported_latency_ms": summarize([s.reported_ms for s in samples]),
        "stages_ms": stage_split(samples),
        "items_returned": summarize([s.items for s in samples], digits=1),
        "short_feeds": sum(s.items < count for s in samples),
        "fallbacks": fallbacks,
        "embedding_cache_hit_share": round(sum(s.cache_hit for s in samples) / max(len(samples), 1), 3),
        "model_versions": sorted({s.model_version for s in samples}),
    }


def print_report(name: str, payload: dict[str, Any]) -> None:
    lat = payload["result"]["latency_ms"]
    print(
        f"\nfeed_latency {name}: {payload['population']['profiles']:,} profiles, {lat['n']} feeds of "
        f"{payload['result']['feed_count']}"
    )
    print(
        format_table(
            ["", "p50", "p95", "p99", "mean", "max"],
            [["latency (ms)", lat["p50"], lat["p95"], lat["p99"], lat["mean"], lat["max"]]],
        )
    )
    stages = payload["result"]["stages_ms"]
    rows = [[stage, v["mean"], v["p95"], v["calls"]] for stage, v in stages.items()]
    print(format_table(["stage", "mean ms", "p95 ms", "calls"], rows))
    boot = payload["startup"]
    if "prefilter_first_ms" in boot:
        print(
            f"store pre-filter over all rows: first {boot['prefilter_first_ms']} ms (partition build included), "
            f"then {boot['prefilter_next_ms']} ms"
        )
    target = payload["target_p95_ms"]
    verdict = "met" if lat["p95"] < target else f"MISSED by {lat['p95'] - target:.1f} ms"
    print(f"target p95 < {target} ms: {verdict}; fallbacks {payload['result']['fallbacks']}")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    name = run_name(args)
    env = isolate(f"patra_bench_feed_{name.removesuffix('_sqlite')}", embedded=args.embedded)
    setup_django()
    phases = Phases()
    tenant, facts, reused = open_or_prepare(env, args, phases)
    if args.prepare_only:
        print(json.dumps(facts, indent=2, default=str))
        return
    collaborative = ensure_collaborative(tenant, args.cf_model, env.var_dir, phases, retrain=args.retrain_cf)
    users = pick_users(tenant, args.warmup + args.users, args.seed)
    boot = startup(tenant, args.prefill_cache, probe=users[0])
    measure(tenant, users[: args.warmup], args.count)
    load_before = os.getloadavg()
    samples = measure(tenant, users[args.warmup :], args.count)
    load_after = os.getloadavg()
    payload = {
        "benchmark": "feed_latency",
        "command": "python -m bench.feed_latency " + " ".join(argv if argv is not None else _argv()),
        "machine": machine_info(),
        "backend": backend_info(),
        "population": {
            "name": args.population,
            "profiles": _profile_count(tenant),
            "source": facts.get("source"),
            "swipes": args.swipes,
            "seed": args.seed,
        },
        "preparation": {**facts, "reused": reused},
        "startup": boot,
        "collaborative": collaborative,
        # Other processes share the 2 cores: the load average says how much they disturbed the run.
        "load_average_1_5_15": {
            "before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in load_after],
        },
        "warmup_feeds": args.warmup,
        "prefill_cache": args.prefill_cache,
        "target_p95_ms": 10.0,
        "result": summary_payload(samples, args.count),
    }
    path = write_result(f"feed_latency_{name}", payload)
    print_report(name, payload)
    print(f"written {path.relative_to(REPO_DIR)}")


def _profile_count(tenant: Any) -> int:
    from recommender.models import Profile

    return Profile.objects.filter(tenant=tenant).count()


def _argv() -> list[str]:
    import sys

    return sys.argv[1:]


if __name__ == "__main__":
    main()
