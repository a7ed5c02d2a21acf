"""The reciprocal feed: candidates the user is likely to like AND who are likely to like them back.

:func:`feed_for` runs these stages in order, each a function of its own, each timed (ms) in
``FeedResult.stage_ms`` under its name:

``store`` (``_open``)
    The tenant's in-process candidate store (``recommender.feed.store``): every active
    profile's features, Elo and a ``pk -> row`` map, refreshed by deltas at most every 2 s.
``history`` (``_history``)
    One query (``reads.feed_reads``): the user's swipes (who they swiped, and their newest
    likes, superlikes and passes) with the likes they received, and who they must never see.
(untimed: ``plan.feed_plan``)
    The index (or an index experiment arm's) and the collaborative model the feed uses, or why
    it falls back (``ml_disabled`` or ``model_unavailable`` from ``serving.health.ml_fallback``, or
    ``index_missing``).
``vectors_user`` (``_vectors_user``)
    The user's own vector and their history's, giving the taste vector. Skipped in fallback.
``candidates`` and ``filter`` (``_candidates``)
    A union of store rows: (a) ANN neighbours of the user's own vector, (b) of the taste vector,
    (c) "liked you" (liked or superliked the user, not swiped by them), (d) Elo-popular and
    (e) newest profiles (pools cached per tenant for a few seconds), (g) the collaborative
    model's top ``ML_COLLABORATIVE_CANDIDATES`` by its reciprocal score among the profiles that
    pass the pre-filter. Then the hard filters both ways (``hard_filter_mask``: genders sought,
    age ranges, distance within both maxima), the request's narrowing filters, active status,
    and not the user, swiped or excluded. When the index is missing or fewer than
    ``MIN_POOL_PER_ITEM`` eligible per slot remain, (f) a structured pre-filter scan of the
    store adds rows and both stages run again, so a cold-start or fallback feed is still full.
    The ``random`` variant uses (f) only: a uniform draw of eligible profiles.
``vectors`` (``_vectors``)
    The eligible candidates' vectors (``reciprocal`` and ``one_way`` only).
``collaborative`` and ``score`` (``_score``)
    The collaborative model's log-odds of both directions of each pair; then
    ``recommender.feed.scoring``: P(u likes v) and P(v likes u) from bio similarity, the
    structured score, Elo, u's interaction adjustment and the liked-you boost (``ML_*_WEIGHT``,
    renormalised over the signals available), pooled in log-odds with the model's
    (``ML_COLLABORATIVE_WEIGHT``), fused with ``ML_FUSION_METHOD``. The variant picks the
    ranking value: ``reciprocal`` (fused), ``one_way`` (P(u likes v)), ``popularity`` (Elo),
    ``random`` (a seeded draw).
``ranker`` (``_rerank``)
    With an active ranker (or a ranker experiment's arm) and the ``reciprocal`` variant, the
    LightGBM ranker's calibrated P(u likes v), answered as the ``ranker`` component, replaces
    ``p_user_likes`` in the reciprocal fusion.
``select`` and ``live_check`` (``_select``)
    The top ``count - e`` plus ``e = floor(count * ML_EXPLORATION_SHARE)`` drawn from the other
    eligible ones (seeded by tenant, user, day and variant, so a feed is reproducible within a
    day; ``"explore": true``; none for ``random``), returned by descending score. One query
    re-reads the chosen profiles' status: one banned, hidden or erased since the store or index
    last saw it is replaced, never served.
``log`` (``_log``)
    With ``log_impressions``, the served batch is recorded as impressions, with the
    ``model_version`` (``plan.feed_model_version``) and ``experiment_arm``: the arm's tag when
    an experiment's version served (``recommender.feed.plan``), else the variant.

Fallback: with ``ML_ENABLED`` off, the model unavailable or no serving index, the feed uses the
structured score, Elo and the liked-you boost only (sources c to f) and says why in
``FeedResult.fallback``.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date

import numpy as np
from django.conf import settings
from django.utils import timezone

from accounts.models import Tenant
from core.metrics import observe_feed
from recommender.feed.features import profile_features, stack_vectors
from recommender.feed.plan import FeedPlan, feed_model_version, feed_plan
from recommender.feed.reads import SwipeHistory, feed_reads, live_profiles
from recommender.feed.scoring import PairSignals, Scored, exploration_slots, pick_feed, score_pairs
from recommender.feed.store import PRIOR_LIKE_RATE, CandidateStore, StoreSnapshot, candidate_store, stores_reset
from recommender.ml.fusion import fuse
from recommender.ml.interaction import interaction_adjustment, taste_vector
from recommender.ml.structured import GENDER_CODE, CandidateBatch, ProfileFeatures, hard_filter_mask, haversine_km
from recommender.models import EloRating, Profile
from recommender.services.embeddings import profile_vectors
from recommender.services.events import impressions_record_served
from recommender.serving.collaborative import CollaborativeServing, collaborative_reset_for_tests
from recommender.serving.encoder import EmbeddingUnavailable
from recommender.serving.index import ServingIndex
from recommender.serving.ranker import RankerChoice, RankerInputs, ranker_for, ranker_reset_for_tests, ranker_scores

logger = logging.getLogger(__name__)

VARIANTS: tuple[str, ...] = ("reciprocal", "one_way", "popularity", "random")
MAX_COUNT = 100
ANN_K = 200  # neighbours per ANN query (own vector, taste vector)
MIN_POOL_PER_ITEM = 3  # below count * this many eligible, the structured pre-filter adds more
PREFILTER_ROWS = 400
LIVE_CHECK_ROUNDS = 3


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


@dataclass(frozen=True)
class _Feed:
    """One feed request and the store snapshot every stage reads."""

    tenant: Tenant
    user: Profile
    user_f: ProfileFeatures
    count: int
    filters: FeedFilters | None
    variant: str
    stage: _Stages
    store: CandidateStore
    snap: StoreSnapshot


@dataclass(frozen=True)
class _Seen:
    """What the user's history rules out, and who liked them."""

    history: SwipeHistory
    excluded: np.ndarray  # (x,) int64 pks never to show (reads.excluded_profile_ids)
    skip: np.ndarray  # swiped and excluded pks
    likers: np.ndarray  # who liked or superliked the user, neither swiped nor excluded


