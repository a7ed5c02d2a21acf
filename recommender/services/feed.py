"""The reciprocal feed: candidates the user is likely to like AND who are likely to like them back.

Stages (each timed, in ms, in ``FeedResult.stage_ms``):

``store``
    The tenant's in-process candidate store (``recommender.feed.store``): every active
    profile's features, Elo and a ``pk -> row`` map, refreshed by deltas at most every 2 s.
``history``
    One query (``feed_reads``): the user's swipes (who they swiped, and their last
    ``HISTORY_PER_ACTION`` likes, superlikes and passes) together with the likes the user
    received, and ``excluded_profile_ids`` (the user, their matches, blocks and reports).
``vectors_user``
    The user's own vector and their history's vectors (``profile_vectors``: cache, then DB),
    giving the taste vector (``taste_vector``). Skipped in fallback.
``candidates``
    A union of a few hundred to a few thousand store rows: (a) ANN neighbours of the user's
    own vector, (b) ANN neighbours of the taste vector, (c) "liked you": profiles that liked or
    superliked the user and that the user has not swiped, (d) Elo-popular and (e) newest
    profiles of the tenant (pools cached per tenant for a few seconds), (g) the active
    collaborative model's top ``ML_COLLABORATIVE_CANDIDATES`` by its own reciprocal score
    (both directions fused; when a model is loaded), scored only over the profiles that pass
    the structured pre-filter below, and (f) a structured
    pre-filter scan of the store (gender, age ranges, distance box) when the index is missing,
    ML is off, or (a) to (e) leave fewer than ``MIN_POOL_PER_ITEM`` eligible per slot, so a
    cold-start or fallback feed is still full.
``filter``
    Hard filters that hold both ways (``hard_filter_mask``: genders sought, age ranges,
    distance within both max distances), the request's narrowing filters, active status as the
    store knows it, and exclusion of the user, swiped and excluded profiles.
``vectors``
    Vectors of the eligible candidates only (``profile_vectors``).
``collaborative``
    The active collaborative model's log-odds for both directions of every eligible pair
    (skipped without one).
``score``
    ``recommender.feed.scoring``: P(u likes v) and P(v likes u) from bio similarity, the
    structured score, Elo, u's interaction adjustment and the liked-you boost, weighted by the
    ``ML_*_WEIGHT`` settings (renormalised over the signals available), pooled in log-odds with
    the active collaborative model's estimate of each direction (``ML_COLLABORATIVE_WEIGHT``;
    ``recommender.services.collaborative``), fused with
    ``ML_FUSION_METHOD``. The ``variant`` picks the ranking value: ``reciprocal`` (fused),
    ``one_way`` (P(u likes v)), ``popularity`` (Elo), ``random`` (a seeded draw; its candidates
    come from the structured pre-filter scan only, so it is a uniform draw of eligible profiles,
    not a shuffle of what the informed sources proposed).
``ranker``
    With an active ``ranker`` version (or a ranker experiment's arm) and the ``reciprocal``
    variant, the LightGBM ranker scores every eligible candidate from the same signals
    (``recommender.services.ranking``); its calibrated P(user likes v), answered as the
    ``ranker`` component, replaces ``p_user_likes`` in the reciprocal fusion. Without one (or
    with ML off) the hand-weighted fusion ranks.
``select``
    The top ``count - e`` candidates plus ``e = floor(count * ML_EXPLORATION_SHARE)`` drawn at
    random from the other eligible ones (seeded by tenant, user, day and variant, so a feed is
    reproducible within a day; ``"explore": true`` in their components; none for ``random``).
    Items are returned by descending score, so explored ones usually fill the last slots.
``live_check``
    One query re-reads the status of the chosen profiles: a profile banned, hidden or erased
    since the store or index last saw it is dropped and replaced, never served.
``log``
    The served batch is logged with ``impression_batch_ingest`` (``log_impressions=True``),
    with ``model_version`` naming the feed variant and the index version, e.g.
    ``feed-v1+index:<version>+cf:<version>+ranker:<version>``, ``feed-v1-one_way+index:<version>``
    or ``feed-v1-fallback``, and ``experiment_arm`` the variant, or the arm's tag when an
    experiment chose the index or the ranker.

Experiments: while an ``index`` experiment runs for the tenant, the user's arm (deterministic per
user, ``registry.experiments``) picks the index version the ANN stages query, and impressions
record the arm's tag and that version's label. An impression is tagged with an arm only when the
arm's version served it: if that version cannot be loaded the user gets the active index (and
``experiment_arm`` is the variant), so an arm's numbers never mix in another version's feeds.
A ``ranker`` experiment works the same way for the final scorer. An impression records one arm:
while an index and a ranker experiment run at once, the ranker arm's tag is recorded, so run
them one after the other for clean numbers.

Fallback: with ``ML_ENABLED`` off, the model unavailable or no serving index, the feed uses the
structured score, Elo and the liked-you boost only (sources c to f) and says why in
``FeedResult.fallback`` (``"ml_disabled"``, ``"model_unavailable"`` or ``"index_missing"``).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date

import numpy as np
from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from recommender.feed.scoring import PairSignals, SignalWeights, exploration_slots, pick_feed, score_pairs
from recommender.feed.store import PRIOR_LIKE_RATE, CandidateStore, StoreSnapshot, candidate_store, stores_reset
from recommender.ml.fusion import fuse
from recommender.ml.interaction import interaction_adjustment, taste_vector
from recommender.ml.structured import GENDER_CODE, CandidateBatch, ProfileFeatures, hard_filter_mask, haversine_km
from recommender.models import (
    POSITIVE_ACTIONS,
    EloRating,
    Match,
    Profile,
    ProfileStatus,
    Swipe,
    SwipeAction,
    Tenant,
)
from recommender.services.collaborative import (
    CollaborativeServing,
    collaborative_reset_for_tests,
    serving_collaborative,
)
from recommender.services.embeddings import EmbeddingUnavailable, ml_available, profile_vectors
from recommender.services.events import impressions_record_served
from recommender.services.index import ServingIndex, serving_index, serving_index_version
from recommender.services.ranking import RankerChoice, RankerInputs, ranker_for, ranker_reset_for_tests, ranker_scores
from registry.experiments import experiment_for_impression
from registry.models import ModelType

logger = logging.getLogger(__name__)

FEED_VERSION = "feed-v1"
VARIANTS: tuple[str, ...] = ("reciprocal", "one_way", "popularity", "random")
FALLBACK_REASONS: tuple[str, ...] = ("ml_disabled", "model_unavailable", "index_missing")
MAX_COUNT = 100
ANN_K = 200  # neighbours per ANN query (own vector, taste vector)
HISTORY_PER_ACTION = 100  # newest likes / superlikes / passes feeding taste and interaction
MIN_POOL_PER_ITEM = 3  # below count * this many eligible, the structured pre-filter adds more
PREFILTER_ROWS = 400
LIVE_CHECK_ROUNDS = 3
MODEL_VERSION_MAX = 64  # Impression.model_version


@dataclass
class FeedFilters:
    """Narrow, never widen, the user's own preferences."""

    age_min: int | None = None
    age_max: int | None = None
    max_distance_km: float | None = None
    genders: list[str] | None = None


