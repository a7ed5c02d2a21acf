"""The ML API's work: batch embeddings, pair similarities, ranking given candidates, ML health.

Everything reuses what the feed uses, so the API and the feed can never disagree:

* vectors of profiles come from ``services.embeddings.profile_vectors`` (the Redis cache
  ``embedding:profile:{tenant}:{id}``, then the ProfileEmbedding table, which fills the cache);
  texts are encoded by ``services.embeddings.encode_texts`` (the one loaded MiniLM);
* rankings are scored by ``recommender.feed.scoring.score_pairs`` with the same signals, weights
  and fusion as the feed (the active collaborative model included), the candidates' features
  from the feed's candidate store, the same hard filters (``hard_filter_mask``), and the facts of
  the feed's readers for all users of a batch at once (``swipe_histories``,
  ``excluded_profile_ids_by_user``; a test checks they agree with a single feed's);
* health extends ``patra.health.health_report`` (database, cache, broker, loaded indexes).

Freshness of a profile's vector: the stored embedding is used (from the cache when there) only
while it is *fresh*: made by the configured ``EMBEDDING_MODEL`` from the profile's current text
(its ``text_hash`` matches). A stale or missing one (the profile changed and the ``embed_profile``
task has not run yet) is encoded from the current text for this answer, and not stored: storing
is the task's job. A profile with no text (no bio, no answered prompt) has no vector, as in the
feed.

Fallback: with ``ML_ENABLED=false`` or the model not loadable, nothing here fails: embeddings
answer without vectors, similarities fall back to interest overlap for profile pairs, rankings to
the feed's fallback signals (structured score, Elo, liked-you), each saying so in ``fallback``
(``"ml_disabled"`` or ``"model_unavailable"``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings

from recommender.feed.scoring import PairSignals, SignalWeights, score_pairs
from recommender.feed.store import PRIOR_LIKE_RATE, StoreSnapshot, candidate_store, smoothed_like_rate
from recommender.ml.interaction import interaction_adjustment
from recommender.ml.structured import (
    CandidateBatch,
    ProfileFeatures,
    gender_code,
    hard_filter_mask,
    haversine_km,
    interest_jaccard,
    seeking_mask,
)
from recommender.models import (
    EloRating,
    Profile,
    ProfileStatus,
    Tenant,
)
from recommender.services.collaborative import CollaborativeServing, serving_collaborative
from recommender.services.embeddings import (
    EmbeddingUnavailable,
    embedding_dim,
    encode_texts,
    ml_available,
    profile_embedding_text,
    profile_vectors,
    text_hash,
)
from recommender.services.feed import (
    FEED_VERSION,
    collab_logits,
    excluded_profile_ids_by_user,
    feed_signal_weights,
    items_components,
    profile_features,
    stack_vectors,
    swipe_histories,
)

DEFAULT_ELO = 1500.0
# Why a ranked candidate would not be in the user's feed (see profiles_rank).
FILTER_REASONS: tuple[str, ...] = ("self", "inactive", "gender", "age", "distance", "excluded", "already_swiped")


class MlInputError(Exception):
    """The request names something that does not exist in the tenant: field-level ``errors``
    in the API's error shape (items keyed by index). Nothing was changed."""

    def __init__(self, errors: dict[str, Any]) -> None:
        super().__init__(errors)
        self.errors = errors


def ml_fallback() -> str | None:
    """Why ML cannot serve (``"ml_disabled"``, ``"model_unavailable"``), or None when it can."""
    if not settings.ML_ENABLED:
        return "ml_disabled"
    if not ml_available():
        return "model_unavailable"
    return None


# --------------------------------------------------------------------------- profiles


@dataclass
class _Resolved:
    profile: Profile
    text: str
    fresh: bool  # the stored embedding matches the configured model and the current text