@dataclass
class _Scores:
    cands: CandidateBatch  # (n,) the eligible candidates' features
    signals: PairSignals
    scored: Scored
    ranking: np.ndarray  # (n,) the value the feed ranks by
    seed: int  # the day's draws (random variant, exploration)


# --------------------------------------------------------------------------- pipeline


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
    """The user's feed, stage by stage (module docs). ``use_collaborative=False`` / ``use_ranker=False``
    leave the active collaborative model / ranker out (benchmarks compare with and without)."""
    _check_request(variant, count)
    started = time.perf_counter()
    feed = _open(tenant, user, count, filters, variant)
    seen = _history(feed)
    plan = feed_plan(tenant, user, variant=variant, use_collaborative=use_collaborative)
    plan, uv = _vectors_user(feed, plan, seen.history)
    rows = _candidates(feed, plan, uv, seen)
    pks = feed.snap.batch.ids[rows]  # (n,)
    plan, uv, cv = _vectors(feed, plan, uv, pks)
    scores = _score(feed, plan, uv, cv, rows, seen)
    ranker = _rerank(feed, plan, rows, scores, enabled=use_ranker)
    items = _select(feed, pks, scores)
    model_version = feed_model_version(variant, plan.index, plan.fallback, plan.cf, ranker)
    arm = plan.served_arm(ranker)
    if log_impressions and items:
        _log(feed, items, model_version, arm or variant)
    cache_hit = _all_vectors_cached(uv, cv)
    return _result(feed, items, model_version, plan.fallback, arm, cache_hit, started)


def _all_vectors_cached(uv: _UserVectors | None, cv: _CandidateVectors | None) -> bool:
    """Every vector came from memory (the serving index) or Redis, with no database read."""
    return bool(cv is not None and cv.cache_hit and uv is not None and uv.from_cache)


