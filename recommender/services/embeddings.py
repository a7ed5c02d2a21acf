"""Bio embeddings: computed off the request path, stored in ProfileEmbedding, cached in Redis.

The ProfileEmbedding table is the source of truth; the cache (``embedding:profile:{tenant}:{id}``,
raw float32 bytes) and the ANN index are derived from it and rebuildable. Reads
(:func:`profile_vectors`) never compute an embedding: a profile without a stored one is simply
absent and the feed falls back to its other signals.

Row policy for profiles that are not active:

* **erased**: the row is deleted. An embedding is derived from the bio, i.e. personal data that
  erasure must remove.
* **hidden / banned**: the row is kept (moderation can restore the profile without re-embedding);
  such profiles never reach a feed because the index drops them (see
  ``recommender/serving/index.py``). The cache key is deleted in every case.

A profile whose text is empty (no bio, no answered prompt) gets no embedding: the model would map
every such profile to the same meaningless vector, making them each other's nearest neighbours.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from core.tasks import enqueue
from recommender.ml.embedding_spec import profile_text
from recommender.models import Profile, ProfileEmbedding, ProfileStatus
from recommender.serving import encoder
from recommender.serving.encoder import VECTOR_DTYPE, vector_from_bytes

logger = logging.getLogger(__name__)

BATCH_SIZE = 256


def profile_embedding_text(profile: Profile) -> str:
    return profile_text(profile.bio, profile.prompts or ())


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- The cache --------------------------------------------------------------------------------


def embedding_cache_key(*, tenant_id: int, profile_id: int) -> str:
    return f"embedding:profile:{tenant_id}:{profile_id}"


# Redis being down must not flood the log: one warning per outage, then debug until it recovers.
_cache_outage_logged = False


def _cache_failed(operation: str, exc: Exception) -> None:
    global _cache_outage_logged
    if not _cache_outage_logged:
        logger.warning("embedding cache %s failed, using the database instead: %s", operation, exc)
        _cache_outage_logged = True
    else:
        logger.debug("embedding cache %s failed: %s", operation, exc)


def _cache_recovered() -> None:
    global _cache_outage_logged
    if _cache_outage_logged:
        logger.info("embedding cache reachable again")
        _cache_outage_logged = False


def _cache_get_many(keys: list[str]) -> dict[str, Any]:
    try:
        found = cache.get_many(keys)
    except Exception as exc:  # any backend error (connection refused, timeout) means "no cache"
        _cache_failed("read", exc)
        return {}
    _cache_recovered()
    return found


def _cache_set_many(values: dict[str, bytes]) -> None:
    if not values:
        return
    try:
        cache.set_many(values, timeout=settings.EMBEDDING_CACHE_TTL)
    except Exception as exc:
        _cache_failed("write", exc)


def _cache_delete_many(keys: list[str]) -> None:
    if not keys:
        return
    try:
        cache.delete_many(keys)
    except Exception as exc:
        # A key that could not be deleted expires after EMBEDDING_CACHE_TTL at the latest.
        _cache_failed("delete", exc)


def embedding_cache_invalidate(*, tenant_id: int, profile_id: int) -> None:
    _cache_delete_many([embedding_cache_key(tenant_id=tenant_id, profile_id=profile_id)])


def _invalidate_on_commit(keys: list[str]) -> None:
    # After the commit, not before: a reader in between would re-cache the old row's vector.
    if keys:
        transaction.on_commit(lambda: _cache_delete_many(keys))


# --- Reads ------------------------------------------------------------------------------------


@dataclass
class VectorLookup:
    vectors: dict[int, np.ndarray]
    cache_hits: int
    misses: int  # ids not in the cache (looked up in the database, found or not)


def profile_vectors(*, tenant_id: int, profile_ids: Sequence[int]) -> VectorLookup:
    """Stored vectors of ``profile_ids`` (cache, then database); never computes one.

    Vectors are returned whatever the profile's status: callers choose candidates among active
    profiles (the index holds only those). Erased profiles have no embedding left.
    """
    ids = list(dict.fromkeys(int(i) for i in profile_ids))
    keys = {pid: embedding_cache_key(tenant_id=tenant_id, profile_id=pid) for pid in ids}
    cached = _cache_get_many(list(keys.values()))
    vectors: dict[int, np.ndarray] = {}
    missing: list[int] = []
    for pid in ids:
        raw = cached.get(keys[pid])
        if isinstance(raw, bytes) and raw and len(raw) % VECTOR_DTYPE.itemsize == 0:
            vectors[pid] = vector_from_bytes(raw)
        else:
            missing.append(pid)
    hits = len(vectors)
    if missing:
        rows = ProfileEmbedding.objects.filter(tenant_id=tenant_id, profile_id__in=missing).values_list(
            "profile_id", "vector"
        )
        fill: dict[str, bytes] = {}
        for pid, raw in rows:
            vectors[pid] = vector_from_bytes(raw)
            fill[keys[pid]] = bytes(raw)
        _cache_set_many(fill)
    return VectorLookup(vectors=vectors, cache_hits=hits, misses=len(missing))


# --- Writes -----------------------------------------------------------------------------------


@dataclass
class _Plan:
    compute: list[tuple[Profile, str, str]]  # (profile, text, text_hash)
    delete_rows: list[int]
    invalidate: list[str]


def _plan_chunk(profiles: Iterable[Profile], existing: dict[int, tuple[str, str]], *, force: bool) -> _Plan:
    plan = _Plan(compute=[], delete_rows=[], invalidate=[])
    model = settings.EMBEDDING_MODEL
    for p in profiles:
        key = embedding_cache_key(tenant_id=p.tenant_id, profile_id=p.pk)
        if p.status != ProfileStatus.ACTIVE:
            plan.invalidate.append(key)
            if p.status == ProfileStatus.ERASED and p.pk in existing:
                plan.delete_rows.append(p.pk)
            continue
        text = profile_embedding_text(p)
        if not text:
            if p.pk in existing:
                plan.delete_rows.append(p.pk)
                plan.invalidate.append(key)
            continue
        digest = text_hash(text)
        if force or existing.get(p.pk) != (digest, model):
            plan.compute.append((p, text, digest))
            plan.invalidate.append(key)
    return plan


def _write_embeddings(items: list[tuple[Profile, str, str]], vectors: np.ndarray) -> None:
    now = timezone.now()
    model, dim = settings.EMBEDDING_MODEL, int(vectors.shape[1])
    rows = [
        ProfileEmbedding(
            profile_id=p.pk,
            tenant_id=p.tenant_id,
            model_name=model,
            dim=dim,
            vector=np.ascontiguousarray(vec, dtype=VECTOR_DTYPE).tobytes(),
            text_hash=digest,
            updated_at=now,
        )
        for (p, _text, digest), vec in zip(items, vectors, strict=True)
    ]
    ProfileEmbedding.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["profile"],
        update_fields=["tenant", "model_name", "dim", "vector", "text_hash", "updated_at"],
    )


def embeddings_upsert(
    *, profile_ids: Sequence[int], progress: Callable[[int], None] | None = None, force: bool = False
) -> int:
    """(Re)compute the embeddings of ``profile_ids`` whose text or model changed; return how many.

    ``progress`` receives the number of the given profiles handled so far (checked, skipped or
    computed), so a bar's total is ``len(profile_ids)``. ``force`` recomputes unchanged ones too.
    Raises EmbeddingUnavailable only when something needs computing and the model is unavailable.
    """
    ids = list(dict.fromkeys(int(i) for i in profile_ids))
    computed = 0
    for start in range(0, len(ids), BATCH_SIZE):
        chunk = ids[start : start + BATCH_SIZE]
        computed += _upsert_chunk(chunk, force=force)
        if progress is not None:
            progress(start + len(chunk))
    return computed


def _upsert_chunk(ids: list[int], *, force: bool) -> int:
    profiles = Profile.objects.filter(pk__in=ids).only("pk", "tenant_id", "status", "bio", "prompts")
    existing = {
        pid: (digest, model)
        for pid, digest, model in ProfileEmbedding.objects.filter(profile_id__in=ids).values_list(
            "profile_id", "text_hash", "model_name"
        )
    }
    plan = _plan_chunk(profiles, existing, force=force)
    # Encode outside the transaction: it takes seconds per batch and needs no lock.
    vectors = encoder.encode_texts([text for _p, text, _d in plan.compute]) if plan.compute else None
    with transaction.atomic():
        if plan.delete_rows:
            ProfileEmbedding.objects.filter(profile_id__in=plan.delete_rows).delete()
        if vectors is not None:
            items, vectors = _still_current(plan.compute, vectors)
            _write_embeddings(items, vectors)
        _invalidate_on_commit(plan.invalidate)
    return len(plan.compute)


def _still_current(
    items: list[tuple[Profile, str, str]], vectors: np.ndarray
) -> tuple[list[tuple[Profile, str, str]], np.ndarray]:
    """Drop the items whose profile changed while we were encoding.

    Without this, a slow task embedding an old bio could overwrite the embedding a later task
    wrote for the new one. The profile rows are locked (PostgreSQL) until the write commits, so
    an update cannot slip in between this check and the write; the update's own hook re-embeds.
    """
    current = {
        p.pk: p
        for p in Profile.objects.select_for_update()
        .filter(pk__in=[p.pk for p, _t, _d in items])
        .only("pk", "status", "bio", "prompts")
        .order_by("pk")
    }
    keep = [
        i
        for i, (p, text, _d) in enumerate(items)
        if p.pk in current
        and current[p.pk].status == ProfileStatus.ACTIVE
        and profile_embedding_text(current[p.pk]) == text
    ]
    return [items[i] for i in keep], vectors[keep]


# --- Profile hook -----------------------------------------------------------------------------


def embedding_profile_changed(profile_id: int) -> None:
    """Profile hook (runs after commit): drop the cached vector, re-embed an active profile.

    Never raises: it runs at the end of a request whose data is already committed, and the
    embedding is derived data that the next index build recomputes anyway.
    """
    try:
        row = Profile.objects.filter(pk=profile_id).values_list("tenant_id", "status").first()
        if row is None:
            return
        tenant_id, status = row
        embedding_cache_invalidate(tenant_id=tenant_id, profile_id=profile_id)
        if status != ProfileStatus.ACTIVE:
            # Needs no model: deletes an erased profile's embedding (personal data) right away.
            embeddings_upsert(profile_ids=[profile_id])
        elif settings.ML_ENABLED:
            # By name: tasks import this module, so it never imports them.
            enqueue("recommender.tasks.embed_profile", profile_id)
    except Exception:
        logger.exception("embedding hook failed for profile %s; the next index build catches up", profile_id)