def _resolve(tenant: Tenant, external_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, _Resolved]:
    """The tenant's (non-erased) profiles among ``external_ids``, with their embedding freshness,
    in one query (the embedding's metadata is joined, its vector is not read)."""
    ids = set(external_ids)
    if not ids:
        return {}
    rows = (
        Profile.objects.filter(tenant=tenant, external_id__in=ids)
        .exclude(status=ProfileStatus.ERASED)
        .select_related("embedding")
        .defer("embedding__vector")
    )
    out: dict[uuid.UUID, _Resolved] = {}
    for profile in rows:
        text = profile_embedding_text(profile)
        stored = getattr(profile, "embedding", None)
        fresh = bool(
            text
            and stored is not None
            and stored.model_name == settings.EMBEDDING_MODEL
            and stored.text_hash == text_hash(text)
        )
        out[profile.external_id] = _Resolved(profile=profile, text=text, fresh=fresh)
    return out


def _unknown(external_id: uuid.UUID) -> list[str]:
    return [f"No profile {external_id} in this tenant."]


def _require_all(found: dict[uuid.UUID, Any], external_ids: Sequence[uuid.UUID], field_name: str) -> None:
    missing = {str(i): _unknown(ext) for i, ext in enumerate(external_ids) if ext not in found}
    if missing:
        raise MlInputError({field_name: missing})


@dataclass
class _ProfileVectors:
    vectors: dict[int, np.ndarray]  # profile pk -> unit vector (absent: no text)
    stored: int = 0  # fresh stored vectors used (cache or database)
    cache_hits: int = 0
    computed: set[int] = field(default_factory=set)  # pks encoded now (stale or missing embedding)


def _profile_vectors(tenant: Tenant, resolved: Sequence[_Resolved]) -> _ProfileVectors:
    """Vectors of ``resolved`` profiles: fresh stored ones (cache, then database), the rest
    encoded now; raises EmbeddingUnavailable when something must be encoded and cannot be."""
    unique = {r.profile.pk: r for r in resolved}
    fresh = [pk for pk, r in unique.items() if r.fresh]
    out = _ProfileVectors(vectors={})
    if fresh:
        lookup = profile_vectors(tenant_id=tenant.pk, profile_ids=fresh)
        out.vectors.update(lookup.vectors)
        out.stored, out.cache_hits = len(lookup.vectors), lookup.cache_hits
    # stale, missing, or deleted between the two reads: encode the current text
    todo = [r for pk, r in unique.items() if r.text and pk not in out.vectors]
    if todo:
        encoded = encode_texts([r.text for r in todo])
        out.vectors.update({r.profile.pk: encoded[i] for i, r in enumerate(todo)})
        out.computed = {r.profile.pk for r in todo}
    dim = _dim_or_none()
    if dim is not None:  # a stored vector of another model's dimension cannot be served
        out.vectors = {pk: v for pk, v in out.vectors.items() if len(v) == dim}
    return out


def _dim_or_none() -> int | None:
    try:
        return embedding_dim()
    except EmbeddingUnavailable:
        return None


# --------------------------------------------------------------------------- embeddings


@dataclass
class EmbeddingResult:
    vector: np.ndarray | None
    reason: str | None = None  # why there is no vector: "no_text", "ml_disabled", "model_unavailable"
    source: str | None = None  # "computed" (encoded now) or "stored" (cache or database)


@dataclass
class EmbeddingBatch:
    model: str
    dimension: int | None
    fallback: str | None
    items: list[EmbeddingResult]
    stats: dict[str, int] = field(default_factory=dict)
    latency_ms: float = 0.0

    @property
    def available(self) -> bool:
        return self.fallback is None


