"""A tenant's ANN index as a serving process holds it: loaded once, kept fresh in process memory.

The builds are made by :mod:`recommender.indexing`. Serving processes (:func:`serving_index`) load
a build once and keep it fresh themselves:

* every ``INDEX_REFRESH_SECONDS`` they apply the database changes since the build's watermarks
  (new or re-embedded profiles are upserted, hidden, banned and erased ones are deleted), so a
  change reaches queries within seconds without waiting for a rebuild;
* a new build is loaded in the background and swapped in; until then, or if it cannot be loaded,
  the old one keeps serving.

Which build serves: a tenant with a registered index version is served its *active* version,
followed like every other model kind's by ``registry.serving.ActiveModel`` (polled every
REGISTRY_REFRESH_SECONDS, loaded in the background, the old one kept if the new one fails).
Tenants whose builds predate the registry have no version; for them, and only until their first
version exists, ``current.json`` (the build :mod:`recommender.indexing` published last) says
which build serves, followed by this module's own pointer path below (first load inline, later
builds loaded by a thread and swapped in on the next call). An experiment arm's version is held
separately, per version (:func:`serving_index_version`, ``registry.serving.PinnedVersions``),
whichever version is active.

Deltas are found by ``updated_at > watermark - INDEX_DELTA_OVERLAP_SECONDS``. The overlap exists
because a timestamp is taken before its transaction commits: a row can become visible with an
``updated_at`` older than rows we have already seen. Rows seen with an unchanged timestamp are
skipped, so the overlap costs a query, not repeated index writes.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from accounts.models import Tenant
from core.refresher import first_load_wait, refresh_later
from recommender.ml.ann import AnnIndex, AnnIndexLoadError
from recommender.models import Profile, ProfileEmbedding, ProfileStatus
from recommender.serving.encoder import vector_from_bytes
from registry.models import SERVABLE, ModelType, ModelVersion
from registry.serving import ActiveModel, PinnedVersions, TenantModels

logger = logging.getLogger(__name__)

# How long the first request of a process waits for an index to load before serving without it.
FIRST_LOAD_TIMEOUT = 30.0
# An experiment arm's index not asked for this long (the experiment ended) is dropped from memory.
PINNED_IDLE_SECONDS = 600.0


# --- The builds on disk (written by recommender.indexing) -------------------------------------

POINTER_FILE = "current.json"
RECENT_IDS_FILE = "recent_ids.npy"
RECENT_TIMES_FILE = "recent_updated_us.npy"


def tenant_index_dir(slug: str) -> Path:
    return Path(settings.ARTIFACT_ROOT) / "indexes" / slug


def to_micros(ts: datetime) -> int:
    """µs since the epoch: the recent-embeddings list's and the delta bookkeeping's timestamps."""
    return round(ts.timestamp() * 1_000_000)


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


def read_pointer_file(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((directory / POINTER_FILE).read_text())
    except FileNotFoundError:
        return None
    if not isinstance(data, dict):
        raise ValueError(f"{directory / POINTER_FILE} does not hold a JSON object")
    return data


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
        data = read_pointer_file(directory)
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
            if self._seen_embeddings.get(pid) != to_micros(ts)
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
            if self._seen_profiles.get(pid) == to_micros(ts):
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
            seen[pid] = to_micros(ts)
            if watermark is None or ts > watermark:
                watermark = ts
        if watermark is not None:
            horizon = to_micros(watermark - overlap)
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
        slot.registry = _registry.holder(slot.tenant_id)
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


# The registry path's holders, one per tenant; a slot takes its tenant's once a version exists.
_registry: TenantModels[ServingIndex] = TenantModels(
    ModelType.INDEX, _load_version, first_load_seconds=FIRST_LOAD_TIMEOUT
)


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


class _ArmIndex:
    """An experiment arm's loaded index version and the deltas applied to it since.

    Served only once its first deltas are applied (as the first load of a tenant); later
    requests never wait for another thread's delta refresh."""

    def __init__(self, version: ModelVersion, loaded: ServingIndex) -> None:
        self.version = version
        self._loaded = loaded
        self._served: ServingIndex | None = None  # the loaded index once its first deltas are applied
        self._next_check = 0.0
        self._lock = threading.Lock()

    def served(self) -> ServingIndex | None:
        if self._served is None:
            self._apply_deltas(blocking=True)  # the first deltas before serving, as the first load
        elif time.monotonic() >= self._next_check:
            refresh_later(("index-version", self.version.id), lambda: self._apply_deltas(blocking=False))
        return self._served

    def _apply_deltas(self, *, blocking: bool) -> None:
        if not self._lock.acquire(blocking=blocking):
            return
        try:
            now = time.monotonic()
            if self._served is None or now >= self._next_check:
                self._next_check = now + settings.INDEX_REFRESH_SECONDS
                try:
                    self._loaded.apply_deltas()
                except DatabaseError as exc:
                    logger.warning("index deltas for %s failed: %s", self.version.label, exc)
                self._served = self._loaded
        finally:
            self._lock.release()


def _load_arm(version: ModelVersion, path: Path) -> _ArmIndex:
    """The pinned loader (a loader thread: file I/O only, the requests apply the deltas)."""
    return _ArmIndex(version, _load_version(version, path))


_arms: PinnedVersions[_ArmIndex] = PinnedVersions(
    ModelType.INDEX, _load_arm, idle_seconds=PINNED_IDLE_SECONDS, remember_missing=False
)


def serving_index_version(tenant_id: int, version_label: str) -> ServingIndex | None:
    """The tenant's index version ``version_label`` (e.g. ``index-v3``, an experiment arm's),
    with deltas applied; the active index itself when that is the version asked for. None when
    the version does not exist, is not an index version, or cannot be loaded."""
    version = _arms.version(tenant_id, version_label)
    if version is None:
        return None
    active = serving_index(tenant_id)
    if active is not None and active.version_id == version.id:
        return active  # one copy in memory for the arm that runs the active version
    # Loaded by a background thread; the first request for it waits for that load (as the first
    # request of a tenant does).
    arm = _arms.pinned(version).get(first_load_wait(FIRST_LOAD_TIMEOUT))
    return arm.served() if arm is not None else None


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
    errors += _arms.errors(tenant_id)
    return "; ".join(e for e in errors if e) or None


def index_reset_for_tests() -> None:
    """Forget every loaded index and wait for loader threads (tests only)."""
    global _generation
    with _slots_lock:
        _generation += 1
        threads = [*_loaders, *_arms.reset()]
        # The holders' loads are joined so that no load of a previous test still writes into its
        # (deleted) artifact cache.
        holders = _registry.reset()
        _slots.clear()
        _loaders.clear()
    for thread in threads:
        thread.join(timeout=10)
    for holder in holders:
        holder.join(timeout=10)