def _result(
    feed: _Feed,
    items: list[FeedItem],
    model_version: str,
    fallback: str | None,
    arm: str | None,
    cache_hit: bool,
    started: float,
) -> FeedResult:
    result = FeedResult(
        items=items,
        model_version=model_version,
        latency_ms=round((time.perf_counter() - started) * 1000, 3),
        cache_hit=cache_hit,
        fallback=fallback,
        stage_ms=feed.stage.ms,
        experiment_arm=arm,
    )
    observe_feed(result.stage_ms, result.fallback, result.cache_hit)  # Prometheus: a few microseconds
    return result


def _check_request(variant: str, count: int) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown feed variant {variant!r}; expected one of {VARIANTS}")
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"count must be in 1..{MAX_COUNT}, got {count}")


def _open(tenant: Tenant, user: Profile, count: int, filters: FeedFilters | None, variant: str) -> _Feed:
    """The ``store`` stage: a snapshot of the tenant's candidate store."""
    stage = _Stages()
    with stage("store"):
        store = candidate_store(tenant.pk)
        snap = store.snapshot()
    return _Feed(tenant, user, profile_features(user), count, filters, variant, stage, store, snap)


def _history(feed: _Feed) -> _Seen:
    """The ``history`` stage: the feed's one read before its live check."""
    with feed.stage("history"):
        reads = feed_reads(tenant_id=feed.tenant.pk, user_id=feed.user.pk)
        history = reads.history
        excluded = np.fromiter(reads.excluded, dtype=np.int64, count=len(reads.excluded))
        skip = np.concatenate([history.swiped, excluded])
        likers = history.likers[~np.isin(history.likers, skip)]
    return _Seen(history=history, excluded=excluded, skip=skip, likers=likers)


def _vectors_user(feed: _Feed, plan: FeedPlan, history: SwipeHistory) -> tuple[FeedPlan, _UserVectors | None]:
    """The ``vectors_user`` stage (none without an index; the fallback when embeddings fail)."""
    if plan.index is None:
        return plan, None
    try:
        with feed.stage("vectors_user"):
            return plan, _user_vectors(plan.index, feed.tenant.pk, feed.user.pk, history)
    except EmbeddingUnavailable:
        return plan.without_vectors(), None


def _candidates(feed: _Feed, plan: FeedPlan, uv: _UserVectors | None, seen: _Seen) -> np.ndarray:
    """The ``candidates`` and ``filter`` stages: (n,) the eligible store rows."""
    with feed.stage("candidates"):
        pool = _sources(feed, plan, uv, seen)
    with feed.stage("filter"):
        rows = _eligible(feed.snap, pool, feed.user_f, feed.filters, seen.skip)
    if plan.index is None or len(rows) < feed.count * MIN_POOL_PER_ITEM:
        with feed.stage("candidates"):
            start = _seed(feed.tenant.pk, feed.user.pk, timezone.now().date(), "scan") % max(len(feed.snap), 1)
            extra = feed.snap.prefilter_rows(_narrowed(feed.user_f, feed.filters), PREFILTER_ROWS, start=start)
        with feed.stage("filter"):
            rows = _eligible(feed.snap, np.concatenate([rows, extra]), feed.user_f, feed.filters, seen.skip)
    return rows


def _sources(feed: _Feed, plan: FeedPlan, uv: _UserVectors | None, seen: _Seen) -> np.ndarray:
    """Store rows proposed by sources (a) to (e) and (g) (module docs), with repeats."""
    snap, cf = feed.snap, plan.cf
    # The random baseline draws from the pre-filter scan only: none of the informed sources.
    informed = feed.variant != "random"
    sources = [np.empty(0, dtype=np.int64)]
    if informed:
        popular, fresh = feed.store.pools()
        sources += [snap.rows_for(seen.likers), popular, fresh]
    if informed and plan.index is not None and uv is not None:
        sources.append(_ann_rows(plan.index, snap, uv, seen.history.swiped, seen.excluded))
    if cf is not None and settings.ML_COLLABORATIVE_CANDIDATES > 0:
        k = settings.ML_COLLABORATIVE_CANDIDATES
        # scored only where the pre-filter passes: cheaper, and all k are plausible
        narrowed = _narrowed(feed.user_f, feed.filters)
        proposed = cf.reciprocal_candidates(
            feed.user.pk, k, settings.ML_FUSION_METHOD, eligible=lambda pks: snap.prefilter_pks(narrowed, pks)
        )
        sources.append(snap.rows_for(proposed))
    return np.concatenate(sources)


