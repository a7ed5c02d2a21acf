"""Bulk loading of a synthetic population with a simulated history (``manage.py load_synthetic``).

Built for a million profiles on one machine:

* **Profiles**: ``synthetic_rows`` (OkCupid-shaped rows bootstrapped from the vendored sample or
  the full files) and ``build_population``, written in chunks with PostgreSQL ``COPY``
  (psycopg's ``cursor.copy``). The generator only emits valid values and the table's check
  constraints still apply. On SQLite (no COPY) the chunks go through ``profiles_bulk_create``,
  validated like the API.
* **History**: a vectorised random process (``simulate_swipes``): sessions of users drawn by a
  lognormal activity; candidates of a sought gender drawn by a lognormal attractiveness (popular
  profiles are shown more); likes with a per-gender base rate scaled by the candidate's
  attractiveness; one swipe per (user, candidate) pair, none on oneself, spread over the last
  ``HISTORY_DAYS`` days. Swipes, then the mutual-like matches, are written with COPY (or
  ``bulk_create``), then ``elo_rebuild`` computes the Elo ratings and like-rate counters. The
  :class:`recommender.simulation.SwipeSimulator` is not used here: its calibration holds an
  n x 256 array, too big at this size.
* **Embeddings** (optional, ``embeddings="synthetic"``): unit vectors made of a seeded random
  384-d topic vector per interest tag plus noise, stored under the configured model name and the
  real text hash, so ``build_index`` takes them as current instead of encoding a million bios
  with MiniLM (days on two CPU cores). ``embeddings="none"`` leaves encoding to ``build_index``.

Every step reports progress through ``progress(step, done, total)``.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Tenant
from recommender.ml.embedding_spec import profile_text
from recommender.models import LIFESTYLE_FIELDS, Match, Profile, ProfileEmbedding, Swipe
from recommender.services.elo import elo_rebuild
from recommender.services.simulation import population_load
from recommender.simulation import load_sample, synthetic_rows
from recommender.simulation.population import build_profile, draw_locations

Progress = Callable[[str, int, int], None]
CHUNK = 50_000
HISTORY_DAYS = 60
EMBEDDING_DIM = 384
GENDERS: tuple[str, ...] = ("woman", "man", "nonbinary")
BASE_LIKE_RATE = {"woman": 0.10, "man": 0.46, "nonbinary": 0.25}
PROFILE_COLUMNS: tuple[str, ...] = (
    "tenant_id", "external_id", "status", "age", "gender", "seeking", "age_min", "age_max",
    "max_distance_km", "lat", "lon", "bio", "prompts", "interests", *LIFESTYLE_FIELDS,
    "created_at", "updated_at",
)  # fmt: skip
SWIPE_COLUMNS = (
    "tenant_id",
    "user_id",
    "candidate_id",
    "action",
    "duration_ms",
    "session_id",
    "occurred_at",
    "received_at",
)
MATCH_COLUMNS = ("tenant_id", "user_a_id", "user_b_id", "match_type", "occurred_at", "received_at")
EMBEDDING_COLUMNS = ("profile_id", "tenant_id", "model_name", "dim", "vector", "text_hash", "updated_at")


@dataclass
class BulkLoadResult:
    profiles: int = 0
    swipes: int = 0
    matches: int = 0
    embeddings: int = 0
    elo_ratings: int = 0
    loader: str = ""
    seconds: dict[str, float] = field(default_factory=dict)


def uses_copy() -> bool:
    return connection.vendor == "postgresql"


def copy_rows(table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    count = 0
    with connection.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def _noop(step: str, done: int, total: int) -> None:
    pass


# --- Profiles ------------------------------------------------------------------------------------


def profile_copy_row(tenant_id: int, p: Any, stamp: datetime) -> tuple[Any, ...]:
    # Missing attributes are "" (None for height), as profiles_bulk_create stores them.
    attributes = [
        p.attributes.get(name) if p.attributes.get(name) is not None or name == "height" else ""
        for name in LIFESTYLE_FIELDS
    ]
    return (
        tenant_id, uuid.UUID(p.external_id), p.status, p.age, p.gender, json.dumps(p.seeking), p.age_min,
        p.age_max, float(p.max_distance_km), p.lat, p.lon, p.bio, json.dumps(p.prompts), json.dumps(p.interests),
        *attributes, stamp, stamp,
    )  # fmt: skip


def creation_stamps(n: int, seed: int, now: datetime) -> list[datetime]:
    """Creation times spread over the past year, oldest first (a real population grew over time)."""
    ages = np.sort(np.random.default_rng([seed, 104]).uniform(0, 365 * 86_400, n))[::-1]
    return [now - timedelta(seconds=float(a)) for a in ages]


def load_profiles(tenant: Tenant, population: Sequence[Any], *, seed: int, progress: Progress = _noop) -> np.ndarray:
    """Write the population; returns the primary keys in population order."""
    stamps = creation_stamps(len(population), seed, timezone.now())
    done = 0
    for start in range(0, len(population), CHUNK):
        chunk = range(start, min(start + CHUNK, len(population)))
        if uses_copy():
            with transaction.atomic():
                copy_rows(
                    Profile._meta.db_table,
                    PROFILE_COLUMNS,
                    (profile_copy_row(tenant.pk, population[i], stamps[i]) for i in chunk),
                )
        else:
            population_load(tenant=tenant, population=[population[i] for i in chunk])
        done += len(chunk)
        progress("profiles", done, len(population))
    by_external = {
        str(ext): pk
        for pk, ext in Profile.objects.filter(tenant=tenant).values_list("pk", "external_id").iterator(CHUNK)
    }
    return np.array([by_external[p.external_id] for p in population], dtype=np.int64)


# --- History -------------------------------------------------------------------------------------


@dataclass
class SimulatedSwipes:
    user: np.ndarray  # population indices
    candidate: np.ndarray
    action: np.ndarray  # 0 pass, 1 like, 2 superlike
    session: np.ndarray
    seconds: np.ndarray  # offset from the history's start


def simulate_swipes(population: Sequence[Any], n_swipes: int, seed: int) -> SimulatedSwipes:
    """The random history described in the module docstring (vectorised, ~1 s per 10^6 swipes)."""
    rng = np.random.default_rng([seed, 301])
    n = len(population)
    gender = np.array([GENDERS.index(p.gender) for p in population], dtype=np.int64)
    seeks = np.zeros((n, len(GENDERS)), dtype=bool)
    for i, p in enumerate(population):
        seeks[i, [GENDERS.index(g) for g in p.seeking]] = True
    attractiveness = np.exp(rng.normal(0.0, 1.0, n))
    activity = np.exp(rng.normal(0.0, 1.3, n))
    n_sessions = int(n_swipes / 15 * 1.3) + 10
    session_user = rng.choice(n, size=n_sessions, p=activity / activity.sum())
    sizes = np.minimum(rng.geometric(1 / 15, n_sessions), 60)
    keep = int(np.searchsorted(np.cumsum(sizes), n_swipes)) + 1
    session_user, sizes = session_user[:keep], sizes[:keep]
    user = np.repeat(session_user, sizes)[:n_swipes]
    session = np.repeat(np.arange(len(sizes)), sizes)[:n_swipes]
    position = np.arange(len(session)) - np.repeat(np.cumsum(sizes) - sizes, sizes)[:n_swipes]
    wanted = np.where(seeks[user], rng.random((len(user), len(GENDERS))), -1.0).argmax(axis=1)
    candidate = np.empty(len(user), dtype=np.int64)
    for g in range(len(GENDERS)):
        members = np.flatnonzero(gender == g)
        sel = wanted == g
        if not sel.any():
            continue
        if not len(members):
            candidate[sel] = rng.integers(0, n, int(sel.sum()))
            continue
        cum = np.cumsum(attractiveness[members] ** 0.6)
        candidate[sel] = members[np.searchsorted(cum, rng.random(int(sel.sum())) * cum[-1])]
    base = np.array([BASE_LIKE_RATE[g] for g in GENDERS])[gender[user]]
    lift = attractiveness[candidate] ** 0.5 / np.mean(attractiveness**0.5)
    liked = rng.random(len(user)) < np.clip(base * lift, 0.0, 0.95)
    action = np.where(liked, np.where(rng.random(len(user)) < 0.03, 2, 1), 0)
    _, first = np.unique(user * n + candidate, return_index=True)
    ok = np.zeros(len(user), dtype=bool)
    ok[first] = True
    ok &= user != candidate
    session_start = np.sort(rng.random(len(sizes))) * HISTORY_DAYS * 86_400
    seconds = session_start[session] + position * 4.0
    return SimulatedSwipes(user[ok], candidate[ok], action[ok], session[ok], seconds[ok])


def load_history(
    tenant: Tenant, pks: np.ndarray, swipes: SimulatedSwipes, *, seed: int, progress: Progress = _noop
) -> tuple[int, int]:
    """Write the swipes in time order and one match per mutual like; returns (swipes, matches)."""
    now = timezone.now()
    start = now - timedelta(days=HISTORY_DAYS)
    rng = np.random.default_rng([seed, 302])
    order = np.argsort(swipes.seconds, kind="stable")
    names = np.array(["pass", "like", "superlike"])
    durations = np.clip(np.exp(rng.normal(np.log(2500), 0.6, len(order))), 250, 120_000).astype(np.int64)
    session_ids: dict[Any, Any] = {}
    total = len(order)
    written = 0
    for lo in range(0, total, CHUNK):
        idx = order[lo : lo + CHUNK]
        rows: list[tuple[Any, ...]] = []
        for i in idx.tolist():
            sess = int(swipes.session[i])
            sid = session_ids.setdefault(sess, str(uuid.UUID(int=(seed << 64) ^ sess, version=4)))
            ts = start + timedelta(seconds=float(swipes.seconds[i]))
            rows.append(
                (
                    tenant.pk,
                    int(pks[swipes.user[i]]),
                    int(pks[swipes.candidate[i]]),
                    str(names[swipes.action[i]]),
                    int(durations[i]),
                    sid,
                    ts,
                    now,
                )
            )
        with transaction.atomic():
            if uses_copy():
                written += copy_rows(Swipe._meta.db_table, SWIPE_COLUMNS, rows)
            else:
                objs = [Swipe(**dict(zip(SWIPE_COLUMNS, r, strict=True))) for r in rows]
                written += len(Swipe.objects.bulk_create(objs, batch_size=5_000))
        progress("swipes", min(lo + CHUNK, total), total)
    matches = _load_matches(tenant, pks, swipes, start=start, now=now)
    progress("matches", matches, matches)
    return written, matches


def _load_matches(tenant: Tenant, pks: np.ndarray, swipes: SimulatedSwipes, *, start: datetime, now: datetime) -> int:
    """Write one match per mutual like of ``swipes``; returns how many."""
    # Mutual likes: both directions positive; the match happens at the later of the two swipes.
    positive = swipes.action > 0
    when = {}
    superlike = {}
    for u, c, a, s in zip(
        swipes.user[positive].tolist(),
        swipes.candidate[positive].tolist(),
        swipes.action[positive].tolist(),
        swipes.seconds[positive].tolist(),
        strict=True,
    ):
        when[(u, c)] = s
        superlike[(u, c)] = a == 2
    rows = []
    for (u, c), s in when.items():
        if u < c and (c, u) in when:
            a, b = sorted((int(pks[u]), int(pks[c])))
            kind = "superlike" if superlike[(u, c)] or superlike[(c, u)] else "mutual_like"
            rows.append((tenant.pk, a, b, kind, start + timedelta(seconds=max(s, when[(c, u)])), now))
    with transaction.atomic():
        if uses_copy():
            matches = copy_rows(Match._meta.db_table, MATCH_COLUMNS, rows)
        else:
            objs = [Match(**dict(zip(MATCH_COLUMNS, r, strict=True))) for r in rows]
            matches = len(Match.objects.bulk_create(objs, batch_size=5_000))
    return matches


# --- Embeddings ----------------------------------------------------------------------------------


def synthetic_vectors(population: Sequence[Any], seed: int, dim: int = EMBEDDING_DIM) -> np.ndarray:
    """(n, dim) float32 unit rows: the sum of a random topic vector per interest, plus noise.

    The interest membership is a sparse (n, tags) matrix, so a million profiles take one sparse
    product rather than a Python loop over every tag of every profile."""
    from scipy import sparse

    rng = np.random.default_rng([seed, 303])
    vocabulary = sorted({tag for p in population for tag in p.interests})
    column = {tag: i for i, tag in enumerate(vocabulary)}
    topics = rng.standard_normal((max(len(vocabulary), 1), dim), dtype=np.float32)
    indptr = np.cumsum([0, *(len(p.interests) for p in population)])
    indices = np.fromiter((column[t] for p in population for t in p.interests), dtype=np.int64, count=indptr[-1])
    membership = sparse.csr_matrix(
        (np.ones(len(indices), np.float32), indices, indptr), shape=(len(population), topics.shape[0])
    )
    vectors = np.asarray(membership @ topics) + 0.7 * rng.standard_normal((len(population), dim), dtype=np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors.astype("<f4")


def load_synthetic_embeddings(
    tenant: Tenant, population: Sequence[Any], pks: np.ndarray, *, seed: int, progress: Progress = _noop
) -> int:
    vectors = synthetic_vectors(population, seed)
    now = timezone.now()
    written = 0
    for lo in range(0, len(population), CHUNK):
        rows = []
        for i in range(lo, min(lo + CHUNK, len(population))):
            text = profile_text(population[i].bio, population[i].prompts)
            if text:  # the service stores no embedding for an empty text either
                digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
                rows.append(
                    (int(pks[i]), tenant.pk, settings.EMBEDDING_MODEL, EMBEDDING_DIM, vectors[i].tobytes(), digest, now)
                )
        with transaction.atomic():
            if uses_copy():
                written += copy_rows(ProfileEmbedding._meta.db_table, EMBEDDING_COLUMNS, rows)
            else:
                objs = [ProfileEmbedding(**dict(zip(EMBEDDING_COLUMNS, r, strict=True))) for r in rows]
                written += len(ProfileEmbedding.objects.bulk_create(objs, batch_size=5_000))
        progress("embeddings", min(lo + CHUNK, len(population)), len(population))
    return written


def generate_population(rows: Sequence[Any], *, seed: int, progress: Progress = _noop) -> list[Any]:
    """``build_population(rows, seed)``, profile by profile, with progress (minutes at 10^6)."""
    rng = random.Random(seed)  # the same draws, in the same order, as build_population
    locations = draw_locations(len(rows), seed)
    population = []
    for i, row in enumerate(rows):
        population.append(build_profile(row, i, seed, (locations[i, 0], locations[i, 1]), rng))
        if (i + 1) % 10_000 == 0 or i + 1 == len(rows):
            progress("generate", i + 1, len(rows))
    return population


# --- Everything ----------------------------------------------------------------------------------


def synthetic_population_load(
    *,
    tenant: Tenant,
    profiles: int,
    swipes: int,
    seed: int = 7,
    source: Sequence[Any] | None = None,
    embeddings: str = "none",
    progress: Progress = _noop,
) -> BulkLoadResult:
    """Generate and load ``profiles`` synthetic profiles and about ``swipes`` history swipes
    into ``tenant`` (which should be empty: external ids are deterministic per seed and index)."""
    if embeddings not in {"none", "synthetic"}:
        raise ValueError("embeddings must be 'none' or 'synthetic'")
    result = BulkLoadResult(loader="copy" if uses_copy() else "bulk_create")
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        result.seconds[name] = round(now - clock, 2)
        clock = now

    rows = synthetic_rows(profiles, seed=seed, source=source if source is not None else load_sample())
    population = generate_population(rows, seed=seed, progress=progress)
    del rows
    lap("generate")
    pks = load_profiles(tenant, population, seed=seed, progress=progress)
    result.profiles = len(pks)
    lap("profiles")
    if swipes > 0 and len(population) > 1:
        sim = simulate_swipes(population, swipes, seed)
        result.swipes, result.matches = load_history(tenant, pks, sim, seed=seed, progress=progress)
        lap("history")
    result.elo_ratings = elo_rebuild(tenant=tenant)
    progress("elo", result.elo_ratings, result.elo_ratings)
    lap("elo")
    if embeddings == "synthetic":
        result.embeddings = load_synthetic_embeddings(tenant, population, pks, seed=seed, progress=progress)
        lap("embeddings")
    if uses_copy():
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        lap("analyze")
    return result


def result_dict(result: BulkLoadResult) -> dict[str, Any]:
    return asdict(result)
