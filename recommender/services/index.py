"""Per-tenant ANN index over bio embeddings: built by a worker, served from process memory.

Building (:func:`index_build`, hourly and on demand) writes a new immutable build under
``ARTIFACT_ROOT/indexes/<tenant_slug>/<UTC timestamp>/`` and then repoints ``current.json`` at it.
Serving processes (:func:`serving_index`) load the build once and keep it fresh themselves:

* every ``INDEX_REFRESH_SECONDS`` they apply the database changes since the build's watermarks
  (new or re-embedded profiles are upserted, hidden, banned and erased ones are deleted), so a
  change reaches queries within seconds without waiting for a rebuild;
* when ``current.json`` points at another build, a background thread loads it and the next call
  swaps it in; until then, or if it cannot be loaded, the old one keeps serving.

Every build is also registered in the model registry as an ``index`` version (the build
directory is its artifact). The first version of a tenant activates itself; later ones serve only
once an ML admin activates them. A tenant with a registered index version is served its *active*
version (``registry.serving.ActiveModel``: polled every REGISTRY_REFRESH_SECONDS, loaded in the
background, the old one kept if the new one fails); ``current.json`` only serves tenants whose
builds predate the registry. An experiment arm's version is held separately, per version
(:func:`serving_index_version`), whichever version is active.

Deltas are found by ``updated_at > watermark - INDEX_DELTA_OVERLAP_SECONDS``. The overlap exists
because a timestamp is taken before its transaction commits: a row can become visible with an
``updated_at`` older than rows we have already seen. Rows seen with an unchanged timestamp are
skipped, so the overlap costs a query, not repeated index writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import DatabaseError
from django.db.models import Max
from django.utils import timezone
from tqdm import tqdm

from patra.refresher import first_load_wait, refresh_later
from recommender.ml.ann import AnnConfig, AnnIndex, AnnIndexLoadError, exact_search, recall_at_k
from recommender.models import Profile, ProfileEmbedding, ProfileStatus, Tenant
from recommender.services.embeddings import (
    EmbeddingUnavailable,
    embedding_dim,
    embeddings_upsert,
    vector_from_bytes,
)
from registry.models import SERVABLE, ModelType, ModelVersion
from registry.services import registering
from registry.serving import ActiveModel
from registry.storage import artifact_store

logger = logging.getLogger(__name__)

POINTER_FILE = "current.json"
RECENT_IDS_FILE = "recent_ids.npy"
RECENT_TIMES_FILE = "recent_updated_us.npy"
KEEP_BUILDS = 3
RECALL_QUERIES = 200
RECALL_K = 10
_VERSION_FORMAT = "%Y%m%dT%H%M%S.%fZ"  # sorts like the time it encodes
DEFAULT_CREATED_BY = "task:build_index"
# How long the first request of a process waits for an index to load before serving without it.
FIRST_LOAD_TIMEOUT = 30.0
# An experiment arm's index not asked for this long (the experiment ended) is dropped from memory.
PINNED_IDLE_SECONDS = 600.0


def tenant_index_dir(slug: str) -> Path:
    return Path(settings.ARTIFACT_ROOT) / "indexes" / slug


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
    version = handle.version
    result = IndexBuildResult(
        tenant_slug=tenant.slug,
        path=build.path,
        size=build.size,
        dim=build.dim,
        build_seconds=time.perf_counter() - started,
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
        updated.append(_to_micros(ts))
    if not ids:
        return np.empty(0, dtype=np.int64), np.empty((0, 0), dtype=np.float32), np.empty(0, dtype=np.int64)
    as_ids = np.asarray(ids, dtype=np.int64)
    return as_ids, np.vstack(vectors).astype(np.float32, copy=False), np.asarray(updated, dtype=np.int64)


def _to_micros(ts: datetime) -> int:
    return round(ts.timestamp() * 1_000_000)


def _save_recent(path: Path, ids: np.ndarray, updated: np.ndarray, watermark: datetime | None) -> None:
    """Record which embeddings inside the delta overlap window the build already holds.

    Serving processes replay every row in that window after loading; without this list they
    would re-insert rows the build already has, and an hnswlib update costs ~5 ms (a fresh
    insert far less): right after a bulk embedding, the whole tenant would be re-inserted.
    """
    recent = np.ones(len(ids), dtype=bool)
    if watermark is not None:
        horizon = _to_micros(watermark - timedelta(seconds=settings.INDEX_DELTA_OVERLAP_SECONDS))
        recent = updated > horizon
    np.save(path / RECENT_IDS_FILE, ids[recent], allow_pickle=False)
    np.save(path / RECENT_TIMES_FILE, updated[recent], allow_pickle=False)


def _load_recent(path: Path) -> dict[int, int]:
    """id -> updated_at (µs) of the build's recent embeddings; empty if the files are missing."""
    try:
        ids = np.load(path / RECENT_IDS_FILE, allow_pickle=False)
        times = np.load(path / RECENT_TIMES_FILE, allow_pickle=False)
    except FileNotFoundError:
        return {}  # only costs re-inserting the window's rows
    if ids.shape != times.shape or ids.ndim != 1:
        raise AnnIndexLoadError(f"{path} has inconsistent {RECENT_IDS_FILE} and {RECENT_TIMES_FILE}")
    return dict(zip(ids.tolist(), times.tolist(), strict=True))


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
    existing = _read_pointer_file(directory)
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