def _vectors(
    feed: _Feed, plan: FeedPlan, uv: _UserVectors | None, pks: np.ndarray
) -> tuple[FeedPlan, _UserVectors | None, _CandidateVectors | None]:
    """The ``vectors`` stage: the eligible candidates' vectors (the fallback when they fail)."""
    # the popularity and random variants rank without vectors: they are not fetched for them
    if plan.index is None or uv is None or not len(pks) or feed.variant not in ("reciprocal", "one_way"):
        return plan, uv, None
    try:
        with feed.stage("vectors"):
            return plan, uv, _candidate_vectors(plan.index, feed.tenant.pk, pks)
    except EmbeddingUnavailable:
        return plan.without_vectors(), None, None


def _score(
    feed: _Feed, plan: FeedPlan, uv: _UserVectors | None, cv: _CandidateVectors | None, rows: np.ndarray, seen: _Seen
) -> _Scores:
    """The ``collaborative`` and ``score`` stages: every signal of each pair, pooled and fused."""
    snap, user, n = feed.snap, feed.user, len(rows)
    pks = snap.batch.ids[rows]
    with feed.stage("collaborative"):
        collab_uv, collab_vu = collab_logits(plan.cf, user.pk, pks)
    with feed.stage("score"):
        cands = snap.batch.take(rows)
        similarity, interaction = _ml_signals(uv, cv, n) if uv is not None else (np.full(n, np.nan),) * 2
        signals = PairSignals(
            similarity=similarity,
            interaction=interaction,
            elo_candidate=snap.elo[rows],
            elo_user=_user_elo(snap, user),
            liked_user=np.isin(pks, seen.likers),
            passed_user=np.isin(pks, seen.history.passers),
            # relative to the tenant's typical like rate, so the scale of P(v likes u) is kept
            selectivity=snap.like_rate[rows] / feed.store.median_like_rate(),
            collab_uv=collab_uv,
            collab_vu=collab_vu,
            like_rate_user=_user_like_rate(snap, user),
            like_rate_candidate=snap.like_rate[rows],
        )
        learned = plan.cf.fusion if plan.cf is not None else None
        scored = score_pairs(feed.user_f, cands, signals, plan.weights, settings.ML_FUSION_METHOD, learned)
        seed = _seed(feed.tenant.pk, user.pk, timezone.now().date(), feed.variant)
        ranking = _ranking(feed.variant, scored.components, np.random.default_rng(seed), n)
    return _Scores(cands=cands, signals=signals, scored=scored, ranking=ranking, seed=seed)


def _rerank(feed: _Feed, plan: FeedPlan, rows: np.ndarray, scores: _Scores, *, enabled: bool) -> RankerChoice | None:
    """The ``ranker`` stage: the ranker that re-ranked ``scores`` (in place), or None."""
    if not (feed.variant == "reciprocal" and enabled and settings.ML_ENABLED and len(rows)):
        return None
    with feed.stage("ranker"):
        ranker, ranked, calibrated = _ranker_ranking(feed, rows, scores, plan.cf)
    if ranked is not None:
        scores.scored.components["ranker"] = ranked
        # the ranker's P(user likes v) takes the user's side of the reciprocal fusion
        scores.ranking = fuse(ranked, scores.scored.score_vu, settings.ML_FUSION_METHOD) if calibrated else ranked
    return ranker


