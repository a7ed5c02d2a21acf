"""The ML API's rankings: the feed's scoring of candidates a caller gives, every one answered.

Everything reuses what the feed uses, so the API and the feed can never disagree: candidates are
scored by ``recommender.feed.scoring.score_pairs`` with the same signals, weights
(``plan.feed_signal_weights``) and fusion as the feed (the active collaborative model included),
the candidates' features from the feed's candidate store, the same hard filters
(``hard_filter_mask``), and the facts of the feed's readers for all users of a batch at once
(``reads.swipe_histories``, ``reads.excluded_profile_ids_by_user``; a test checks they agree
with a single feed's). Vectors are the stored ones (cache, then database), as the feed's.

Fallback: with ``ML_ENABLED=false`` or the model not loadable, rankings use the feed's fallback
signals (structured score, Elo, liked-you) and say so in ``fallback`` (``"ml_disabled"`` or
``"model_unavailable"``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings

from accounts.models import Tenant
from recommender.feed.features import profile_features, stack_vectors
from recommender.feed.pipeline import collab_logits, items_components
from recommender.feed.plan import FEED_VERSION, feed_signal_weights
from recommender.feed.reads import excluded_profile_ids_by_user, swipe_histories
from recommender.feed.scoring import PairSignals, SignalWeights, score_pairs
from recommender.feed.store import PRIOR_LIKE_RATE, StoreSnapshot, candidate_store, smoothed_like_rate
from recommender.ml.interaction import interaction_adjustment
from recommender.ml.structured import (
    CandidateBatch,
    ProfileFeatures,
    gender_code,
    hard_filter_mask,
    haversine_km,
    seeking_mask,
)
from recommender.ml_inputs import MlInputError, ResolvedProfile, resolve_profiles, unknown_profile
from recommender.models import EloRating, Profile, ProfileStatus
from recommender.services.embeddings import profile_vectors
from recommender.serving.collaborative import CollaborativeServing, serving_collaborative
from recommender.serving.encoder import EmbeddingUnavailable, embedding_dim
from recommender.serving.health import ml_fallback

DEFAULT_ELO = 1500.0
# Why a ranked candidate would not be in the user's feed (see profiles_rank).
FILTER_REASONS: tuple[str, ...] = ("self", "inactive", "gender", "age", "distance", "excluded", "already_swiped")


@dataclass(frozen=True)
class RankRequest:
    user_id: uuid.UUID
    candidate_ids: list[uuid.UUID]


@dataclass
class RankedCandidate:
    candidate_id: uuid.UUID
    rank: int  # 1-based, over all given candidates
    score: float  # the reciprocal score
    passes_filters: bool
    failed_filters: list[str]
    components: dict[str, float | bool | None]


@dataclass
class Ranking:
    user_id: uuid.UUID
    candidates: list[RankedCandidate]


@dataclass
class RankBatch:
    rankings: list[Ranking]
    model_version: str
    fallback: str | None
    fusion: str
    latency_ms: float = 0.0

    @property
    def available(self) -> bool:
        return self.fallback is None


@dataclass
class _UserContext:
    user: Profile
    features: ProfileFeatures
    swiped: set[int]
    likers: set[int]
    passers: set[int]  # who passed on the user
    excluded: set[int]
    history: tuple[list[int], list[int], list[int]]  # liked, superliked, passed (oldest first)


def profiles_rank(*, tenant: Tenant, requests: Sequence[RankRequest]) -> RankBatch:
    """Score each user's given candidates with the feed's scoring; every candidate comes back.

    Order: candidates passing the feed's filters first (hard filters both ways -- genders sought,
    age ranges, distance within both maxima -- an active profile, not the user, not matched,
    blocked or reported either way, not already swiped by the user), by descending reciprocal
    score; then the others, by descending score, with ``passes_filters: false`` and the reasons
    in ``failed_filters``. Ties keep the request's order. Nothing is written (no impressions:
    ranking is not serving). Raises MlInputError for an id unknown in the tenant.
    """
    started = time.perf_counter()
    wanted = [ext for r in requests for ext in (r.user_id, *r.candidate_ids)]
    resolved = resolve_profiles(tenant, wanted)
    _require_known(requests, resolved)

    fallback = ml_fallback()
    users = {r.user_id: resolved[r.user_id].profile for r in requests}
    by_pk = user_contexts(tenant=tenant, users=list(users.values()))
    contexts = {ext: by_pk[user.pk] for ext, user in users.items()}
    all_pks = {res.profile.pk for res in resolved.values()}
    elo, like_rate = _elo_and_like_rates(all_pks)
    store = candidate_store(tenant.pk)
    snapshot = store.snapshot()  # the feed's features of active profiles
    median_rate = store.median_like_rate()
    vectors: dict[int, np.ndarray] = {}
    if fallback is None:
        history_pks = {pk for c in contexts.values() for group in c.history for pk in group}
        try:
            vectors = _stored_vectors(tenant, all_pks | history_pks)
        except EmbeddingUnavailable:
            fallback = "model_unavailable"
    weights = feed_signal_weights()
    # the tenant's active collaborative model, as the feed uses it (none with ML disabled)
    cf = serving_collaborative(tenant.pk) if settings.ML_ENABLED else None
    rankings = [
        _rank_one(
            contexts[r.user_id],
            [resolved[c].profile for c in r.candidate_ids],
            elo=elo,
            like_rate=like_rate,
            median_rate=median_rate,
            vectors=vectors,
            weights=weights,
            cf=cf,
            snapshot=snapshot,
        )
        for r in requests
    ]
    model_version = FEED_VERSION if fallback is None else f"{FEED_VERSION}-fallback"
    if cf is not None:
        model_version += f"+cf:{cf.version}"
    return RankBatch(
        rankings=rankings,
        model_version=model_version,
        fallback=fallback,
        fusion=settings.ML_FUSION_METHOD,
        latency_ms=round((time.perf_counter() - started) * 1000, 3),
    )


def _require_known(requests: Sequence[RankRequest], resolved: dict[uuid.UUID, ResolvedProfile]) -> None:
    """Raise MlInputError naming every user and candidate id unknown in the tenant (keyed by
    request and candidate index)."""
    missing: dict[str, Any] = {}
    for i, r in enumerate(requests):
        bad: dict[str, Any] = {}
        if r.user_id not in resolved:
            bad["user_id"] = unknown_profile(r.user_id)
        cands = {str(j): unknown_profile(c) for j, c in enumerate(r.candidate_ids) if c not in resolved}
        if cands:
            bad["candidate_ids"] = cands
        if bad:
            missing[str(i)] = bad
    if missing:
        raise MlInputError({"requests": missing})


def user_contexts(*, tenant: Tenant, users: Sequence[Profile]) -> dict[int, _UserContext]:
    """What the feed knows about each user (its swipe history and its "never show" set, from the
    feed's own readers), for many users in four queries in all."""
    pks = [u.pk for u in users]
    histories = swipe_histories(user_ids=pks)
    excluded = excluded_profile_ids_by_user(tenant.pk, pks)
    return {
        u.pk: _UserContext(
            user=u,
            features=profile_features(u),
            swiped=set(histories[u.pk].swiped.tolist()),
            likers=set(histories[u.pk].likers.tolist()),
            passers=set(histories[u.pk].passers.tolist()),
            excluded=excluded[u.pk],
            history=(histories[u.pk].liked, histories[u.pk].superliked, histories[u.pk].passed),
        )
        for u in users
    }


def _elo_and_like_rates(pks: set[int]) -> tuple[dict[int, float], dict[int, float]]:
    """Each profile's Elo rating and smoothed like rate (the store's definition), fresh from the
    database; a profile without a rating row has 1500 and the prior rate."""
    rows = list(
        EloRating.objects.filter(profile_id__in=pks).values_list("profile_id", "rating", "swipes_given", "likes_given")
    )
    elo = {pk: float(rating) for pk, rating, _s, _l in rows}
    rates = smoothed_like_rate(
        np.array([likes for *_r, likes in rows], dtype=np.float64),
        np.array([swipes for _p, _r, swipes, _l in rows], dtype=np.float64),
    )
    like_rate = {pk: float(rate) for (pk, *_rest), rate in zip(rows, rates, strict=True)}
    return elo, like_rate


def _stored_vectors(tenant: Tenant, pks: set[int]) -> dict[int, np.ndarray]:
    """Stored vectors (cache, then database) of the configured model's dimension, as the feed
    uses them: a profile without one simply has no similarity or interaction signal."""
    dim = embedding_dim()
    found = profile_vectors(tenant_id=tenant.pk, profile_ids=sorted(pks)).vectors
    return {pk: v for pk, v in found.items() if len(v) == dim}


def _failed_filters(ctx: _UserContext, cands: list[Profile], batch: CandidateBatch) -> list[list[str]]:
    """Per candidate, why the feed would not show them (empty: it could)."""
    u = ctx.features
    cand_bits = np.left_shift(np.uint8(1), batch.gender.astype(np.uint8))
    gender_ok = ((cand_bits & seeking_mask(u.seeking)) != 0) & ((batch.seeking & (1 << gender_code(u.gender))) != 0)
    age_ok = (batch.age >= u.age_min) & (batch.age <= u.age_max) & (batch.age_min <= u.age) & (batch.age_max >= u.age)
    distance_ok = haversine_km(u.lat, u.lon, batch.lat, batch.lon) <= np.minimum(
        batch.max_distance_km, u.max_distance_km
    )
    hard_ok = hard_filter_mask(u, batch)
    out: list[list[str]] = []
    for i, c in enumerate(cands):
        reasons: list[str] = []
        if c.pk == ctx.user.pk:
            reasons.append("self")
        if c.status != ProfileStatus.ACTIVE:
            reasons.append("inactive")
        for name, ok in (("gender", gender_ok), ("age", age_ok), ("distance", distance_ok)):
            if not ok[i]:
                reasons.append(name)
        if not hard_ok[i] and not any(r in reasons for r in ("gender", "age", "distance")):
            reasons.append("gender")  # hard_filter_mask is the authority; never pass what it refuses
        if c.pk != ctx.user.pk and c.pk in ctx.excluded:
            reasons.append("excluded")
        if c.pk in ctx.swiped:
            reasons.append("already_swiped")
        out.append(reasons)
    return out


def _candidate_features(snapshot: StoreSnapshot, cands: list[Profile], pks: np.ndarray) -> CandidateBatch:
    """The candidates' matching features: the feed's own rows from its candidate store when it
    holds every candidate (the usual case; no encoding), else encoded from the profiles."""
    rows = snapshot.rows_for(pks)
    if len(rows) == len(pks) and np.array_equal(snapshot.batch.ids[rows], pks):
        return snapshot.batch.take(rows)
    return CandidateBatch.from_features([profile_features(c) for c in cands], ids=pks)


def _rank_one(
    ctx: _UserContext,
    cands: list[Profile],
    *,
    elo: dict[int, float],
    like_rate: dict[int, float],
    median_rate: float,
    vectors: dict[int, np.ndarray],
    weights: SignalWeights,
    cf: CollaborativeServing | None,
    snapshot: StoreSnapshot,
) -> Ranking:
    pks = np.array([c.pk for c in cands], dtype=np.int64)  # (n,)
    batch = _candidate_features(snapshot, cands, pks)
    n = len(cands)
    similarity = np.full(n, np.nan)
    interaction = np.full(n, np.nan)
    own = vectors.get(ctx.user.pk)
    have = np.array([pk in vectors for pk in pks.tolist()], dtype=bool)  # (n,)
    if have.any():
        matrix = np.stack([vectors[pk] for pk in pks[have].tolist()]).astype(np.float32)  # (m, d)
        if own is not None:
            similarity[have] = matrix @ own
        liked, superliked, passed = (stack_vectors(vectors, group) for group in ctx.history)
        if any(g is not None for g in (liked, superliked, passed)):
            interaction[have] = interaction_adjustment(matrix, liked, superliked, passed)
    collab_uv, collab_vu = collab_logits(cf, ctx.user.pk, pks)  # as the feed: NaN where the model cannot say
    signals = PairSignals(
        similarity=similarity,
        interaction=interaction,
        elo_candidate=np.array([elo.get(pk, DEFAULT_ELO) for pk in pks.tolist()], dtype=np.float64),
        elo_user=elo.get(ctx.user.pk, DEFAULT_ELO),
        liked_user=np.array([pk in ctx.likers for pk in pks.tolist()], dtype=bool),
        passed_user=np.array([pk in ctx.passers for pk in pks.tolist()], dtype=bool),
        selectivity=np.array([like_rate.get(pk, PRIOR_LIKE_RATE) for pk in pks.tolist()]) / median_rate,
        collab_uv=collab_uv,
        collab_vu=collab_vu,
        like_rate_user=like_rate.get(ctx.user.pk, PRIOR_LIKE_RATE),
        like_rate_candidate=np.array([like_rate.get(pk, PRIOR_LIKE_RATE) for pk in pks.tolist()]),
    )
    learned = cf.fusion if cf is not None else None
    scored = score_pairs(ctx.features, batch, signals, weights, settings.ML_FUSION_METHOD, learned)
    failed = _failed_filters(ctx, cands, batch)
    order = sorted(range(n), key=lambda i: (bool(failed[i]), -float(scored.reciprocal[i]), i))
    answered = items_components(scored.components, order)
    ranked = [
        RankedCandidate(
            candidate_id=cands[i].external_id,
            rank=position + 1,
            score=float(scored.reciprocal[i]),
            passes_filters=not failed[i],
            failed_filters=failed[i],
            components=components,
        )
        for position, (i, components) in enumerate(zip(order, answered, strict=True))
    ]
    return Ranking(user_id=ctx.user.external_id, candidates=ranked)