@dataclass
class FeedItem:
    profile_id: int
    external_id: uuid.UUID
    score: float
    components: dict[str, float | bool | None]


@dataclass
class FeedResult:
    items: list[FeedItem]
    model_version: str
    latency_ms: float
    cache_hit: bool
    fallback: str | None
    stage_ms: dict[str, float] = field(default_factory=dict)
    experiment_arm: str | None = None  # the arm's tag when an experiment chose the index version


class _Stages:
    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.ms[name] = round(self.ms.get(name, 0.0) + (time.perf_counter() - start) * 1000, 3)


# --------------------------------------------------------------------------- reads


@dataclass(frozen=True)
class SwipeHistory:
    swiped: np.ndarray  # (s,) int64 pks of everyone the user swiped
    liked: list[int]  # newest HISTORY_PER_ACTION, oldest first
    superliked: list[int]
    passed: list[int]
    likers: np.ndarray  # (m,) int64 pks of who liked or superliked the user
    passers: np.ndarray  # (p,) int64 pks of who passed on the user


def swipe_history(*, user_id: int) -> SwipeHistory:
    """The user's swipes and the likes they received, in one query (two index scans)."""
    return swipe_histories(user_ids=[user_id])[user_id]


def swipe_histories(*, user_ids: Sequence[int]) -> dict[int, SwipeHistory]:
    """:func:`swipe_history` of each of ``user_ids``, in one query for all (the ML API's batches)."""
    wanted = set(user_ids)
    rows = (
        Swipe.objects.filter(Q(user_id__in=wanted) | Q(candidate_id__in=wanted))
        .order_by("occurred_at", "pk")
        .values_list("user_id", "candidate_id", "action")
    )
    return _histories(rows, wanted)