def _select(feed: _Feed, pks: np.ndarray, scores: _Scores) -> list[FeedItem]:
    """The ``select`` and ``live_check`` stages: the served items, by descending score."""
    chosen, explored, alive = _select_live(feed, pks, scores.ranking, scores.seed)
    return _items(chosen, explored, pks, scores.ranking, scores.scored.components, alive)


def _log(feed: _Feed, items: list[FeedItem], model_version: str, experiment_arm: str) -> None:
    """The ``log`` stage: the served batch as impressions."""
    with feed.stage("log"):
        impressions_record_served(
            tenant=feed.tenant,
            user=feed.user,
            candidate_ids=[item.profile_id for item in items],
            model_version=model_version,
            experiment_arm=experiment_arm,
            context_hash=f"feed:{feed.variant}",
            timestamp=timezone.now(),
        )


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
    # The store's pools follow its newest snapshot, and a refresh may land after this feed took
    # its own: rows are only ever appended, so a row past this snapshot is a profile it predates.
    rows = rows[rows < len(snap.active)]
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


# --------------------------------------------------------------------------- scoring


def _seed(tenant_id: int, user_id: int, day: date, variant: str) -> int:
    digest = hashlib.blake2b(f"{tenant_id}:{user_id}:{day.isoformat()}:{variant}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _user_elo(snap: StoreSnapshot, user: Profile) -> float:
    row = snap.row_of_pk(user.pk)
    if row >= 0:
        return float(snap.elo[row])
    rating = EloRating.objects.filter(profile_id=user.pk).values_list("rating", flat=True).first()
    return 1500.0 if rating is None else float(rating)


def _user_like_rate(snap: StoreSnapshot, user: Profile) -> float:
    """The user's smoothed like rate as the store knows it (the prior rate before any swipe)."""
    row = snap.row_of_pk(user.pk)
    return float(snap.like_rate[row]) if row >= 0 else PRIOR_LIKE_RATE


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


def _ranker_ranking(
    feed: _Feed, rows: np.ndarray, scores: _Scores, cf: CollaborativeServing | None
) -> tuple[RankerChoice | None, np.ndarray | None, bool]:
    """(the ranker that scored, its (n,) scores, whether they are calibrated probabilities), or
    (None, None, False) when no ranker serves."""
    choice = ranker_for(feed.tenant, feed.user)
    if choice is None:
        return None, None, False
    snap, signals = feed.snap, scores.signals
    user_row = snap.row_of_pk(feed.user.pk)
    inputs = RankerInputs(
        user=feed.user_f,
        cands=scores.cands,
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


# --------------------------------------------------------------------------- selection


def _select_live(
    feed: _Feed, pks: np.ndarray, ranking: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray, dict[int, uuid.UUID]]:
    """(top positions, explored positions, live pk -> external id): the feed's picks, with any
    profile no longer active in the database replaced by the next one."""
    order = np.lexsort((pks, -ranking))  # best first; ties by pk, so the order is stable
    n_explore = 0 if feed.variant == "random" else exploration_slots(feed.count, settings.ML_EXPLORATION_SHARE)
    dead = np.empty(0, dtype=np.int64)
    top = explored = np.empty(0, dtype=np.int64)
    alive: dict[int, uuid.UUID] = {}
    for _ in range(LIVE_CHECK_ROUNDS):
        with feed.stage("select"):
            live_order = order[~np.isin(pks[order], dead)]
            top, explored = pick_feed(live_order, feed.count, n_explore, np.random.default_rng(seed), pks)
            chosen = np.concatenate([top, explored])
        with feed.stage("live_check"):
            alive = live_profiles(feed.tenant.pk, pks[chosen].tolist())
            gone = [pk for pk in pks[chosen].tolist() if pk not in alive]
            if not gone:
                break
            feed.store.mark_inactive(gone)
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


def feed_reset_for_tests() -> None:
    """Drop every tenant's candidate store and collaborative model (tests roll the database back
    between cases)."""
    stores_reset()
    collaborative_reset_for_tests()
    ranker_reset_for_tests()
