"""Building, publishing and pruning a tenant's ANN index over bio embeddings (a worker's job).

:func:`index_build` (hourly and on demand) writes a new immutable build under
``ARTIFACT_ROOT/indexes/<tenant_slug>/<UTC timestamp>/``, registers it in the model registry as an
``index`` version (the build directory is its artifact), then repoints ``current.json`` at it and
prunes old builds. The first version of a tenant activates itself; later ones serve only once an
ML admin activates them. Serving the builds is :mod:`recommender.serving.index`'s: this module
only writes them, in the layout that module reads (where builds live, ``current.json``, the list
of recent embeddings), so that serving never depends on the builder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db.models import Max
from django.utils import timezone
from tqdm import tqdm

from accounts.models import Tenant
from recommender.ml.ann import AnnConfig, AnnIndex, exact_search, recall_at_k
from recommender.models import Profile, ProfileEmbedding, ProfileStatus
from recommender.services.embeddings import embeddings_upsert
from recommender.serving.encoder import EmbeddingUnavailable, embedding_dim, vector_from_bytes
from recommender.serving.index import (
    POINTER_FILE,
    RECENT_IDS_FILE,
    RECENT_TIMES_FILE,
    read_pointer_file,
    tenant_index_dir,
    to_micros,
)
from registry.models import ModelType, ModelVersion
from registry.services import registering

logger = logging.getLogger(__name__)

KEEP_BUILDS = 3
RECALL_QUERIES = 200
RECALL_K = 10
_VERSION_FORMAT = "%Y%m%dT%H%M%S.%fZ"  # sorts like the time it encodes
DEFAULT_CREATED_BY = "task:build_index"


def _ann_config(dim: int) -> AnnConfig:
    return AnnConfig(
        dim=dim,
        M=settings.INDEX_M,
        ef_construction=settings.INDEX_EF_CONSTRUCTION,
        ef_search=settings.INDEX_EF_SEARCH,
    )


# --- Building ---------------------------------------------------------------------------------


@dataclass
class IndexBuildResult:
    tenant_slug: str
    path: Path
    size: int
    dim: int
    build_seconds: float
    recall_at_10: float | None
    built_at: datetime
    version_id: uuid.UUID | None = None  # the build's registry version
    version_label: str | None = None


ProgressCallback = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class _Build:
    """A build saved under the tenant's index directory, not yet published."""

    path: Path
    pointer: dict[str, Any]
    size: int
    dim: int
    recall_at_10: float | None
    active_profiles: int


def index_build(
    *,
    tenant: Tenant,
    progress: bool = False,
    on_progress: ProgressCallback | None = None,
    created_by: str = DEFAULT_CREATED_BY,
) -> IndexBuildResult:
    """Embed what is missing, build the tenant's index, register it, publish it, prune old builds.

    The build is registered as a registry ``index`` version (``created_by``: ``task:build_index``,
    ``command:build_index``, ...); only the tenant's first version starts serving by itself.
    ``progress`` shows tqdm bars (commands); ``on_progress`` receives (done, total) while the
    missing embeddings are computed (the Celery task reports it as task state).
    Raises EmbeddingUnavailable when ML is disabled or a needed model cannot load.
    """
    if not settings.ML_ENABLED:
        raise EmbeddingUnavailable("ML is disabled (ML_ENABLED=false)")
    started = time.perf_counter()
    # Catch-up for erasures whose hook did not run: their embeddings are personal data.
    ProfileEmbedding.objects.filter(tenant=tenant, profile__status=ProfileStatus.ERASED).delete()
    # Outside the registration: a missing model fails here without leaving a failed version.
    active_profiles = _embed_active_profiles(tenant, progress=progress, on_progress=on_progress)
    directory = tenant_index_dir(tenant.slug)
    build: _Build | None = None
    try:
        with registering(
            tenant=tenant, model_type=ModelType.INDEX, created_by=created_by, parameters=_build_parameters()
        ) as handle:
            build = _build_and_save(tenant, directory, active_profiles)
            handle.artifact_path = build.path
            handle.metrics = _build_metrics(build, time.perf_counter() - started)
            handle.data_ref = _build_data_ref(build)
    except BaseException:
        if build is not None:
            shutil.rmtree(build.path, ignore_errors=True)  # never published: nothing points at it
        raise
    with _tenant_lock(directory):
        _publish(directory, build.pointer)
        _prune(directory)
    return _built(tenant, build, handle.version, time.perf_counter() - started)