def _histories(rows: Iterable[tuple[int, int, str]], wanted: set[int]) -> dict[int, SwipeHistory]:
    """SwipeHistory of each of ``wanted`` from time-ordered (swiper, candidate, action) rows
    holding their swipes and the swipes they received."""
    actions = (SwipeAction.LIKE, SwipeAction.SUPERLIKE, SwipeAction.PASS)
    groups: dict[int, dict[str, list[int]]] = {pk: {a: [] for a in actions} for pk in wanted}
    swiped: dict[int, set[int]] = {pk: set() for pk in wanted}
    likers: dict[int, set[int]] = {pk: set() for pk in wanted}
    passers: dict[int, set[int]] = {pk: set() for pk in wanted}
    for swiper_id, candidate_id, action in rows:
        if swiper_id in wanted:
            swiped[swiper_id].add(candidate_id)
            groups[swiper_id][action].append(candidate_id)
        if candidate_id in wanted:
            (likers if action in POSITIVE_ACTIONS else passers)[candidate_id].add(swiper_id)
    return {
        pk: SwipeHistory(
            swiped=np.fromiter(swiped[pk], dtype=np.int64, count=len(swiped[pk])),
            liked=groups[pk][SwipeAction.LIKE][-HISTORY_PER_ACTION:],
            superliked=groups[pk][SwipeAction.SUPERLIKE][-HISTORY_PER_ACTION:],
            passed=groups[pk][SwipeAction.PASS][-HISTORY_PER_ACTION:],
            likers=np.fromiter(likers[pk], dtype=np.int64, count=len(likers[pk])),
            passers=np.fromiter(passers[pk], dtype=np.int64, count=len(passers[pk])),
        )
        for pk in wanted
    }


def excluded_profile_ids(tenant_id: int, user_id: int) -> set[int]:
    """Profiles never to show ``user_id``: the user, everyone they already matched with, and
    everyone they blocked or reported or who blocked them (the safety app).

    The one place for "never show". Swiped profiles are excluded separately, from the swipe
    history the feed reads anyway.
    """
    return feed_reads(tenant_id=tenant_id, user_id=user_id).excluded


@dataclass(frozen=True)
class FeedReads:
    history: SwipeHistory
    excluded: set[int]  # excluded_profile_ids


def feed_reads(*, tenant_id: int, user_id: int) -> FeedReads:
    """:func:`swipe_history` and :func:`excluded_profile_ids` of one user in one round trip.

    The feed's one read of the database before its final live check. Hand-written SQL, a
    UNION ALL of the swipe query and the exclusions, because on two cores building the ORM
    querysets for each feed cost about as much as running them (tests pin that this agrees
    with :func:`swipe_histories` and the safety app's querysets). No tenant condition on
    swipes and matches: a user's rows are all in their tenant, and the planner would rather
    walk the tenant index than use the user indexes.
    """
    from safety.selectors import blocked_or_reported_sql  # the safety app builds on recommender

    params = {"tenant_id": tenant_id, "user_id": user_id}
    with connection.cursor() as cursor:
        cursor.execute(_feed_reads_sql(blocked_or_reported_sql()), params)
        rows = cursor.fetchall()
    excluded = {user_id}
    swipes: list[tuple[int, int, str]] = []
    for swiper_id, profile_id, action, _occurred_at, _id in rows:
        if swiper_id is None:
            excluded.add(profile_id)  # a match, a block either way or a report
        else:
            swipes.append((swiper_id, profile_id, action))
    return FeedReads(history=_histories(swipes, {user_id})[user_id], excluded=excluded)


@functools.cache
def _feed_reads_sql(safety_sql: str) -> str:
    swipe, match = Swipe._meta.db_table, Match._meta.db_table
    # Swipe rows first in time order (the newest HISTORY_PER_ACTION of each action are kept);
    # exclusion rows have a NULL swiper and sort anywhere.
    return (
        f"SELECT user_id, candidate_id, action, occurred_at, id FROM {swipe}"
        " WHERE user_id = %(user_id)s OR candidate_id = %(user_id)s"
        f" UNION ALL SELECT NULL, user_b_id, NULL, NULL, NULL FROM {match} WHERE user_a_id = %(user_id)s"
        f" UNION ALL SELECT NULL, user_a_id, NULL, NULL, NULL FROM {match} WHERE user_b_id = %(user_id)s"
        f" UNION ALL SELECT NULL, x.profile_id, NULL, NULL, NULL FROM ({safety_sql}) x"
        " ORDER BY 4, 5"
    )


def excluded_profile_ids_by_user(tenant_id: int, user_ids: Sequence[int]) -> dict[int, set[int]]:
    """:func:`excluded_profile_ids` of each of ``user_ids``, in three queries for all (the ML
    API's batches; a feed reads its one user's exclusions in a single round trip instead)."""
    from safety.selectors import blocked_or_reported_by_user  # the safety app builds on recommender

    wanted = set(user_ids)
    out = {pk: {pk} for pk in wanted}
    matched = Match.objects.filter(Q(user_a_id__in=wanted) | Q(user_b_id__in=wanted))
    for a, b in matched.values_list("user_a_id", "user_b_id"):
        for pk in (a, b):
            if pk in wanted:
                out[pk] |= {a, b}
    for pk, others in blocked_or_reported_by_user(tenant_id=tenant_id, user_ids=wanted).items():
        out[pk] |= others
    return out


