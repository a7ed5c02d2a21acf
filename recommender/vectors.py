"""The vectors the batch ML API answers: embeddings of texts or profiles, and pair similarities.

Vectors of profiles come from ``services.embeddings.profile_vectors`` (the Redis cache
``embedding:profile:{tenant}:{id}``, then the ProfileEmbedding table, which fills the cache), as
the feed's do; texts are encoded by ``serving.encoder.encode_texts`` (the one loaded MiniLM).
The profiles a request names are looked up by ``recommender.ml_inputs``, as the rankings'.

Freshness of a profile's vector: the stored embedding is used (from the cache when there) only
while it is *fresh*: made by the configured ``EMBEDDING_MODEL`` from the profile's current text
(its ``text_hash`` matches). A stale or missing one (the profile changed and the ``embed_profile``
task has not run yet) is encoded from the current text for this answer, and not stored: storing
is the task's job. A profile with no text (no bio, no answered prompt) has no vector, as in the
feed.

Fallback: with ``ML_ENABLED=false`` or the model not loadable, nothing here fails: embeddings
answer without vectors, similarities fall back to interest overlap for profile pairs, each saying
so in ``fallback`` (``"ml_disabled"`` or ``"model_unavailable"``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings

from accounts.models import Tenant
from recommender.feed.features import profile_features
from recommender.ml.structured import CandidateBatch, interest_jaccard
from recommender.ml_inputs import MlInputError, ResolvedProfile, resolve_profiles, unknown_profile
from recommender.services.embeddings import profile_vectors
from recommender.serving.encoder import EmbeddingUnavailable, embedding_dim, encode_texts
from recommender.serving.health import ml_fallback


def _require_all(found: dict[uuid.UUID, Any], external_ids: Sequence[uuid.UUID], field_name: str) -> None:
    missing = {str(i): unknown_profile(ext) for i, ext in enumerate(external_ids) if ext not in found}
    if missing:
        raise MlInputError({field_name: missing})


@dataclass
class _ProfileVectors:
    vectors: dict[int, np.ndarray]  # profile pk -> unit vector (absent: no text)
    stored: int = 0  # fresh stored vectors used (cache or database)
    cache_hits: int = 0
    computed: set[int] = field(default_factory=set)  # pks encoded now (stale or missing embedding)


def _profile_vectors(tenant: Tenant, resolved: Sequence[ResolvedProfile]) -> _ProfileVectors:
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
    resolved: dict[uuid.UUID, ResolvedProfile] = {}
    if profile_ids is not None:
        resolved = resolve_profiles(tenant, profile_ids)
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


def _embed_profiles(tenant: Tenant, resolved: list[ResolvedProfile]) -> tuple[list[EmbeddingResult], dict[str, int]]:
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
    resolved = resolve_profiles(tenant, ids)
    missing: dict[str, Any] = {}
    for i, pair in enumerate(pairs):
        bad = {
            name: {"profile_id": unknown_profile(s.profile_id)}
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
    tenant: Tenant, pairs: Sequence[tuple[Side, Side]], resolved: dict[uuid.UUID, ResolvedProfile]
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


def _fallback_similarity(a: Side, b: Side, resolved: dict[uuid.UUID, ResolvedProfile], reason: str) -> SimilarityResult:
    if a.profile_id is None or b.profile_id is None:
        return SimilarityResult(similarity=None, method=None, reason=reason)
    pa, pb = (profile_features(resolved[s.profile_id].profile) for s in (a, b))  # type: ignore[index]
    jaccard = float(interest_jaccard(pa, CandidateBatch.from_features([pb]))[0])
    return SimilarityResult(similarity=round(jaccard, 6), method="interests", reason=reason)