def _built(tenant: Tenant, build: _Build, version: ModelVersion, seconds: float) -> IndexBuildResult:
    """The published build's result, logged."""
    result = IndexBuildResult(
        tenant_slug=tenant.slug,
        path=build.path,
        size=build.size,
        dim=build.dim,
        build_seconds=seconds,
        recall_at_10=build.recall_at_10,
        built_at=datetime.fromisoformat(build.pointer["built_at"]),
        version_id=version.id,
        version_label=version.label,
    )
    logger.info(
        "built index %s (%s, %s) for tenant %s: %d items, recall@10 %s, %.1f s",
        build.pointer["version"],
        version.label,
        version.status,
        tenant.slug,
        result.size,
        "n/a" if result.recall_at_10 is None else f"{result.recall_at_10:.3f}",
        result.build_seconds,
    )
    return result


def _build_and_save(tenant: Tenant, directory: Path, active_profiles: int) -> _Build:
    # Watermarks are read before the snapshot: a change made in between is both in the snapshot
    # and replayed as a delta, which is harmless (upserts and deletes are idempotent).
    profile_watermark = Profile.objects.filter(tenant=tenant).aggregate(m=Max("updated_at"))["m"]
    embedding_watermark = ProfileEmbedding.objects.filter(tenant=tenant).aggregate(m=Max("updated_at"))["m"]
    ids, vectors, updated = _active_vectors(tenant)
    dim = int(vectors.shape[1]) if len(ids) else embedding_dim()
    ann = AnnIndex.build(ids, vectors.reshape(len(ids), dim), _ann_config(dim))
    recall = _measure_recall(ann, ids, vectors)
    built_at = timezone.now().astimezone(UTC)
    version = built_at.strftime(_VERSION_FORMAT)
    ann.save(directory / version)
    _save_recent(directory / version, ids, updated, embedding_watermark)
    pointer = {
        "version": version,
        "path": version,
        "built_at": built_at.isoformat(),
        "size": len(ann),
        "dim": dim,
        "model_name": settings.EMBEDDING_MODEL,
        "watermark": _iso(embedding_watermark),
        "profile_watermark": _iso(profile_watermark),
        "recall_at_10": recall,
    }
    return _Build(
        path=directory / version,
        pointer=pointer,
        size=len(ann),
        dim=dim,
        recall_at_10=recall,
        active_profiles=active_profiles,
    )


def _build_parameters() -> dict[str, Any]:
    return {
        "M": settings.INDEX_M,
        "ef_construction": settings.INDEX_EF_CONSTRUCTION,
        "ef_search": settings.INDEX_EF_SEARCH,
        "embedding_model": settings.EMBEDDING_MODEL,
    }


def _build_metrics(build: _Build, seconds: float) -> dict[str, Any]:
    metrics: dict[str, Any] = {"size": build.size, "dim": build.dim, "build_seconds": round(seconds, 3)}
    if build.recall_at_10 is not None:  # an empty index has none; the admin charts want numbers only
        metrics["recall_at_10"] = build.recall_at_10
    return metrics


def _build_data_ref(build: _Build) -> dict[str, Any]:
    """What the build was made from, and what serving needs to replay the changes since."""
    return {
        "active_profiles": build.active_profiles,
        "indexed_embeddings": build.size,
        "embedding_watermark": build.pointer["watermark"],
        "profile_watermark": build.pointer["profile_watermark"],
        "built_at": build.pointer["built_at"],
        "build": build.pointer["version"],
    }