def profile_features(profile: Profile) -> ProfileFeatures:
    return ProfileFeatures(
        age=profile.age,
        gender=profile.gender,
        seeking=tuple(profile.seeking),
        age_min=profile.age_min,
        age_max=profile.age_max,
        max_distance_km=profile.max_distance_km,
        lat=profile.lat,
        lon=profile.lon,
        interests=frozenset(profile.interests or ()),
        attributes=profile.attributes(),
    )


@dataclass(frozen=True)
class _MlState:
    index: ServingIndex | None
    fallback: str | None
    arm: str | None = None  # experiment arm tag, set only when ``index`` is that arm's version


def _ml_state(tenant: Tenant, user: Profile) -> _MlState:
    if not settings.ML_ENABLED:
        return _MlState(None, "ml_disabled")
    try:
        if not ml_available():
            return _MlState(None, "model_unavailable")
    except EmbeddingUnavailable:
        return _MlState(None, "model_unavailable")
    arm = _experiment_index(tenant, user)
    if arm is not None:
        return _MlState(arm[0], None, arm[1])
    index = serving_index(tenant.pk)
    if index is None:
        return _MlState(None, "index_missing")
    return _MlState(index, None)


def _experiment_index(tenant: Tenant, user: Profile) -> tuple[ServingIndex, str] | None:
    """(the arm's index, the arm's tag) when an index experiment runs and the arm's version is
    available; None otherwise (the active index serves, untagged)."""
    assigned = experiment_for_impression(tenant, ModelType.INDEX, user)
    if assigned is None:
        return None
    tag, label = assigned
    index = serving_index_version(tenant.pk, label)
    if index is None:
        logger.warning("experiment arm %s: index %s is unavailable; serving the active index untagged", tag, label)
        return None
    return index, tag


# --------------------------------------------------------------------------- filters


def _narrowed(user: ProfileFeatures, filters: FeedFilters | None) -> ProfileFeatures:
    """The user's preferences intersected with the request's filters (for the pre-filter scan)."""
    if filters is None:
        return user
    seeking = tuple(g for g in user.seeking if filters.genders is None or g in filters.genders)
    return ProfileFeatures(
        age=user.age,
        gender=user.gender,
        seeking=seeking,
        age_min=max(user.age_min, filters.age_min or user.age_min),
        age_max=min(user.age_max, filters.age_max or user.age_max),
        max_distance_km=min(user.max_distance_km, filters.max_distance_km or user.max_distance_km),
        lat=user.lat,
        lon=user.lon,
    )


def _filters_mask(user: ProfileFeatures, cands: CandidateBatch, filters: FeedFilters | None) -> np.ndarray:
    """(n,) bool: the request's filters, applied on top of (never instead of) the hard filters."""
    mask = np.ones(len(cands), dtype=bool)
    if filters is None:
        return mask
    if filters.age_min is not None:
        mask &= cands.age >= filters.age_min
    if filters.age_max is not None:
        mask &= cands.age <= filters.age_max
    if filters.max_distance_km is not None:
        mask &= haversine_km(user.lat, user.lon, cands.lat, cands.lon) <= filters.max_distance_km
    if filters.genders is not None:
        mask &= np.isin(cands.gender, [GENDER_CODE[g] for g in filters.genders if g in GENDER_CODE])
    return mask


def _eligible(
    snap: StoreSnapshot, rows: np.ndarray, user: ProfileFeatures, filters: FeedFilters | None, excluded: np.ndarray
) -> np.ndarray:
    """(m,) the unique rows among ``rows`` that pass every filter, both ways."""
    rows = np.unique(rows)
    rows = rows[snap.active[rows]]
    rows = rows[~np.isin(snap.batch.ids[rows], excluded)]
    cands = snap.batch.take(rows)
    return rows[hard_filter_mask(user, cands) & _filters_mask(user, cands, filters)]


# --------------------------------------------------------------------------- ML inputs


@dataclass
class _UserVectors:
    own: np.ndarray | None  # (d,)
    taste: np.ndarray | None  # (d,)
    liked: np.ndarray | None  # (l, d), oldest first
    superliked: np.ndarray | None
    passed: np.ndarray | None
    from_cache: bool = True  # no database read was needed for these vectors

    @property
    def has_history(self) -> bool:
        return any(v is not None for v in (self.liked, self.superliked, self.passed))


def stack_vectors(vectors: dict[int, np.ndarray], pks: Sequence[int]) -> np.ndarray | None:
    """(m, d) float32 of the ``pks`` that have a vector, in order; None when none has."""
    rows = [vectors[pk] for pk in pks if pk in vectors]
    return np.stack(rows).astype(np.float32) if rows else None