def embeddings_compute(
    *, tenant: Tenant, texts: Sequence[str] | None = None, profile_ids: Sequence[uuid.UUID] | None = None
) -> EmbeddingBatch:
    """Vectors for ``texts`` or for the tenant's ``profile_ids`` (exactly one), in input order.

    Texts are encoded in one model call (repeated texts once). Profiles get their fresh stored
    vector (cache, then database) or one encoded now from their current text. Raises
    MlInputError for a profile id unknown in the tenant (before any model call).
    """
    started = time.perf_counter()
    if (texts is None) == (profile_ids is None):
        raise ValueError("give exactly one of texts and profile_ids")
    resolved: dict[uuid.UUID, _Resolved] = {}
    if profile_ids is not None:
        resolved = _resolve(tenant, profile_ids)
        _require_all(resolved, profile_ids, "profile_ids")
    n = len(texts) if texts is not None else len(profile_ids or ())
    fallback = ml_fallback()
    batch = EmbeddingBatch(model=settings.EMBEDDING_MODEL, dimension=None, fallback=fallback, items=[])
    if fallback is None:
        try:
            batch.dimension = embedding_dim()
            if texts is not None:
                batch.items, batch.stats = _embed_texts(texts)
            else:
                assert profile_ids is not None
                batch.items, batch.stats = _embed_profiles(tenant, [resolved[e] for e in profile_ids])
        except EmbeddingUnavailable:
            batch.fallback, batch.dimension = "model_unavailable", None
    if batch.fallback is not None:
        batch.items = [EmbeddingResult(vector=None, reason=batch.fallback) for _ in range(n)]
        batch.stats = {}
    batch.latency_ms = round((time.perf_counter() - started) * 1000, 3)
    return batch


def _embed_texts(texts: Sequence[str]) -> tuple[list[EmbeddingResult], dict[str, int]]:
    unique = list(dict.fromkeys(texts))
    vectors = encode_texts(unique)
    row = {text: i for i, text in enumerate(unique)}
    items = [EmbeddingResult(vector=vectors[row[t]], source="computed") for t in texts]
    return items, {"computed": len(unique)}


def _embed_profiles(tenant: Tenant, resolved: list[_Resolved]) -> tuple[list[EmbeddingResult], dict[str, int]]:
    found = _profile_vectors(tenant, resolved)
    items: list[EmbeddingResult] = []
    for r in resolved:
        vec = found.vectors.get(r.profile.pk)
        if vec is None:
            items.append(EmbeddingResult(vector=None, reason="no_text"))
        else:
            items.append(EmbeddingResult(vector=vec, source="computed" if r.profile.pk in found.computed else "stored"))
    stats = {"stored": found.stored, "cache_hits": found.cache_hits, "computed": len(found.computed)}
    return items, stats


# --------------------------------------------------------------------------- similarity


@dataclass(frozen=True)
class Side:
    """One side of a pair: a text, or a profile of the tenant."""

    text: str | None = None
    profile_id: uuid.UUID | None = None


@dataclass
class SimilarityResult:
    similarity: float | None
    method: str | None  # "embedding" (cosine of the two vectors) or "interests" (fallback: Jaccard)
    reason: str | None = None  # why there is no similarity


@dataclass
class SimilarityBatch:
    model: str
    fallback: str | None
    results: list[SimilarityResult]
    latency_ms: float = 0.0

    @property
    def available(self) -> bool:
        return self.fallback is None


def similarities_compute(*, tenant: Tenant, pairs: Sequence[tuple[Side, Side]]) -> SimilarityBatch:
    """Cosine similarity in [-1, 1] of each pair's two vectors (texts encoded in one model call,
    profiles as in :func:`embeddings_compute`). In fallback, a profile/profile pair gets the
    Jaccard overlap of the two interest lists in [0, 1] (``method: "interests"``) and a pair with a
    text none. Raises MlInputError for an unknown profile id (keyed ``pairs.i.a|b``)."""
    started = time.perf_counter()
    ids = [s.profile_id for pair in pairs for s in pair if s.profile_id is not None]
    resolved = _resolve(tenant, ids)
    missing: dict[str, Any] = {}
    for i, pair in enumerate(pairs):
        bad = {
            name: {"profile_id": _unknown(s.profile_id)}
            for name, s in zip(("a", "b"), pair, strict=True)
            if s.profile_id is not None and s.profile_id not in resolved
        }
        if bad:
            missing[str(i)] = bad
    if missing:
        raise MlInputError({"pairs": missing})
    fallback = ml_fallback()
    results: list[SimilarityResult] | None = None
    if fallback is None:
        try:
            results = _embedding_similarities(tenant, pairs, resolved)
        except EmbeddingUnavailable:
            fallback = "model_unavailable"
    if results is None:
        assert fallback is not None
        results = [_fallback_similarity(a, b, resolved, fallback) for a, b in pairs]
    return SimilarityBatch(
        model=settings.EMBEDDING_MODEL,
        fallback=fallback,
        results=results,
        latency_ms=round((time.perf_counter() - started) * 1000, 3),
    )