def _read_pointer_file(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((directory / POINTER_FILE).read_text())
    except FileNotFoundError:
        return None
    if not isinstance(data, dict):
        raise ValueError(f"{directory / POINTER_FILE} does not hold a JSON object")
    return data


def _build_dirs(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


def _prune(directory: Path) -> None:
    current = (_read_pointer_file(directory) or {}).get("path")
    for old in _build_dirs(directory)[:-KEEP_BUILDS]:
        if old.name != current:
            shutil.rmtree(old, ignore_errors=True)


# --- Serving ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pointer:
    version: str
    path: Path
    built_at: datetime
    model_name: str
    dim: int
    embedding_watermark: datetime | None
    profile_watermark: datetime | None
    version_id: uuid.UUID | None = None  # set when the build is a registry version

    @classmethod
    def read(cls, directory: Path) -> _Pointer | None:
        """The published build, None if there is none; ValueError if current.json is unusable."""
        data = _read_pointer_file(directory)
        if data is None:
            return None
        try:
            name = str(data["path"])
            if Path(name).name != name or name.startswith("."):
                raise ValueError(f"build path {name!r} is not a plain directory name")
            return cls(
                version=str(data["version"]),
                path=directory / name,
                built_at=datetime.fromisoformat(data["built_at"]),
                model_name=str(data["model_name"]),
                dim=int(data["dim"]),
                embedding_watermark=_parse_optional(data.get("watermark")),
                profile_watermark=_parse_optional(data.get("profile_watermark")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{directory / POINTER_FILE} is invalid: {exc}") from exc


def _parse_optional(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class ServingIndex:
    """One loaded build plus the deltas applied to it since; queries are thread-safe."""

    def __init__(
        self, *, tenant_id: int, pointer: _Pointer, ann: AnnIndex, recent: dict[int, int] | None = None
    ) -> None:
        self.tenant_id = tenant_id
        self.version = pointer.version  # the registry label (index-v3), or the build's time stamp
        self.version_id = pointer.version_id  # None for a build served through current.json
        self.built_at = pointer.built_at
        self.model_name = pointer.model_name
        self.dim = pointer.dim
        self._ann = ann
        self._embedding_watermark = pointer.embedding_watermark
        self._profile_watermark = pointer.profile_watermark
        # id -> updated_at (µs since the epoch) already applied, for rows inside the overlap window
        self._seen_embeddings: dict[int, int] = dict(recent or {})
        self._seen_profiles: dict[int, int] = {}

    @property
    def size(self) -> int:
        return len(self._ann)

    def __contains__(self, profile_id: int) -> bool:
        return profile_id in self._ann

    def query(self, vectors: np.ndarray, k: int, exclude: set[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids (q, k') int64, cosine similarities (q, k') float32), best first."""
        return self._ann.query(vectors, k, exclude)

    def vectors(self, profile_ids: Sequence[int]) -> dict[int, np.ndarray]:
        """Stored unit vectors of the indexed ``profile_ids`` (others absent), from memory: as
        fresh as the last delta refresh, and no cache or database round trip."""
        found, matrix = self._ann.get_vectors(profile_ids)  # (m,), (m, d)
        return dict(zip(found.tolist(), matrix, strict=True))

    def vector_matrix(self, profile_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(vectors (n, d) float32, zero rows where not indexed; present (n,) bool), in order."""
        return self._ann.get_matrix(profile_ids)

    # Deltas run under the holder's lock (the tenant's slot, or a pinned version): one thread at
    # a time per index.

    def apply_deltas(self) -> None:
        overlap = timedelta(seconds=settings.INDEX_DELTA_OVERLAP_SECONDS)
        self._apply_embedding_changes(overlap)
        self._apply_profile_changes(overlap)

    def _apply_embedding_changes(self, overlap: timedelta) -> None:
        rows = ProfileEmbedding.objects.filter(
            tenant_id=self.tenant_id,
            model_name=self.model_name,
            dim=self.dim,
            profile__status=ProfileStatus.ACTIVE,
        )
        if self._embedding_watermark is not None:
            rows = rows.filter(updated_at__gt=self._embedding_watermark - overlap)
        # Timestamps first, vectors only for rows not applied yet: most of the window is.
        fresh = [
            (pid, ts)
            for pid, ts in rows.values_list("profile_id", "updated_at")
            if self._seen_embeddings.get(pid) != _to_micros(ts)
        ]
        if fresh:
            self._add_stored([pid for pid, _ts in fresh], active_only=True)
        self._embedding_watermark = self._advance(self._seen_embeddings, fresh, self._embedding_watermark, overlap)

    def _apply_profile_changes(self, overlap: timedelta) -> None:
        # One LEFT JOIN tells whether each changed profile still has a usable embedding.
        rows = Profile.objects.filter(tenant_id=self.tenant_id)
        if self._profile_watermark is not None:
            rows = rows.filter(updated_at__gt=self._profile_watermark - overlap)
        fresh: list[tuple[int, datetime]] = []
        gone: list[int] = []
        usable: list[int] = []
        for pid, status, ts, model in rows.values_list("pk", "status", "updated_at", "embedding__model_name"):
            if self._seen_profiles.get(pid) == _to_micros(ts):
                continue
            fresh.append((pid, ts))
            if status == ProfileStatus.ACTIVE and model == self.model_name:
                usable.append(pid)
            else:
                gone.append(pid)  # hidden, banned, erased, or its text was emptied
        self._ann.mark_deleted(gone)
        # Active again (a moderator restored it) with an unchanged embedding: no embedding delta
        # brings it back, so re-add it from its stored row.
        restored = [pid for pid in usable if pid not in self._ann]
        if restored:
            self._add_stored(restored, active_only=False)
        self._profile_watermark = self._advance(self._seen_profiles, fresh, self._profile_watermark, overlap)

    def _add_stored(self, profile_ids: list[int], *, active_only: bool) -> None:
        rows = ProfileEmbedding.objects.filter(profile_id__in=profile_ids, model_name=self.model_name, dim=self.dim)
        if active_only:
            # re-checked: the profile may have been hidden since the timestamps were read
            rows = rows.filter(profile__status=ProfileStatus.ACTIVE)
        found = list(rows.values_list("profile_id", "vector"))
        if found:
            self._ann.add([pid for pid, _r in found], np.vstack([vector_from_bytes(r) for _p, r in found]))

    @staticmethod
    def _advance(
        seen: dict[int, int], fresh: list[tuple[int, datetime]], watermark: datetime | None, overlap: timedelta
    ) -> datetime | None:
        for pid, ts in fresh:
            seen[pid] = _to_micros(ts)
            if watermark is None or ts > watermark:
                watermark = ts
        if watermark is not None:
            horizon = _to_micros(watermark - overlap)
            for pid in [pid for pid, us in seen.items() if us <= horizon]:
                del seen[pid]  # below the window: the query cannot return it again
        return watermark


@dataclass
class _Slot:
    """A tenant's serving state in this process."""

    tenant_id: int
    slug: str | None = None
    current: ServingIndex | None = None  # what requests get: deltas are applied before it is set
    pending: ServingIndex | None = None  # current.json path: loaded in the background, swapped in next call
    loading_version: str | None = None
    failed_version: str | None = None
    last_error: str | None = None
    next_check: float = 0.0  # time.monotonic() of the next refresh
    # Set once the registry holds an index version of the tenant; current.json is ignored from then on.
    registry: ActiveModel[ServingIndex] | None = None
    registry_error: str | None = None  # the last failure to ask the registry about the tenant
    adopted: ServingIndex | None = None  # the holder's object that ``current`` was last taken from
    waited_first_load: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


_slots: dict[int, _Slot] = {}
_slots_lock = threading.Lock()
_loaders: list[threading.Thread] = []
_generation = 0  # bumped by index_reset_for_tests so stale loader threads drop their result


def _slot(tenant_id: int) -> _Slot:
    with _slots_lock:
        slot = _slots.get(tenant_id)
        if slot is None:
            slot = _slots[tenant_id] = _Slot(tenant_id=tenant_id)
        return slot


def serving_index(tenant_id: int) -> ServingIndex | None:
    """The tenant's loaded index, refreshed at most every INDEX_REFRESH_SECONDS; None if no build."""
    slot = _slot(tenant_id)
    if slot.current is None:
        # The first load blocks so that concurrent first requests all get the index.
        if _due(slot):
            _refresh_unless_running(slot, blocking=True)
    elif _due(slot):
        # Later refreshes run on the refresher thread: no request waits for deltas or a swap.
        refresh_later(("index", tenant_id), lambda: _refresh_unless_running(slot, blocking=False))
    return slot.current


def _refresh_unless_running(slot: _Slot, *, blocking: bool) -> None:
    if slot.lock.acquire(blocking=blocking):
        try:
            _refresh(slot)
        finally:
            slot.lock.release()


def _due(slot: _Slot) -> bool:
    if slot.pending is not None or time.monotonic() >= slot.next_check:
        return True
    # Cheap: the holder asks the database at most every REGISTRY_REFRESH_SECONDS.
    return slot.registry is not None and _held(slot.registry) is not slot.adopted


def _held(holder: ActiveModel[ServingIndex]) -> ServingIndex | None:
    got = holder.get()
    return got[1] if got is not None else None


def _refresh(slot: _Slot) -> None:
    now = time.monotonic()
    deltas_due = now >= slot.next_check  # False when another thread refreshed while we waited
    if deltas_due:
        slot.next_check = now + settings.INDEX_REFRESH_SECONDS
    if slot.registry is None and deltas_due and _registry_holds_index(slot):
        slot.registry = ActiveModel(slot.tenant_id, ModelType.INDEX, _load_version)
        slot.pending = None  # a current.json build loaded meanwhile is not wanted any more
    swapped = _follow_registry(slot) if slot.registry is not None else _follow_pointer(slot, deltas_due)
    if slot.current is not None and (deltas_due or swapped):
        try:
            slot.current.apply_deltas()
        except DatabaseError as exc:
            # Keep serving what we have; the next refresh retries from the same watermarks.
            logger.warning("index deltas for tenant %s failed: %s", slot.tenant_id, exc)


def _registry_holds_index(slot: _Slot) -> bool:
    """Whether the tenant has a usable registry index version (then the registry decides what serves)."""
    try:
        held = ModelVersion.objects.filter(
            tenant_id=slot.tenant_id, model_type=ModelType.INDEX, status__in=SERVABLE
        ).exists()
    except DatabaseError as exc:
        slot.registry_error = f"cannot read the model registry: {exc}"
        logger.error("tenant %s: %s", slot.tenant_id, slot.registry_error)
        return False
    slot.registry_error = None
    return held


def _follow_registry(slot: _Slot) -> bool:
    """Take the registry holder's newly loaded version, if any; True when ``current`` changed to it."""
    holder = slot.registry
    assert holder is not None
    if slot.current is None and not slot.waited_first_load:
        # Nothing to serve yet in this process: wait for the first load, like the current.json
        # path does, instead of answering the first requests without an index.
        slot.waited_first_load = True
        holder.wait(first_load_wait(FIRST_LOAD_TIMEOUT))
    fresh = _held(holder)
    if fresh is slot.adopted:
        return False
    previous, slot.adopted = slot.adopted, fresh
    if fresh is None:
        # Deactivated. A current.json build still serving (the registry never loaded one) stays.
        if slot.current is previous:
            slot.current = None
            logger.info("tenant %s has no active index version any more", slot.tenant_id)
        return False
    slot.current = fresh
    slot.last_error = None
    logger.info("tenant %s now serves index %s (%d items)", slot.tenant_id, fresh.version, fresh.size)
    return True


def _follow_pointer(slot: _Slot, deltas_due: bool) -> bool:
    """The current.json path (builds made before the registry); True when ``current`` changed."""
    swapped = False
    if slot.pending is not None:
        slot.current, slot.pending = slot.pending, None
        swapped = True
        logger.info("tenant %s now serves index %s", slot.tenant_id, slot.current.version)
    if not (deltas_due or swapped):
        return False
    if slot.slug is None:
        slot.slug = Tenant.objects.filter(pk=slot.tenant_id).values_list("slug", flat=True).first()
        if slot.slug is None:
            return swapped
    try:
        pointer = _Pointer.read(tenant_index_dir(slot.slug))
    except (OSError, ValueError) as exc:
        _record_error(slot, f"cannot read the index pointer: {exc}")
        pointer = None
    if slot.current is None:
        if pointer is not None and pointer.version != slot.failed_version:
            _load_now(slot, pointer)
            swapped = slot.current is not None
    elif pointer is not None and pointer.version not in _known_versions(slot):
        _start_loader(slot, pointer)
    return swapped


def _known_versions(slot: _Slot) -> set[str | None]:
    """Versions not worth (re)loading: served, being loaded, or already failed."""
    return {slot.current.version if slot.current else None, slot.loading_version, slot.failed_version}


def _load(tenant_id: int, pointer: _Pointer) -> ServingIndex:
    ann = AnnIndex.load(pointer.path)
    if ann.cfg.dim != pointer.dim:
        raise AnnIndexLoadError(f"{pointer.path} has dim {ann.cfg.dim}, its build record says {pointer.dim}")
    return ServingIndex(tenant_id=tenant_id, pointer=pointer, ann=ann, recent=_load_recent(pointer.path))


def _load_version(version: ModelVersion, path: Path) -> ServingIndex:
    """The registry loader: ``path`` is the verified, unpacked build directory of ``version``.
    File I/O only, no database (it runs in a loader thread): the caller applies the deltas."""
    return _load(version.tenant_id, _registry_pointer(version, path))


def _registry_pointer(version: ModelVersion, path: Path) -> _Pointer:
    if version.model_type != ModelType.INDEX:
        raise AnnIndexLoadError(f"{version.label} is not an index version")
    try:
        return _Pointer(
            version=version.label,
            path=path,
            built_at=datetime.fromisoformat(version.data_ref["built_at"]),
            model_name=str(version.parameters["embedding_model"]),
            dim=int(version.metrics["dim"]),
            embedding_watermark=_parse_optional(version.data_ref.get("embedding_watermark")),
            profile_watermark=_parse_optional(version.data_ref.get("profile_watermark")),
            version_id=version.id,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise AnnIndexLoadError(f"{version.label} lacks the build record serving needs: {exc!r}") from exc


def _load_now(slot: _Slot, pointer: _Pointer) -> None:
    try:
        slot.current = _load(slot.tenant_id, pointer)
    except Exception as exc:  # whatever breaks a load, the request must get None, not a 500
        slot.failed_version = pointer.version
        _record_error(slot, f"cannot load index {pointer.version}: {exc}")
        return
    slot.last_error = None
    logger.info("tenant %s loaded index %s (%d items)", slot.tenant_id, pointer.version, slot.current.size)


def _start_loader(slot: _Slot, pointer: _Pointer) -> None:
    slot.loading_version = pointer.version
    thread = threading.Thread(
        target=_load_in_background,
        args=(slot, pointer, _generation),
        name=f"index-loader-{slot.tenant_id}",
        daemon=True,
    )
    _loaders[:] = [t for t in _loaders if t.is_alive()]
    _loaders.append(thread)
    thread.start()


def _load_in_background(slot: _Slot, pointer: _Pointer, generation: int) -> None:
    # File I/O only, no database: the calling thread applies deltas after the swap.
    try:
        loaded: ServingIndex | None = _load(slot.tenant_id, pointer)
        error = None
    except Exception as exc:  # a loader thread must never die silently
        loaded, error = None, f"cannot load index {pointer.version}: {exc}"
    with slot.lock:
        if generation != _generation or slot.registry is not None:
            return  # reset by a test, or the registry serves the tenant now
        slot.loading_version = None
        if loaded is None:
            slot.failed_version = pointer.version
            _record_error(slot, error or "unknown error")
        else:
            slot.pending = loaded
            slot.last_error = None


def _record_error(slot: _Slot, message: str) -> None:
    slot.last_error = message
    logger.error("tenant %s: %s", slot.tenant_id, message)


# --- A given version (experiment arms) ----------------------------------------------------------


class _PinnedIndex:
    """One registry index version held in memory for an experiment arm, whichever is active.

    Loaded by a background thread; the first request for it waits for that load (as the first
    request of a tenant does), later ones never wait for another thread's delta refresh."""

    def __init__(self, version: ModelVersion) -> None:
        self.version = version
        self.last_used = time.monotonic()
        self.error: str | None = None
        self._loaded: ServingIndex | None = None
        self._served: ServingIndex | None = None  # the loaded index once its first deltas are applied
        self._next_check = 0.0
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._load, name=f"index-{version.label}", daemon=True)
        self.thread.start()

    def _load(self) -> None:
        try:
            self._loaded = _load_version(self.version, artifact_store().fetch(self.version))
        except Exception as exc:  # reported by index_status; the arm's users get the active index
            self.error = f"{self.version.label} (experiment arm): {type(exc).__name__}: {exc}"
            logger.error("tenant %s: cannot load %s", self.version.tenant_id, self.error)

    def get(self) -> ServingIndex | None:
        self.last_used = time.monotonic()
        if self._served is None and self.thread.is_alive():
            self.thread.join(first_load_wait(FIRST_LOAD_TIMEOUT))
        if self._loaded is None:
            return None
        if self._served is None:
            self._apply_deltas(blocking=True)  # the first deltas before serving, as the first load
        elif time.monotonic() >= self._next_check:
            refresh_later(("index-version", self.version.id), lambda: self._apply_deltas(blocking=False))
        return self._served

    def _apply_deltas(self, *, blocking: bool) -> None:
        loaded = self._loaded
        if loaded is None or not self._lock.acquire(blocking=blocking):
            return
        try:
            now = time.monotonic()
            if self._served is None or now >= self._next_check:
                self._next_check = now + settings.INDEX_REFRESH_SECONDS
                try:
                    loaded.apply_deltas()
                except DatabaseError as exc:
                    logger.warning("index deltas for %s failed: %s", self.version.label, exc)
                self._served = loaded
        finally:
            self._lock.release()


_pinned: dict[uuid.UUID, _PinnedIndex] = {}
_versions_by_label: dict[tuple[int, str], ModelVersion] = {}


def serving_index_version(tenant_id: int, version_label: str) -> ServingIndex | None:
    """The tenant's index version ``version_label`` (e.g. ``index-v3``, an experiment arm's),
    with deltas applied; the active index itself when that is the version asked for. None when
    the version does not exist, is not an index version, or cannot be loaded."""
    version = _version_by_label(tenant_id, version_label)
    if version is None:
        return None
    active = serving_index(tenant_id)
    if active is not None and active.version_id == version.id:
        return active  # one copy in memory for the arm that runs the active version
    return _pinned_for(version).get()


def _version_by_label(tenant_id: int, label: str) -> ModelVersion | None:
    key = (tenant_id, label)
    cached = _versions_by_label.get(key)
    if cached is not None:
        return cached
    prefix = f"{ModelType.INDEX.value}-v"  # ModelVersion.label is "<model type>-v<number>"
    number = label.removeprefix(prefix)
    if not label.startswith(prefix) or not number.isdigit():
        return None
    version = ModelVersion.objects.filter(
        tenant_id=tenant_id, model_type=ModelType.INDEX, version=int(number), status__in=SERVABLE
    ).first()
    if version is not None:  # a version never changes its number or its artifact: cache for good
        with _slots_lock:
            _versions_by_label[key] = version
    return version


def _pinned_for(version: ModelVersion) -> _PinnedIndex:
    now = time.monotonic()
    with _slots_lock:
        for version_id, idle in list(_pinned.items()):
            if version_id != version.id and now - idle.last_used > PINNED_IDLE_SECONDS:
                del _pinned[version_id]  # its experiment ended: free the memory
        pinned = _pinned.get(version.id)
        if pinned is None:
            pinned = _pinned[version.id] = _PinnedIndex(version)
        return pinned


# --- Health and tests --------------------------------------------------------------------------------


def index_status(tenant_id: int) -> dict[str, Any]:
    """What this process serves for the tenant, for health checks (never loads anything)."""
    slot = _slots.get(tenant_id)
    current = slot.current if slot is not None else None
    return {
        "loaded": current is not None,
        "version": current.version if current else None,
        "size": current.size if current else 0,
        "built_at": current.built_at.isoformat() if current else None,
        "age_seconds": (timezone.now() - current.built_at).total_seconds() if current else None,
        "last_error": _last_error(tenant_id, slot),
    }


def index_statuses() -> dict[int, dict[str, Any]]:
    """``index_status`` of every tenant this process has touched, for the health endpoint."""
    with _slots_lock:
        tenant_ids = list(_slots)
    return {tenant_id: index_status(tenant_id) for tenant_id in tenant_ids}


def _last_error(tenant_id: int, slot: _Slot | None) -> str | None:
    errors: list[str | None] = []
    if slot is not None:
        errors.append(slot.registry_error)
        # The holder's error names the version that failed and clears once a load succeeds.
        errors.append(slot.registry.status()["last_error"] if slot.registry is not None else slot.last_error)
    with _slots_lock:
        errors += [p.error for p in _pinned.values() if p.version.tenant_id == tenant_id]
    return "; ".join(e for e in errors if e) or None


def index_reset_for_tests() -> None:
    """Forget every loaded index and wait for loader threads (tests only)."""
    global _generation
    with _slots_lock:
        _generation += 1
        threads = [*_loaders, *(p.thread for p in _pinned.values())]
        # The holder's loader thread is private to registry.serving; joined so that no load of a
        # previous test still writes into its (deleted) artifact cache.
        threads += [s.registry._thread for s in _slots.values() if s.registry is not None and s.registry._thread]
        _slots.clear()
        _pinned.clear()
        _versions_by_label.clear()
        _loaders.clear()
    for thread in threads:
        thread.join(timeout=10)