def _user_vectors(index: ServingIndex, tenant_id: int, user_id: int, history: SwipeHistory) -> _UserVectors:
    # Indexed vectors come from the serving index's memory; only the rest (the user's own when
    # not indexed: a hidden user still browses) go through the cache and the database.
    vectors = index.vectors([user_id, *history.liked, *history.superliked, *history.passed])
    from_cache = True
    if user_id not in vectors:
        lookup = profile_vectors(tenant_id=tenant_id, profile_ids=[user_id])
        vectors.update(lookup.vectors)
        from_cache = lookup.misses == 0
    liked, superliked, passed = (stack_vectors(vectors, g) for g in (history.liked, history.superliked, history.passed))
    own = vectors.get(user_id)
    return _UserVectors(
        own=None if own is None else np.asarray(own, dtype=np.float32),
        taste=taste_vector(liked, superliked, passed),
        liked=liked,
        superliked=superliked,
        passed=passed,
        from_cache=from_cache,
    )


def _ann_rows(
    index: ServingIndex, snap: StoreSnapshot, uv: _UserVectors, swiped: np.ndarray, excluded: np.ndarray
) -> np.ndarray:
    queries = [v for v in (uv.own, uv.taste) if v is not None]
    if not queries:
        return np.empty(0, dtype=np.int64)
    # Passing who to skip makes the index over-fetch by that many; past a few hundred the
    # over-fetch costs more than it gains, and the filter stage drops them anyway.
    skip = np.concatenate([swiped, excluded])
    exclude = set(skip.tolist()) if len(skip) <= 500 else None
    try:
        ids, _ = index.query(np.stack(queries), ANN_K, exclude=exclude)  # (q, k') Profile pks
    except RuntimeError as exc:
        # hnswlib gives up when it cannot find k live neighbours (tiny or degenerate graphs, e.g.
        # many identical bios); the other sources still fill the feed.
        logger.warning("ANN query failed for tenant %s: %s", index.tenant_id, exc)
        return np.empty(0, dtype=np.int64)
    return snap.rows_for(np.asarray(ids, dtype=np.int64).ravel())


@dataclass(frozen=True)
class _CandidateVectors:
    matrix: np.ndarray  # (n, d) float32, zero rows where missing
    present: np.ndarray  # (n,) bool
    cache_hit: bool


def _candidate_vectors(index: ServingIndex, tenant_id: int, pks: np.ndarray) -> _CandidateVectors:
    # Only indexed profiles have a current embedding, and the index holds their vectors in
    # memory (kept fresh by its deltas): no cache or database round trip per candidate.
    matrix, present = index.vector_matrix(pks)  # (n, d), (n,)
    return _CandidateVectors(matrix=matrix, present=present, cache_hit=True)