def _embedding_similarities(
    tenant: Tenant, pairs: Sequence[tuple[Side, Side]], resolved: dict[uuid.UUID, _Resolved]
) -> list[SimilarityResult]:
    texts = list(dict.fromkeys(s.text for pair in pairs for s in pair if s.text is not None))
    text_vectors = encode_texts(texts) if texts else np.empty((0, 0), dtype=np.float32)
    text_row = {t: i for i, t in enumerate(texts)}
    profile_vecs = _profile_vectors(tenant, list(resolved.values())).vectors

    def vector(side: Side) -> np.ndarray | None:
        if side.text is not None:
            return text_vectors[text_row[side.text]]
        assert side.profile_id is not None
        return profile_vecs.get(resolved[side.profile_id].profile.pk)

    results: list[SimilarityResult] = []
    for a, b in pairs:
        va, vb = vector(a), vector(b)
        if va is None or vb is None:
            results.append(SimilarityResult(similarity=None, method=None, reason="no_text"))
            continue
        cosine = float(np.clip(np.dot(va, vb), -1.0, 1.0))
        results.append(SimilarityResult(similarity=round(cosine, 6), method="embedding"))
    return results


def _fallback_similarity(a: Side, b: Side, resolved: dict[uuid.UUID, _Resolved], reason: str) -> SimilarityResult:
    if a.profile_id is None or b.profile_id is None:
        return SimilarityResult(similarity=None, method=None, reason=reason)
    pa, pb = (profile_features(resolved[s.profile_id].profile) for s in (a, b))  # type: ignore[index]
    jaccard = float(interest_jaccard(pa, CandidateBatch.from_features([pb]))[0])
    return SimilarityResult(similarity=round(jaccard, 6), method="interests", reason=reason)


# --------------------------------------------------------------------------- ranking


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
    resolved = _resolve(tenant, wanted)
    missing: dict[str, Any] = {}
    for i, r in enumerate(requests):
        bad: dict[str, Any] = {}
        if r.user_id not in resolved:
            bad["user_id"] = _unknown(r.user_id)
        cands = {str(j): _unknown(c) for j, c in enumerate(r.candidate_ids) if c not in resolved}
        if cands:
            bad["candidate_ids"] = cands
        if bad:
            missing[str(i)] = bad
    if missing:
        raise MlInputError({"requests": missing})

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


# --------------------------------------------------------------------------- health