def _embed_active_profiles(tenant: Tenant, *, progress: bool, on_progress: ProgressCallback | None) -> int:
    """Embed the active profiles that need it; returns how many profiles are active."""
    ids = list(
        Profile.objects.filter(tenant=tenant, status=ProfileStatus.ACTIVE).order_by("pk").values_list("pk", flat=True)
    )
    with tqdm(total=len(ids), disable=not progress, desc=f"embeddings {tenant.slug}", unit="profile") as bar:

        def report(done: int) -> None:
            bar.update(done - bar.n)
            if on_progress is not None:
                on_progress(done, len(ids))

        embeddings_upsert(profile_ids=ids, progress=report)
    return len(ids)


def _active_vectors(tenant: Tenant) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids (n,), vectors (n, dim) float32, updated_at (n,) in µs since the epoch) of the active
    profiles' current embeddings."""
    rows = (
        ProfileEmbedding.objects.filter(
            tenant=tenant, profile__status=ProfileStatus.ACTIVE, model_name=settings.EMBEDDING_MODEL
        )
        .order_by("profile_id")
        .values_list("profile_id", "vector", "updated_at")
        .iterator(chunk_size=5_000)
    )
    ids: list[int] = []
    vectors: list[np.ndarray] = []
    updated: list[int] = []
    for pid, raw, ts in rows:
        vec = vector_from_bytes(raw)
        if vectors and len(vec) != len(vectors[0]):
            logger.warning("embedding of profile %s has dim %d, expected %d; left out", pid, len(vec), len(vectors[0]))
            continue
        ids.append(pid)
        vectors.append(vec)
        updated.append(to_micros(ts))
    if not ids:
        return np.empty(0, dtype=np.int64), np.empty((0, 0), dtype=np.float32), np.empty(0, dtype=np.int64)
    as_ids = np.asarray(ids, dtype=np.int64)
    return as_ids, np.vstack(vectors).astype(np.float32, copy=False), np.asarray(updated, dtype=np.int64)


def _save_recent(path: Path, ids: np.ndarray, updated: np.ndarray, watermark: datetime | None) -> None:
    """Record which embeddings inside the delta overlap window the build already holds.

    Serving processes replay every row in that window after loading; without this list they
    would re-insert rows the build already has, and an hnswlib update costs ~5 ms (a fresh
    insert far less): right after a bulk embedding, the whole tenant would be re-inserted.
    """
    recent = np.ones(len(ids), dtype=bool)
    if watermark is not None:
        horizon = to_micros(watermark - timedelta(seconds=settings.INDEX_DELTA_OVERLAP_SECONDS))
        recent = updated > horizon
    np.save(path / RECENT_IDS_FILE, ids[recent], allow_pickle=False)
    np.save(path / RECENT_TIMES_FILE, updated[recent], allow_pickle=False)


def _measure_recall(ann: AnnIndex, ids: np.ndarray, vectors: np.ndarray) -> float | None:
    """recall@10 of the index against brute force, on up to 200 of its own vectors as queries."""
    if len(ids) == 0:
        return None
    rng = np.random.default_rng(0)
    sample = rng.choice(len(ids), size=min(RECALL_QUERIES, len(ids)), replace=False)
    queries = vectors[sample]  # (q, dim)
    approx, _sims = ann.query(queries, k=RECALL_K)
    exact = exact_search(vectors, ids, queries, k=RECALL_K)
    return float(recall_at_k(approx, exact))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@contextlib.contextmanager
def _tenant_lock(directory: Path) -> Iterator[None]:
    """Serialise publishing between concurrent builds of one tenant (same host)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _publish(directory: Path, pointer: dict[str, Any]) -> None:
    """Point current.json at the build, atomically, unless a newer build was published already."""
    existing = read_pointer_file(directory)
    if existing is not None and str(existing.get("version", "")) > pointer["version"]:
        logger.info("index %s is older than the published %s; not published", pointer["version"], existing["version"])
        return
    fd, tmp = tempfile.mkstemp(prefix=".current-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(pointer, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, directory / POINTER_FILE)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def _build_dirs(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


def _prune(directory: Path) -> None:
    current = (read_pointer_file(directory) or {}).get("path")
    for old in _build_dirs(directory)[:-KEEP_BUILDS]:
        if old.name != current:
            shutil.rmtree(old, ignore_errors=True)