def _ml_signals(uv: _UserVectors, cv: _CandidateVectors | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(similarity, interaction), each (n,) with NaN where unavailable."""
    similarity = np.full(n, np.nan)
    interaction = np.full(n, np.nan)
    if cv is None or not cv.present.any():
        return similarity, interaction
    have = cv.present
    dim = cv.matrix.shape[1]
    # vectors of another dimension (a model change half rolled out) cannot be compared
    if uv.own is not None and len(uv.own) == dim:
        similarity[have] = cv.matrix[have] @ uv.own
    if uv.has_history and all(g is None or g.shape[1] == dim for g in (uv.liked, uv.superliked, uv.passed)):
        interaction[have] = interaction_adjustment(cv.matrix[have], uv.liked, uv.superliked, uv.passed)
    return similarity, interaction


# --------------------------------------------------------------------------- pipeline


def _seed(tenant_id: int, user_id: int, day: date, variant: str) -> int:
    digest = hashlib.blake2b(f"{tenant_id}:{user_id}:{day.isoformat()}:{variant}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _user_elo(snap: StoreSnapshot, user: Profile) -> float:
    row = snap.row_of_pk(user.pk)
    if row >= 0:
        return float(snap.elo[row])
    rating = EloRating.objects.filter(profile_id=user.pk).values_list("rating", flat=True).first()
    return 1500.0 if rating is None else float(rating)


def feed_signal_weights() -> SignalWeights:
    """The hand-set signal weights the feed pools with (the cold-start prior)."""
    return SignalWeights(
        similarity=settings.ML_SIMILARITY_WEIGHT,
        structured=settings.ML_STRUCTURED_WEIGHT,
        elo=settings.ML_ELO_WEIGHT,
        interaction=settings.ML_INTERACTION_WEIGHT,
        selectivity=settings.ML_SELECTIVITY_WEIGHT,
        collaborative=settings.ML_COLLABORATIVE_WEIGHT,
    )


def _user_like_rate(snap: StoreSnapshot, user: Profile) -> float:
    """The user's smoothed like rate as the store knows it (the prior rate before any swipe)."""
    row = snap.row_of_pk(user.pk)
    return float(snap.like_rate[row]) if row >= 0 else PRIOR_LIKE_RATE


def _model_version(
    variant: str,
    index: ServingIndex | None,
    fallback: str | None,
    cf: CollaborativeServing | None = None,
    ranker: RankerChoice | None = None,
) -> str:
    name = FEED_VERSION if variant == "reciprocal" else f"{FEED_VERSION}-{variant}"
    if fallback is not None:
        name += "-fallback"
    elif index is not None:
        name += f"+index:{index.version}"
    if cf is not None:
        name += f"+cf:{cf.version}"
    if ranker is not None:
        name += f"+ranker:{ranker.label}"
    return name[:MODEL_VERSION_MAX]


def collab_logits(
    cf: CollaborativeServing | None, user_pk: int, pks: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(model log-odds u likes v, v likes u), each (n,), or (None, None) without a model."""
    if cf is None or not len(pks):
        return None, None
    user_row = cf.rows(np.asarray([user_pk], dtype=np.int64))
    rows = cf.rows(pks)  # (n,)
    user_rows = np.repeat(user_row, len(pks))
    return cf.pair_logits(user_rows, rows), cf.pair_logits(rows, user_rows)


def _ranking(variant: str, scored_components: dict[str, np.ndarray], rng: np.random.Generator, n: int) -> np.ndarray:
    if variant == "reciprocal":
        return scored_components["reciprocal"]
    if variant == "one_way":
        return scored_components["p_user_likes"]
    if variant == "popularity":
        return scored_components["elo"]
    return rng.random(n)


def items_components(
    components: dict[str, np.ndarray], positions: Sequence[int]
) -> list[dict[str, float | bool | None]]:
    """The components of the candidates at ``positions`` as the API answers them: bools as
    bools, NaN as null, floats at full precision (rounding made ties of different scores). One
    conversion to Python numbers per component, not one numpy scalar per value (a feed answers
    ~300 values)."""
    out: list[dict[str, float | bool | None]] = [{} for _ in positions]
    for name, values in components.items():
        picked = values[list(positions)].tolist()
        is_bool = values.dtype == bool
        for row, value in zip(out, picked, strict=True):
            row[name] = None if not is_bool and value != value else value  # NaN (NaN != NaN): null
    return out


def _live_profiles(tenant_id: int, pks: list[int]) -> dict[int, uuid.UUID]:
    """pk -> external id of the ``pks`` that are active in the tenant right now.

    Filtered by primary key alone, tenant and status checked here: with a tenant or status
    condition the planner may walk the (tenant, status) index over the whole tenant instead.
    Hand-written SQL for the reason :func:`feed_reads` gives.
    """
    if not pks:
        return {}
    placeholders = ", ".join(["%s"] * len(pks))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, tenant_id, status, external_id FROM {Profile._meta.db_table} WHERE id IN ({placeholders})",
            pks,
        )
        rows = cursor.fetchall()
    to_uuid = _EXTERNAL_ID.to_python  # PostgreSQL answers a UUID, SQLite its hex string
    return {pk: to_uuid(ext) for pk, tid, status, ext in rows if tid == tenant_id and status == ProfileStatus.ACTIVE}


_EXTERNAL_ID = Profile._meta.get_field("external_id")


def feed_for(
    *,
    tenant: Tenant,
    user: Profile,
    count: int = 20,
    filters: FeedFilters | None = None,
    log_impressions: bool = True,
    variant: str = "reciprocal",
    use_collaborative: bool = True,
    use_ranker: bool = True,
) -> FeedResult:
    """The user's feed (the module docs describe the stages). ``use_collaborative=False`` and
    ``use_ranker=False`` leave the active collaborative model or ranker out (benchmarks compare
    the feed with and without them)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown feed variant {variant!r}; expected one of {VARIANTS}")
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"count must be in 1..{MAX_COUNT}, got {count}")
    started = time.perf_counter()
    stage = _Stages()
    with stage("store"):
        store = candidate_store(tenant.pk)
        snap = store.snapshot()
    with stage("history"):
        reads = feed_reads(tenant_id=tenant.pk, user_id=user.pk)
        history = reads.history
        excluded = np.fromiter(reads.excluded, dtype=np.int64, count=len(reads.excluded))
        skip = np.concatenate([history.swiped, excluded])
        likers = history.likers[~np.isin(history.likers, skip)]
    user_f = profile_features(user)
    ml = _ml_state(tenant, user)
    index, fallback = ml.index, ml.fallback
    uv: _UserVectors | None = None
    if index is not None:
        try:
            with stage("vectors_user"):
                uv = _user_vectors(index, tenant.pk, user.pk, history)
        except EmbeddingUnavailable:
            index, fallback = None, "model_unavailable"
    # The random baseline draws from the pre-filter scan below only: none of the informed sources.
    informed = variant != "random"
    cf = serving_collaborative(tenant.pk) if informed and use_collaborative and settings.ML_ENABLED else None
    with stage("candidates"):
        sources = [np.empty(0, dtype=np.int64)]
        if informed:
            popular, fresh = store.pools()
            sources += [snap.rows_for(likers), popular, fresh]
        if informed and index is not None and uv is not None:
            sources.append(_ann_rows(index, snap, uv, history.swiped, excluded))
        if cf is not None and settings.ML_COLLABORATIVE_CANDIDATES > 0:
            k = settings.ML_COLLABORATIVE_CANDIDATES
            # scored only where the pre-filter passes: cheaper, and all k are plausible
            narrowed = _narrowed(user_f, filters)
            proposed = cf.reciprocal_candidates(
                user.pk, k, settings.ML_FUSION_METHOD, eligible=lambda pks: snap.prefilter_pks(narrowed, pks)
            )
            sources.append(snap.rows_for(proposed))
        pool = np.concatenate(sources)
    with stage("filter"):
        rows = _eligible(snap, pool, user_f, filters, skip)
    if index is None or len(rows) < count * MIN_POOL_PER_ITEM:
        with stage("candidates"):
            start = _seed(tenant.pk, user.pk, timezone.now().date(), "scan") % max(len(snap), 1)
            extra = snap.prefilter_rows(_narrowed(user_f, filters), PREFILTER_ROWS, start=start)
        with stage("filter"):
            rows = _eligible(snap, np.concatenate([rows, extra]), user_f, filters, skip)
    pks = snap.batch.ids[rows]  # (n,)
    cv: _CandidateVectors | None = None
    # the popularity and random variants rank without vectors: they are not fetched for them
    if index is not None and uv is not None and len(rows) and variant in ("reciprocal", "one_way"):
        try:
            with stage("vectors"):
                cv = _candidate_vectors(index, tenant.pk, pks)
        except EmbeddingUnavailable:
            index, fallback, uv = None, "model_unavailable", None
    with stage("collaborative"):
        collab_uv, collab_vu = collab_logits(cf, user.pk, pks)
    with stage("score"):
        cands = snap.batch.take(rows)
        similarity, interaction = (
            _ml_signals(uv, cv, len(rows)) if uv is not None else (np.full(len(rows), np.nan),) * 2
        )
        signals = PairSignals(
            similarity=similarity,
            interaction=interaction,
            elo_candidate=snap.elo[rows],
            elo_user=_user_elo(snap, user),
            liked_user=np.isin(pks, likers),
            passed_user=np.isin(pks, history.passers),
            # relative to the tenant's typical like rate, so the scale of P(v likes u) is kept
            selectivity=snap.like_rate[rows] / store.median_like_rate(),
            collab_uv=collab_uv,
            collab_vu=collab_vu,
            like_rate_user=_user_like_rate(snap, user),
            like_rate_candidate=snap.like_rate[rows],
        )
        weights = feed_signal_weights()
        learned = cf.fusion if cf is not None else None
        scored = score_pairs(user_f, cands, signals, weights, settings.ML_FUSION_METHOD, learned)
        seed = _seed(tenant.pk, user.pk, timezone.now().date(), variant)
        ranking = _ranking(variant, scored.components, np.random.default_rng(seed), len(rows))
    ranker = None
    if variant == "reciprocal" and use_ranker and settings.ML_ENABLED and len(rows):
        with stage("ranker"):
            ranker, ranked, calibrated = _ranker_ranking(tenant, user, user_f, snap, rows, cands, signals, cf)
        if ranked is not None:
            scored.components["ranker"] = ranked
            # the ranker's P(user likes v) takes the user's side of the reciprocal fusion
            ranking = fuse(ranked, scored.score_vu, settings.ML_FUSION_METHOD) if calibrated else ranked
    chosen, explored, alive = _select_live(stage, store, tenant.pk, pks, ranking, count, variant, seed)
    items = _items(chosen, explored, pks, ranking, scored.components, alive)
    model_version = _model_version(variant, index, fallback, cf, ranker)
    # the arm's version served this feed only if the index survived every stage
    arm = ml.arm if index is not None else None
    if ranker is not None and ranker.arm is not None:
        arm = ranker.arm
    if log_impressions and items:
        with stage("log"):
            _log_impressions(tenant, user, items, model_version, variant, arm or variant)
    return FeedResult(
        items=items,
        model_version=model_version,
        latency_ms=round((time.perf_counter() - started) * 1000, 3),
        # every vector came from memory (the serving index) or Redis, with no database read
        cache_hit=bool(cv is not None and cv.cache_hit and uv is not None and uv.from_cache),
        fallback=fallback,
        stage_ms=stage.ms,
        experiment_arm=arm,
    )


def _ranker_ranking(
    tenant: Tenant,
    user: Profile,
    user_f: ProfileFeatures,
    snap: StoreSnapshot,
    rows: np.ndarray,
    cands: CandidateBatch,
    signals: PairSignals,
    cf: CollaborativeServing | None,
) -> tuple[RankerChoice | None, np.ndarray | None, bool]:
    """(the ranker that scored, its (n,) scores, whether they are calibrated probabilities), or
    (None, None, False) when no ranker serves."""
    choice = ranker_for(tenant, user)
    if choice is None:
        return None, None, False
    user_row = snap.row_of_pk(user.pk)
    inputs = RankerInputs(
        user=user_f,
        cands=cands,
        similarity=signals.similarity,
        collab_model=cf.model_name if cf is not None else None,
        collab_uv=signals.collab_uv,
        collab_vu=signals.collab_vu,
        elo_user=signals.elo_user,
        elo_candidate=signals.elo_candidate,
        user_swipes=float(snap.swipes_given[user_row]) if user_row >= 0 else 0.0,
        user_likes=float(snap.likes_given[user_row]) if user_row >= 0 else 0.0,
        cand_swipes=snap.swipes_given[rows],
        cand_likes=snap.likes_given[rows],
        liked_you=signals.liked_user,
    )
    try:
        return choice, *ranker_scores(choice.ranker, inputs)
    except Exception:  # a ranker that cannot score (e.g. a corrupt file) must not fail the feed
        logger.exception("ranker %s failed; the fusion ranks this feed", choice.label)
        return None, None, False


def _select_live(
    stage: _Stages,
    store: CandidateStore,
    tenant_id: int,
    pks: np.ndarray,
    ranking: np.ndarray,
    count: int,
    variant: str,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, dict[int, uuid.UUID]]:
    """(top positions, explored positions, live pk -> external id): the feed's picks, with any
    profile no longer active in the database replaced by the next one."""
    order = np.lexsort((pks, -ranking))  # best first; ties by pk, so the order is stable
    n_explore = 0 if variant == "random" else exploration_slots(count, settings.ML_EXPLORATION_SHARE)
    dead = np.empty(0, dtype=np.int64)
    top = explored = np.empty(0, dtype=np.int64)
    alive: dict[int, uuid.UUID] = {}
    for _ in range(LIVE_CHECK_ROUNDS):
        with stage("select"):
            live_order = order[~np.isin(pks[order], dead)]
            top, explored = pick_feed(live_order, count, n_explore, np.random.default_rng(seed), pks)
            chosen = np.concatenate([top, explored])
        with stage("live_check"):
            alive = _live_profiles(tenant_id, pks[chosen].tolist())
            gone = [pk for pk in pks[chosen].tolist() if pk not in alive]
            if not gone:
                break
            store.mark_inactive(gone)
            dead = np.concatenate([dead, np.asarray(gone, dtype=np.int64)])
    keep = np.isin(pks[top], list(alive)), np.isin(pks[explored], list(alive))
    return top[keep[0]], explored[keep[1]], alive


def _items(
    top: np.ndarray,
    explored: np.ndarray,
    pks: np.ndarray,
    ranking: np.ndarray,
    components: dict[str, np.ndarray],
    alive: dict[int, uuid.UUID],
) -> list[FeedItem]:
    flagged = [(int(i), False) for i in top] + [(int(i), True) for i in explored]
    flagged.sort(key=lambda item: (-float(ranking[item[0]]), int(pks[item[0]])))
    answered = items_components(components, [i for i, _ in flagged])
    return [
        FeedItem(
            profile_id=int(pks[i]),
            external_id=alive[int(pks[i])],
            score=float(ranking[i]),
            components={**values, "explore": explore},
        )
        for (i, explore), values in zip(flagged, answered, strict=True)
    ]


def _log_impressions(
    tenant: Tenant, user: Profile, items: list[FeedItem], model_version: str, variant: str, experiment_arm: str
) -> None:
    impressions_record_served(
        tenant=tenant,
        user=user,
        candidate_ids=[item.profile_id for item in items],
        model_version=model_version,
        experiment_arm=experiment_arm,
        context_hash=f"feed:{variant}",
        timestamp=timezone.now(),
    )


def feed_reset_for_tests() -> None:
    """Drop every tenant's candidate store and collaborative model (tests roll the database back
    between cases)."""
    stores_reset()
    collaborative_reset_for_tests()
    ranker_reset_for_tests()