def ml_health(*, tenant: Tenant) -> dict[str, Any]:
    """The ML side of readiness for ``tenant``, on top of ``patra.health.health_report``.

    ``unavailable``: the database does not answer, ML is disabled, or the embedding model does
    not load (the ML endpoints answer their fallbacks). ``degraded``: ML serves but something is
    off -- the cache or broker does not answer, a model version failed to load, or the tenant has
    no serving index (feeds fall back). ``ready``: everything answers.
    """
    from patra.health import health_report

    base = health_report()
    embedding = _embedding_status()
    index = _index_status(tenant) if base["checks"]["database"]["ok"] else {"loaded": False}
    versions = _active_versions(tenant) if base["checks"]["database"]["ok"] else {}
    safety = _safety_status(tenant) if base["checks"]["database"]["ok"] else {}
    if base["status"] == "unavailable":
        status, reason = "unavailable", base["reason"]
    elif not settings.ML_ENABLED:
        status, reason = "unavailable", "ML is disabled (ML_ENABLED=false): the ML endpoints answer their fallbacks"
    elif not embedding["available"]:
        status, reason = "unavailable", f"the embedding model is not available: {embedding['error']}"
    elif base["status"] == "degraded":
        status, reason = "degraded", base["reason"]
    elif index.get("last_error"):
        status, reason = "degraded", f"the tenant's index failed to load: {index['last_error']}"
    elif not index.get("loaded"):
        status, reason = "degraded", "no serving index for this tenant: feeds use the fallback (run build_index)"
    else:
        status, reason = "ready", ""
    return {
        "status": status,
        "reason": reason,
        "ml_enabled": settings.ML_ENABLED,
        "models": {"embedding": embedding, "safety": safety},
        "active_versions": versions,
        "index": index,
        "cache": base["checks"]["cache"],
        "broker": base["checks"]["broker"],
        "database": base["checks"]["database"],
        "serving": base["models"],
        "mode": base["mode"],
    }


def _embedding_status() -> dict[str, Any]:
    from recommender.ml.embeddings import resolve_model_path
    from recommender.services import embeddings as embedding_service

    status: dict[str, Any] = {
        "available": False,
        "name": settings.EMBEDDING_MODEL,
        "requested_device": settings.EMBEDDING_DEVICE,
        "backend": getattr(settings, "EMBEDDING_BACKEND", "torch"),
        "device": None,
        "dimension": None,
        "path": None,
        "error": None,
    }
    if not settings.ML_ENABLED:
        status["error"] = "ML is disabled (ML_ENABLED=false)"
        return status
    try:
        status["path"] = str(resolve_model_path(settings.EMBEDDING_MODEL))
    except Exception as exc:
        status["error"] = f"{type(exc).__name__}: {exc}"[:300]
        return status
    try:
        # The encoder the API and the feed use (loaded once per process; a failed load is
        # remembered with its reason, not retried on every call).
        encoder = embedding_service.loaded_encoder()
    except EmbeddingUnavailable as exc:
        status["error"] = str(exc)[:300]
        return status
    status.update(available=True, device=getattr(encoder, "device", None), dimension=int(encoder.dim))
    return status


def _index_status(tenant: Tenant) -> dict[str, Any]:
    from recommender.services.index import index_status, serving_index

    error: str | None = None
    try:
        serving_index(tenant.pk)  # what a feed request would load; a no-op once loaded
    except Exception as exc:  # reported, never raised: health must answer
        error = f"{type(exc).__name__}: {exc}"[:300]
    status = index_status(tenant.pk)
    if error and not status.get("last_error"):
        status["last_error"] = error
    if status.get("age_seconds") is not None:
        status["age_seconds"] = round(float(status["age_seconds"]), 1)
    return status


def _active_versions(tenant: Tenant) -> dict[str, str | None]:
    from registry.models import ModelType, ModelVersion, VersionStatus

    active = dict(
        ModelVersion.objects.filter(tenant=tenant, status=VersionStatus.ACTIVE).values_list("model_type", "version")
    )
    return {mt.value: (f"{mt.value}-v{active[mt.value]}" if mt.value in active else None) for mt in ModelType}


def _safety_status(tenant: Tenant) -> dict[str, Any]:
    try:
        from safety.serving import RULES_ONLY_VERSION, classifier_for

        clf = classifier_for(tenant.pk)
    except Exception as exc:
        return {"available": False, "name": None, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {
        "available": True,
        "name": clf.version,
        "trained_heads": clf.heads is not None,
        "error": None if clf.version != RULES_ONLY_VERSION else "no trained heads: rules only (run train_safety)",
    }
