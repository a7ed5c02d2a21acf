"""Simulated online evaluation: likes and matches per 100 impressions for each feed variant.

    .venv/bin/python -m bench.online_eval                              # OkCupid sample, 3,000 profiles
    .venv/bin/python -m bench.online_eval --population okcupid-full    # 59,946 profiles (slow to prepare)

Preparation (skipped by ``--reuse`` when the bench database holds exactly this): the population
through ``population_load``; a warm-up history of ``--warmup-swipes`` (20,000) swipes of the
simulator's naive, popularity-weighted app feed (``simulate_history`` + ``sessions_replay``);
MiniLM embeddings (``embeddings_upsert``) and ``index_build``.

Evaluation: a seeded sample of ``--users`` (500) active simulated users. For each variant
(reciprocal, one_way, popularity, random) and each of ``--rounds`` (5) rounds, every user gets a
feed of ``--count`` (10) from ``feed_for(variant=...)`` (impressions logged, as in the app), the
simulator answers (``SwipeSimulator.respond``) and the swipes go through
``swipe_batch_ingest``, so later rounds see them (swiped profiles leave the feed, Elo moves,
"liked you" grows). A like is a match when the candidate's hidden answer is a like too
(``simulator.would_like(v, u)``): the reciprocal feed is judged on what would happen, not only
on likes that the short evaluation happens to record both ways (those are reported too).

Fair comparison: every variant starts from the same state. Each runs on its own copy of the
prepared database (PostgreSQL ``CREATE DATABASE ... TEMPLATE``, or a copy of the SQLite file),
dropped afterwards, and the process-local caches (candidate store, serving index) and the
benchmark's Redis keys are reset before each variant. A rolled-back transaction per variant
would be simpler, but a variant records ~7,000 likes, and each takes a pair advisory lock that
PostgreSQL holds until the transaction ends: more than its shared lock table holds by default
(max_locks_per_transaction 64 x 100 connections).

Ceilings (not feeds): ``oracle`` and ``oracle_observable`` run the same protocol (same users,
rounds, database copy, swipes ingested, the feed's hard filters and exclusions) but pick each
user's ``--count`` eligible candidates with the highest match probability by the simulator
itself: ``oracle`` by the true p(u, v) * p(v, u); ``oracle_observable`` by the probability a
service could reach at best from what it can observe, i.e. the same with each pair's hidden
chemistry draw integrated out (the per-pair decision dice are never used by either). Both still
know every *per-profile* hidden trait exactly (attractiveness, intercept, homophily weights,
taste), which a service can only estimate from swipes, so they bound the feed from above rather
than say what a feed can reach. See :class:`SimulatorOracle`.

Uncertainty: 95 % intervals from a paired bootstrap over users (impressions of one user are not
independent), for each rate and for the ratios reciprocal/random and reciprocal/one_way; the
Wilson binomial interval of the pooled rate is given too (narrower: it ignores the clustering).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
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
    wilson_interval,
    write_result,
)

POPULATIONS: tuple[str, ...] = ("okcupid-sample", "okcupid-full")
# bench variant -> (feed variant, use the active collaborative model, use the active ranker)
FEEDS: dict[str, tuple[str, bool, bool]] = {
    "reciprocal": ("reciprocal", True, False),
    "reciprocal_ranker": ("reciprocal", True, True),
    "reciprocal_no_cf": ("reciprocal", False, False),
    "one_way": ("one_way", True, False),
    "popularity": ("popularity", True, False),
    "random": ("random", True, False),
}
# ceilings: rank by the simulator's hidden match probability (see SimulatorOracle); not feeds
CEILINGS: tuple[str, ...] = ("oracle", "oracle_observable")
VARIANTS: tuple[str, ...] = (*FEEDS, *CEILINGS)
# (numerator, denominator) pairs of match-rate ratios reported when both variants ran
RATIO_PAIRS: tuple[tuple[str, str], ...] = (
    *((best, other) for best in ("reciprocal", "reciprocal_ranker")
      for other in ("random", "one_way", "popularity", "reciprocal_no_cf", "reciprocal") if other != best),
    ("oracle", "random"),
    ("oracle_observable", "random"),
    ("reciprocal", "oracle_observable"),
)  # fmt: skip
ORACLE_QUADRATURE = 64  # points of the chemistry integral in oracle_observable
DEFAULT_OKCUPID_DIR = REPO_DIR.parent / "shared" / "datasets" / "okcupid"
HISTORY_DAYS = 30
ORM_CHUNK = 20_000
PREPARE_VERSION = 3  # 2: a collaborative model (lmf) is trained on the warm-up history; 3: and a ranker
TARGET_RATIO_VS_RANDOM = 3.0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.online_eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--population", choices=POPULATIONS, default="okcupid-sample")
    parser.add_argument("--okcupid-dir", type=Path, default=DEFAULT_OKCUPID_DIR, help="the authors' OkCupid files")
    parser.add_argument(
        "--warmup-swipes", type=int, default=100_000, help="naive-feed history before evaluating (as load_demo)"
    )
    parser.add_argument("--cf-model", default="lmf", help="collaborative model trained on the warm-up history")
    parser.add_argument(
        "--cf-config", type=Path, default=None, help="JSON config of the collaborative model (default: its defaults)"
    )
    parser.add_argument(
        "--retrain-cf", action="store_true", help="with --reuse: train and activate a new collaborative version first"
    )
    parser.add_argument(
        "--ranker-groups",
        choices=("pools", "impressions"),
        default="pools",
        help="train_ranker --groups: the feed's pools at past cuts of the warm-up labelled by the likes that "
        "followed, or the naive feed's impressions",
    )
    parser.add_argument(
        "--ranker-since",
        type=float,
        default=0.5,
        help="--ranker-groups impressions: the ranker learns from the impressions after this share of the "
        "warm-up period (the swipes before it are its features' history)",
    )
    parser.add_argument("--users", type=int, default=500, help="simulated users evaluated")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=10, help="items per feed")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--bootstrap", type=int, default=2_000, help="bootstrap resamples for the intervals")
    parser.add_argument(
        "--cold-users", type=int, default=300, help="cold profiles whose feeds are checked for coverage (0: skip)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--reuse", action="store_true", help="skip preparation if the bench database holds it")
    parser.add_argument("--embedded", action="store_true", help="SQLite and local-memory cache instead of PG+Redis")
    parser.add_argument(
        "--result-suffix", default="", help="write bench/results/online_eval_<population><suffix>.json (iterations)"
    )
    return parser.parse_args(argv)


def manifest(args: argparse.Namespace) -> str:
    return (
        f"online_eval v{PREPARE_VERSION} population={args.population} "
        f"warmup_swipes={args.warmup_swipes} seed={args.seed} cf={args.cf_model}"
    )


# --- Preparation ------------------------------------------------------------------------------


def load_population(args: argparse.Namespace) -> list[Any]:
    from recommender.simulation import build_population, load_sample, read_okcupid
    from recommender.simulation.okcupid import source_paths

    if args.population == "okcupid-sample":
        rows = load_sample()
    else:
        paths = source_paths(args.okcupid_dir)
        if not all(Path(p).exists() for p in paths):
            raise SystemExit(f"{paths[0]} not found: pass --okcupid-dir with the authors' files")
        rows = read_okcupid(*paths)
    return build_population(rows, seed=args.seed)


def prepare(env: BenchEnv, args: argparse.Namespace, population: Sequence[Any], simulator: Any, phases: Phases) -> Any:
    from django.utils import timezone
    from tqdm import tqdm

    from recommender.indexing import index_build
    from recommender.models import Profile
    from recommender.services.embeddings import embeddings_upsert
    from recommender.services.simulation import population_load, sessions_replay

    recreate_database(env)
    migrate_schema()
    tenant = new_tenant()
    with phases("load profiles"):
        for start in range(0, len(population), ORM_CHUNK):
            population_load(tenant=tenant, population=population[start : start + ORM_CHUNK])
    profiles = profiles_in_order(tenant, population)
    with phases("warm-up history"), tqdm(total=args.warmup_swipes, desc="warm-up swipes", unit="swipe") as bar:
        start = timezone.now() - timedelta(days=HISTORY_DAYS)
        sessions = simulator.simulate_history(
            args.warmup_swipes, start=start, days=HISTORY_DAYS, progress=cumulative_progress(bar)
        )
        sessions_replay(tenant=tenant, profiles=profiles, sessions=sessions, model_version="simulator-naive-feed")
    pks = [p.pk for p in profiles]
    with phases("embeddings"), tqdm(total=len(pks), desc="embeddings (MiniLM)", unit="profile") as bar:
        embeddings_upsert(profile_ids=pks, progress=cumulative_progress(bar))
    with phases("index build"):
        index_build(tenant=tenant, progress=True)
    with phases("collaborative model"):
        train_collaborative(tenant, args.cf_model, env.var_dir, args.cf_config)
    with phases("ranker"):
        train_ranker(tenant, args.ranker_groups, args.ranker_since)
    mark_prepared(tenant, manifest(args))
    assert Profile.objects.filter(tenant=tenant).count() == len(population)
    return tenant


def train_collaborative(tenant: Any, model: str, var_dir: Path, config: Path | None = None) -> None:
    """The production pipeline on the warm-up history: export, time-ordered split, train,
    register (the tenant's first collaborative version is activated on registration)."""
    from datetime import UTC, datetime

    from recommender.training.datasets import datasets_build
    from recommender.training.extract import events_extract
    from recommender.training.train import collaborative_train

    events, splits = var_dir / "cf-events", var_dir / "cf-splits"
    for folder in (events, splits):
        shutil.rmtree(folder, ignore_errors=True)
    events_extract(output_dir=events, start_date=datetime(1970, 1, 1, tzinfo=UTC), tenant=tenant)
    datasets_build(input_dir=events, output_dir=splits, ratios=(0.8, 0.1, 0.1))
    from registry.models import ModelVersion
    from registry.services import model_version_activate

    result = collaborative_train(
        model=model, data_dir=splits, config_path=config, tenant_slug=tenant.slug, progress=True, refit_all=True
    )
    version = ModelVersion.objects.get(pk=result.version_id)
    if version.status != "active":  # the tenant's first version is activated on registration
        model_version_activate(version=version, actor="system:bench", reason="online_eval --retrain-cf")
    metric = result.metrics["validation_metric"]
    print(f"-- collaborative {model}: val {metric} {result.metrics[f'val_{metric}']:.4f}, version {result.version_id}")


def train_ranker(tenant: Any, groups: str, since_share: float) -> None:
    """``train_ranker --groups groups`` on the warm-up (registered and activated). Pools use the
    whole warm-up (cuts at 70/80/90 % of it); impressions those after ``since_share`` of the
    period. The active collaborative model supplies the pools and its model features."""
    from django.utils import timezone

    from recommender.training.ranker import ranker_train

    since = timezone.now() - timedelta(days=HISTORY_DAYS * (1.0 - since_share)) if groups == "impressions" else None
    result = ranker_train(tenant=tenant, since=since, groups=groups, progress=True, created_by="system:bench")
    from registry.models import ModelVersion
    from registry.services import model_version_activate

    version = ModelVersion.objects.get(pk=result.version_id)
    if version.status != "active":  # the tenant's first version is activated on registration
        model_version_activate(version=version, actor="system:bench", reason="online_eval --retrain-cf")
    info = result.metrics
    ndcg = info.get("val_ndcg@10")
    print(f"-- ranker: {info.get('groups')} {groups} groups, val ndcg@10 {ndcg}, version {result.version_id}")


def profiles_in_order(tenant: Any, population: Sequence[Any]) -> list[Any]:
    """Profile rows in population order (external ids are deterministic per index)."""
    from recommender.models import Profile

    by_external = {str(p.external_id): p for p in Profile.objects.filter(tenant=tenant)}
    return [by_external[p.external_id] for p in population]


def open_or_prepare(env: BenchEnv, args: argparse.Namespace, population: Sequence[Any], simulator: Any, phases: Phases):
    if args.reuse and database_exists(env):
        migrate_schema()
        tenant = prepared_tenant(manifest(args))
        if tenant is not None:
            print(f"-- reusing the prepared database {env.db_name}")
            if args.retrain_cf:
                with phases("collaborative model"):
                    train_collaborative(tenant, args.cf_model, env.var_dir, args.cf_config)
                with phases("ranker"):
                    train_ranker(tenant, args.ranker_groups, args.ranker_since)
            return tenant, True
        from django.db import connections

        connections.close_all()  # the database is about to be dropped
    return prepare(env, args, population, simulator, phases), False


# --- One database copy per variant ------------------------------------------------------------


@contextmanager
def database_copy(env: BenchEnv, variant: str) -> Iterator[None]:
    """Run the block on a throw-away copy of the prepared database (see the module docstring)."""
    from django.db import connections

    connections.close_all()
    default = connections["default"].settings_dict
    original = default["NAME"]
    copy_name = f"{env.db_name}_{variant}"
    if env.embedded:
        copy_path = env.var_dir / f"{variant}.sqlite3"
        shutil.copyfile(env.sqlite_path, copy_path)
        default["NAME"] = copy_path
    else:
        _pg_admin(
            f'DROP DATABASE IF EXISTS "{copy_name}" WITH (FORCE)',
            f'CREATE DATABASE "{copy_name}" TEMPLATE "{original}"',
            env=env,
        )
        default["NAME"] = copy_name
    try:
        yield
    finally:
        connections.close_all()
        default["NAME"] = original
        if env.embedded:
            Path(env.var_dir / f"{variant}.sqlite3").unlink(missing_ok=True)
        else:
            _pg_admin(f'DROP DATABASE IF EXISTS "{copy_name}" WITH (FORCE)', env=env)


def _pg_admin(*statements: str, env: BenchEnv) -> None:
    import psycopg

    with psycopg.connect(f"{env.server_url}/postgres", autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def reset_process_state() -> None:
    """Forget everything a previous variant left in this process or in the bench cache."""
    from recommender.feed.pipeline import feed_reset_for_tests
    from recommender.serving.index import index_reset_for_tests

    feed_reset_for_tests()
    index_reset_for_tests()
    clear_cache()


# --- Evaluation -------------------------------------------------------------------------------


@dataclass
class VariantCounts:
    """Per evaluated user (same order for every variant), summed over rounds."""

    impressions: np.ndarray
    likes: np.ndarray
    matches: np.ndarray  # hidden answer: u liked v and v would like u
    recorded_matches: np.ndarray  # matches the ingestion actually created
    short_feeds: int = 0
    fallbacks: dict[str, int] = field(default_factory=dict)
    per_round_matches: list[int] = field(default_factory=list)


class SimulatorOracle:
    """Match probabilities of (u, v) pairs from the simulator's hidden model, for the ceilings.

    ``true``: p(u, v) * p(v, u), the simulator's own like probabilities (the two decisions are
    independent draws, so their product is the match probability before the dice are cast).

    ``observable``: the same product with each direction's *pair chemistry* integrated out:
    E_e[min(sigmoid(b_u + s(u, v) - c_uv + e), cap)] over the chemistry distribution (a scaled
    standard logistic, ``SimConfig.pair_noise_sd``), by midpoint quadrature on its quantiles
    (``ORACLE_QUADRATURE`` points). Chemistry is the only per-pair hidden term of the utility; the
    two directions' draws are independent, so the product is still the expected match. This
    reads the simulator's private arrays (``_utility``, ``_key``) instead of adding a method to
    it: the benchmark owns the ceiling, the simulator stays the ground truth it was.
    """

    def __init__(self, simulator: Any, points: int = ORACLE_QUADRATURE) -> None:
        self.sim = simulator
        cfg = simulator.config
        quantiles = (np.arange(points) + 0.5) / points
        # the simulator's chemistry: pair_noise_sd * sqrt(3)/pi * logit(U), U uniform
        self._nodes = cfg.pair_noise_sd * (np.sqrt(3) / np.pi) * np.log(quantiles / (1 - quantiles))  # (q,)

    def _chemistry(self, u: int, vs: np.ndarray) -> np.ndarray:
        from recommender.simulation.simulator import _STREAM_CHEMISTRY, pair_uniforms

        cfg = self.sim.config
        uniform = np.clip(pair_uniforms(self.sim._key, _STREAM_CHEMISTRY, u, vs), 1e-12, 1 - 1e-12)
        return cfg.pair_noise_sd * (np.sqrt(3) / np.pi) * np.log(uniform / (1 - uniform))

    def like_probabilities(self, u: int, vs: np.ndarray, observable: bool) -> np.ndarray:
        """(n,) P(u likes v): the simulator's, or its expectation over the pair chemistry."""
        if not observable:
            return self.sim.like_probabilities(u, vs)
        sim, cfg = self.sim, self.sim.config
        logits = sim.intercept[u] + sim._utility(u, vs) - self._chemistry(u, vs)  # (n,)
        p = np.minimum(1.0 / (1.0 + np.exp(-(logits[:, None] + self._nodes[None, :]))), cfg.max_like_probability)
        p = np.where(sim.seeks[u, sim.gender[vs]], p.mean(axis=1), cfg.incompatible_like_rate)
        return np.where(vs == u, 0.0, p)

    def match_probabilities(self, u: int, vs: np.ndarray, observable: bool) -> np.ndarray:
        """(n,) P(u likes v) * P(v likes u) for population indices ``vs``."""
        forward = self.like_probabilities(u, vs, observable)
        target = np.asarray([u], dtype=np.int64)
        back = [self.like_probabilities(v, target, observable)[0] for v in vs.tolist()]
        return forward * np.asarray(back, dtype=np.float64)


@dataclass
class CeilingPicker:
    """A ceiling's "feed": the user's ``count`` eligible candidates with the highest match
    probability by :class:`SimulatorOracle`. Eligible = what the feed may show: active, the hard
    filters both ways (``hard_filter_mask``: genders sought, age ranges, distance within both
    maxima), never the user, nobody they swiped, matched, blocked or reported (the feed's own
    readers). No exploration slots. Probabilities are computed once per user (they do not
    change); only the exclusions are re-read each round."""

    tenant: Any
    oracle: SimulatorOracle
    observable: bool
    index_of_pk: dict[int, int]
    _cache: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # u -> (pks, scores)

    def pick(self, user: Any, u: int, count: int) -> list[int]:
        from recommender.feed.reads import feed_reads

        pks, scores = self._scored(user, u)
        reads = feed_reads(tenant_id=self.tenant.pk, user_id=user.pk)  # the feed's one read of both
        skip = np.concatenate([reads.history.swiped, np.fromiter(reads.excluded, dtype=np.int64)])
        allowed = ~np.isin(pks, skip)
        order = np.lexsort((pks[allowed], -scores[allowed]))[:count]  # best first; ties by pk
        return pks[allowed][order].tolist()

    def _scored(self, user: Any, u: int) -> tuple[np.ndarray, np.ndarray]:
        if u not in self._cache:
            from recommender.feed.features import profile_features
            from recommender.feed.store import candidate_store
            from recommender.ml.structured import hard_filter_mask

            snap = candidate_store(self.tenant.pk).snapshot()
            rows = np.flatnonzero(snap.active)
            rows = rows[hard_filter_mask(profile_features(user), snap.batch.take(rows))]
            pks = snap.batch.ids[rows]
            pks = pks[pks != user.pk]
            vs = np.asarray([self.index_of_pk[pk] for pk in pks.tolist()], dtype=np.int64)
            self._cache[u] = (pks, self.oracle.match_probabilities(u, vs, self.observable))
        return self._cache[u]


@dataclass
class _Shown:
    pks: list[int]  # profile pks in feed order
    fallback: str | None = None


def evaluate_variant(
    tenant: Any, variant: str, users: Sequence[int], simulator: Any, args: argparse.Namespace
) -> VariantCounts:
    from django.utils import timezone
    from tqdm import tqdm

    from recommender.models import Profile
    from recommender.services.events import SwipeIn, swipe_batch_ingest

    by_external = {str(p.external_id): p for p in Profile.objects.filter(tenant=tenant)}
    population = simulator.population
    profiles = [by_external[population[u].external_id] for u in users]
    index_of_pk = {by_external[p.external_id].pk: i for i, p in enumerate(population)}
    external_of_pk = {p.pk: p.external_id for p in by_external.values()}
    show = _shower(tenant, variant, simulator, index_of_pk, args)
    n = len(users)
    counts = VariantCounts(*(np.zeros(n, dtype=np.int64) for _ in range(4)))
    for round_no in range(args.rounds):
        round_matches = 0
        for k in tqdm(range(n), desc=f"{variant} round {round_no + 1}/{args.rounds}", unit="user", leave=False):
            u, user = users[k], profiles[k]
            shown_feed = show(user, u)
            key = shown_feed.fallback or "none"
            counts.fallbacks[key] = counts.fallbacks.get(key, 0) + 1
            if len(shown_feed.pks) < args.count:
                counts.short_feeds += 1
            if not shown_feed.pks:
                continue
            shown = [index_of_pk[pk] for pk in shown_feed.pks]
            actions = simulator.respond(u, shown)
            liked = [a != "pass" for a in actions]
            matched = sum(like and simulator.would_like(v, u) for v, like in zip(shown, liked, strict=True))
            ingest = swipe_batch_ingest(
                tenant=tenant,
                user=user,
                session_id=f"eval:{variant}:{round_no}:{uuid.uuid4()}",
                timestamp=timezone.now(),
                swipes=[
                    SwipeIn(candidate_id=external_of_pk[pk], action=action)
                    for pk, action in zip(shown_feed.pks, actions, strict=True)
                ],
            )
            counts.impressions[k] += len(shown)
            counts.likes[k] += sum(liked)
            counts.matches[k] += matched
            counts.recorded_matches[k] += len(ingest.matches)
            round_matches += matched
        counts.per_round_matches.append(round_matches)
    return counts


def _shower(tenant: Any, variant: str, simulator: Any, index_of_pk: dict[int, int], args: argparse.Namespace) -> Any:
    """``show(user, u) -> _Shown``: the variant's feed for one user (a ceiling's pick for the
    ceilings)."""
    if variant in CEILINGS:
        picker = CeilingPicker(tenant, SimulatorOracle(simulator), variant == "oracle_observable", index_of_pk)
        return lambda user, u: _Shown(picker.pick(user, u, args.count))
    from recommender.feed.pipeline import feed_for
    from recommender.serving.collaborative import collaborative_wait
    from recommender.serving.ranker import ranker_wait

    feed_variant, use_cf, use_ranker = FEEDS[variant]
    if use_cf:
        collaborative_wait(tenant.pk)  # serve the model from the first request, as a warmed-up server would
    if use_ranker and ranker_wait(tenant.pk) is None:
        raise SystemExit("no active ranker version: prepare again (or --retrain-cf, which trains one too)")

    def show(user: Any, u: int) -> _Shown:
        result = feed_for(
            tenant=tenant,
            user=user,
            count=args.count,
            variant=feed_variant,
            log_impressions=True,
            use_collaborative=use_cf,
            use_ranker=use_ranker,
        )
        return _Shown([item.profile_id for item in result.items], result.fallback)

    return show


COLD_BELOW = 5  # fewer swipes given than this: a cold user (as bench.deep)
TARGET_COLD_COVERAGE = 0.95


def cold_coverage(tenant: Any, count: int, limit: int) -> dict[str, Any]:
    """The feed's cold start as users get it, on the prepared database (nothing written): of the
    active profiles with fewer than COLD_BELOW swipes given whose eligible pool holds at least
    ``count`` profiles (hard filters both ways, active, never swiped, not themself), the share
    whose reciprocal feed (with the active collaborative model and ranker) is full."""
    from django.db.models import Count
    from tqdm import tqdm

    from recommender.feed.features import profile_features
    from recommender.feed.pipeline import feed_for
    from recommender.feed.store import candidate_store
    from recommender.ml.structured import hard_filter_mask
    from recommender.models import Profile, Swipe

    users = list(
        Profile.objects.filter(tenant=tenant, status="active")
        .annotate(given=Count("swipes_made"))
        .filter(given__lt=COLD_BELOW)
        .order_by("pk")[:limit]
    )
    store = candidate_store(tenant.pk)
    store.refresh(force=True)
    snap = store.snapshot()
    active = np.flatnonzero(snap.active)
    checked = full = small_pool = 0
    short: list[dict[str, Any]] = []
    for user in tqdm(users, desc="cold coverage", unit="user", leave=False):
        swiped = set(Swipe.objects.filter(user=user).values_list("candidate_id", flat=True)) | {user.pk}
        ok = hard_filter_mask(profile_features(user), snap.batch.take(active))
        ok &= ~np.isin(snap.batch.ids[active], list(swiped))
        if int(ok.sum()) < count:
            small_pool += 1
            continue
        result = feed_for(tenant=tenant, user=user, count=count, log_impressions=False)
        checked += 1
        if len(result.items) == count:
            full += 1
        elif len(short) < 10:
            short.append({"profile": user.pk, "eligible": int(ok.sum()), "served": len(result.items)})
    return {
        "cold_users": len(users),
        "with_a_big_enough_pool": checked,
        "pool_smaller_than_count": small_pool,
        "full_feeds": full,
        "coverage": full / checked if checked else None,
        "short_examples": short,
    }


def pick_users(tenant: Any, population: Sequence[Any], n: int, seed: int) -> list[int]:
    """Seeded sample of population indices among active profiles."""
    rng = np.random.default_rng([seed, 301])
    active = [i for i, p in enumerate(population) if p.status == "active"]
    return sorted(rng.choice(active, size=min(n, len(active)), replace=False).tolist())


# --- Statistics -------------------------------------------------------------------------------


def bootstrap(results: dict[str, VariantCounts], resamples: int, seed: int) -> dict[str, Any]:
    """Paired bootstrap over users: 95 % intervals of rates (per 100) and of reciprocal ratios."""
    rng = np.random.default_rng([seed, 302])
    n = len(next(iter(results.values())).impressions)
    picks = rng.integers(0, n, size=(resamples, n))  # (B, n) user indices
    rates: dict[str, dict[str, np.ndarray]] = {}
    for variant, c in results.items():
        impressions = c.impressions[picks].sum(axis=1)  # (B,)
        denom = np.maximum(impressions, 1)
        rates[variant] = {
            "likes": 100 * c.likes[picks].sum(axis=1) / denom,
            "matches": 100 * c.matches[picks].sum(axis=1) / denom,
        }
    out: dict[str, Any] = {
        variant: {metric: _ci(values) for metric, values in by_metric.items()} for variant, by_metric in rates.items()
    }
    for best, other in RATIO_PAIRS:
        if best in rates and other in rates:
            ratio = rates[best]["matches"] / np.maximum(rates[other]["matches"], 1e-9)
            out[f"match_ratio_{best}_over_{other}"] = _ci(ratio)
    return out


def _ci(values: np.ndarray) -> list[float]:
    low, high = np.percentile(values, [2.5, 97.5])
    return [round(float(low), 3), round(float(high), 3)]


def summarize_variant(c: VariantCounts) -> dict[str, Any]:
    impressions = int(c.impressions.sum())
    likes, matches = int(c.likes.sum()), int(c.matches.sum())
    per100 = 100 / max(impressions, 1)
    wilson = wilson_interval(matches, impressions)
    return {
        "impressions": impressions,
        "likes": likes,
        "matches": matches,
        "recorded_matches": int(c.recorded_matches.sum()),
        "likes_per_100": round(likes * per100, 3),
        "matches_per_100": round(matches * per100, 3),
        "matches_per_100_wilson95": [round(100 * wilson[0], 3), round(100 * wilson[1], 3)],
        "matches_per_round": c.per_round_matches,
        "short_feeds": c.short_feeds,
        "fallbacks": c.fallbacks,
    }


def report(payload: dict[str, Any]) -> None:
    variants, ci = payload["variants"], payload["bootstrap95"]
    rows = [
        [
            f"{name} (ceiling, not a feed)" if name in CEILINGS else name,
            v["impressions"],
            v["likes_per_100"],
            v["matches_per_100"],
            f"{ci[name]['matches'][0]:.2f}-{ci[name]['matches'][1]:.2f}",
            v["recorded_matches"],
        ]
        for name, v in variants.items()
    ]
    print(f"\nonline_eval {payload['population']['name']}: {payload['users']} users x {payload['rounds']} rounds")
    print(format_table(["variant", "impressions", "likes/100", "matches/100", "95% CI (bootstrap)", "recorded"], rows))
    print(f"feed settings: {payload['feed_settings']}")
    for name, value in payload["ratios"].items():
        interval = ci.get(f"match_ratio_{name}")
        suffix = f" (95% CI {interval[0]:.2f}-{interval[1]:.2f})" if interval else ""
        print(f"{name}: {value:.2f}x{suffix}")
    print(f"targets: {payload['targets']}")


def ratios(summary: dict[str, dict[str, Any]]) -> dict[str, float]:
    out = {}
    for best, other in RATIO_PAIRS:
        if best in summary and other in summary:
            base = summary[best]["matches_per_100"]
            out[f"{best}_over_{other}"] = round(base / max(summary[other]["matches_per_100"], 1e-9), 3)
    return out


def targets(summary: dict[str, dict[str, Any]], ratio: dict[str, float]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "reciprocal_over_random" in ratio:
        out["reciprocal_at_least_3x_random"] = ratio["reciprocal_over_random"] >= TARGET_RATIO_VS_RANDOM
    if "reciprocal_over_one_way" in ratio:
        out["reciprocal_ahead_of_one_way"] = ratio["reciprocal_over_one_way"] > 1.0
    return out


def feed_settings() -> dict[str, Any]:
    """The settings that shape the feed's ranking (read from the environment, see README)."""
    from django.conf import settings

    names = (
        "ML_FUSION_METHOD",
        "ML_EXPLORATION_SHARE",
        "ML_COLLABORATIVE_WEIGHT",
        "ML_COLLABORATIVE_CANDIDATES",
        "ML_SELECTIVITY_WEIGHT",
    )
    return {name: getattr(settings, name, None) for name in names}


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    name = args.population.replace("-", "_")
    env = isolate(f"patra_bench_online_{name}", embedded=args.embedded)
    setup_django()
    from recommender.simulation import SwipeSimulator

    phases = Phases()
    with phases("population and simulator"):
        population = load_population(args)
        # Same population and seed as the warm-up: the hidden preferences are the same ones.
        simulator = SwipeSimulator(population, seed=args.seed)
    tenant, reused = open_or_prepare(env, args, population, simulator, phases)
    users = pick_users(tenant, population, args.users, args.seed)
    results: dict[str, VariantCounts] = {}
    for variant in args.variants:
        with phases(f"variant {variant}"), database_copy(env, variant):
            reset_process_state()
            results[variant] = evaluate_variant(tenant, variant, users, simulator, args)
    summary = {variant: summarize_variant(c) for variant, c in results.items()}
    ratio = ratios(summary)
    coverage = None
    if args.cold_users > 0:
        with phases("cold coverage"):
            reset_process_state()
            coverage = cold_coverage(tenant, args.count, args.cold_users)
    payload = {
        "benchmark": "online_eval",
        "command": "python -m bench.online_eval " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(),
        "backend": backend_info(),
        "population": {"name": args.population, "profiles": len(population), "seed": args.seed},
        "warmup_swipes": args.warmup_swipes,
        "reused_preparation": reused,
        "ranker_groups": args.ranker_groups,
        "users": len(users),
        "rounds": args.rounds,
        "feed_count": args.count,
        "phase_seconds": phases.seconds,
        "feed_settings": feed_settings(),
        "ceilings": [v for v in args.variants if v in CEILINGS],
        "variants": summary,
        "ratios": ratio,
        "bootstrap95": bootstrap(results, args.bootstrap, args.seed),
        "targets": targets(summary, ratio),
        "cold_coverage": coverage,
    }
    if coverage is not None and coverage["coverage"] is not None:
        payload["targets"]["cold_coverage_above_95pct"] = coverage["coverage"] > TARGET_COLD_COVERAGE
    suffix = ("_sqlite" if args.embedded else "") + args.result_suffix
    path = write_result(f"online_eval_{name}{suffix}", payload)
    report(payload)
    if coverage is not None:
        c = coverage
        print(
            f"cold coverage: {c['full_feeds']}/{c['with_a_big_enough_pool']} cold users with a big enough pool got "
            f"a full feed of {args.count} ({c['pool_smaller_than_count']} had fewer eligible)"
        )
    print(f"written {path.relative_to(REPO_DIR)}")
    print(json.dumps(payload["targets"]))


if __name__ == "__main__":
    main()
