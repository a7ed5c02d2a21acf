"""Hot swap of the served model: a process-wide holder that follows the active version.

    ranker = ActiveModel(tenant.pk, "ranker", loader=lambda version, path: Ranker.load(path))
    current = ranker.get()          # (ModelVersion, Ranker) or None
    if current is not None:
        version, model = current

``get()`` never loads anything itself: at most every REGISTRY_REFRESH_SECONDS it asks the
database for the active version's id (one lookup in a tiny partial index; after the first time
on the refresher thread, :mod:`core.refresher`) and, when that changed, starts a background
thread that fetches, verifies and loads the artifact. Requests keep getting the old model until
the new one is loaded, then the reference is swapped under a lock. A version that fails to load
is not retried (until another version becomes active) and the old model keeps serving;
``status()`` reports the error for health checks.

Around it, the per-process caches every served model kind shares:

* :class:`TenantModels`: one ``ActiveModel`` per tenant for a model type, created on first use,
  whose first use per process waits (a bounded time, :func:`core.refresher.first_load_wait`) for
  the first load, so that a fresh worker's first answers use the model like later ones;
* :class:`PinnedVersions`: given versions held by label whichever is active (experiment arms),
  each loaded once in the background by a :class:`PinnedModel`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.db import close_old_connections, connections
from django.utils import timezone

from core.refresher import first_load_wait, refresh_later
from registry.models import SERVABLE, ModelVersion
from registry.selectors import active_version_id, parse_version_label
from registry.storage import artifact_store

logger = logging.getLogger(__name__)

T = TypeVar("T")
Loader = Callable[[ModelVersion, Path], T]


class ActiveModel(Generic[T]):
    def __init__(
        self, tenant_id: int, model_type: str, loader: Loader[T], *, refresh_seconds: float | None = None
    ) -> None:
        self.tenant_id = tenant_id
        self.model_type = model_type
        self.loader = loader
        self._refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._current: tuple[ModelVersion, T] | None = None
        self._loaded_at: datetime | None = None
        self._next_check = 0.0  # time.monotonic() after which the database is asked again
        self._checked_once = False  # the first check is inline, so that a first load starts at once
        self._pending: ModelVersion | None = None
        self._thread: threading.Thread | None = None
        self._failed_id: Any = None
        self._last_error: str | None = None

    @property
    def refresh_seconds(self) -> float:
        if self._refresh_seconds is not None:
            return self._refresh_seconds
        return float(settings.REGISTRY_REFRESH_SECONDS)

    def get(self) -> tuple[ModelVersion, T] | None:
        """The loaded active version and its object, or None before the first load (or when no
        version is active). Cheap: usually no query at all."""
        self._maybe_check()
        return self._current

    def status(self) -> dict[str, Any]:
        with self._lock:
            current, pending = self._current, self._pending
            return {
                "version": current[0].label if current else None,
                "version_id": str(current[0].id) if current else None,
                "loaded_at": self._loaded_at.isoformat() if self._loaded_at else None,
                "pending": pending.label if pending else None,
                "last_error": self._last_error,
            }

    def join(self, timeout: float) -> None:
        """Wait for a load in progress, without checking for a new version (tests' resets)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def wait(self, timeout: float = 30.0) -> bool:
        """Check now and wait for a load in progress (start-up warm-up, tests). True if idle."""
        self._next_check = 0.0
        self._maybe_check(inline=True)
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _maybe_check(self, *, inline: bool = False) -> None:
        now = time.monotonic()
        if now < self._next_check:
            return
        if self._checked_once and not inline:
            # Later polls run on the refresher thread: no request waits for the query.
            refresh_later(("active-model", id(self)), self._check)
        else:
            self._check()

    def _check(self) -> None:
        now = time.monotonic()
        with self._lock:
            if now < self._next_check or (self._thread is not None and self._thread.is_alive()):
                return
            self._next_check = now + self.refresh_seconds
            self._checked_once = True
        try:
            wanted = active_version_id(tenant_id=self.tenant_id, model_type=self.model_type)
        except Exception as exc:  # the database is down: keep serving what we have
            self._record_error(f"checking the active version failed: {exc}")
            return
        current_id = self._current[0].id if self._current else None
        if wanted == current_id:
            self._failed_id = None  # back on the loaded version: a later switch may retry
            return
        if wanted is not None and wanted == self._failed_id:
            return
        if wanted is None:
            # Deactivated: stop serving the model (callers fall back to their default path).
            with self._lock:
                self._current, self._loaded_at = None, timezone.now()
            return
        version = ModelVersion.objects.filter(pk=wanted).first()
        if version is None:
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._pending = version
            self._thread = threading.Thread(
                target=self._load, args=(version,), name=f"load-{version.label}", daemon=True
            )
            self._thread.start()

    def _load(self, version: ModelVersion) -> None:
        try:
            path = artifact_store().fetch(version)
            obj = self.loader(version, path)
        except Exception as exc:
            logger.exception("loading %s for tenant %s failed; still serving the previous one", version, self.tenant_id)
            with self._lock:
                self._failed_id = version.id
                self._pending = None
            self._record_error(f"{version.label}: {type(exc).__name__}: {exc}")
        else:
            with self._lock:
                self._current = (version, obj)
                self._loaded_at = timezone.now()
                self._pending = None
                self._failed_id = None
                self._last_error = None
            logger.info("now serving %s for tenant %s", version.label, self.tenant_id)
        finally:
            # A loader may have used the database from this thread: release its connection.
            close_old_connections()
            connections.close_all()

    def _record_error(self, message: str) -> None:
        with self._lock:
            self._last_error = message


class TenantModels(Generic[T]):
    """The ``ActiveModel`` of each tenant for one model type, in this process.

    ``serving()`` is what requests call: its first call per tenant waits for the first load, up
    to ``first_load_seconds`` (bounded by :func:`core.refresher.first_load_wait`); later calls
    never wait, and a new version is swapped in the background."""

    def __init__(self, model_type: str, loader: Loader[T], *, first_load_seconds: float) -> None:
        self.model_type = model_type
        self.loader = loader
        self.first_load_seconds = first_load_seconds
        self._holders: dict[int, ActiveModel[T]] = {}
        self._first_load_waited: set[int] = set()
        self._lock = threading.Lock()

    def holder(self, tenant_id: int) -> ActiveModel[T]:
        with self._lock:
            holder = self._holders.get(tenant_id)
            if holder is None:
                holder = self._holders[tenant_id] = ActiveModel(tenant_id, self.model_type, self.loader)
            return holder

    def serving(self, tenant_id: int) -> tuple[ModelVersion, T] | None:
        """The loaded active version and its object, or None (none active, or still loading)."""
        holder = self.holder(tenant_id)
        if tenant_id not in self._first_load_waited:
            self._first_load_waited.add(tenant_id)
            holder.wait(first_load_wait(self.first_load_seconds))
        return holder.get()

    def reset(self) -> list[ActiveModel[T]]:
        """Forget every holder (tests); returns them, so that a caller can join their loads."""
        with self._lock:
            holders = list(self._holders.values())
            self._holders.clear()
            self._first_load_waited.clear()
        return holders


def servable_version(tenant_id: int, model_type: str, label: str) -> ModelVersion | None:
    """The tenant's servable version of ``model_type`` called ``label`` (``ranker-v3``); None when
    the label names no such version (another model type, not servable, or not a label)."""
    parsed = parse_version_label(label)
    if parsed is None or parsed[0] != model_type:
        return None
    return ModelVersion.objects.filter(
        tenant_id=tenant_id, model_type=model_type, version=parsed[1], status__in=SERVABLE
    ).first()


class PinnedModel(Generic[T]):
    """One given version held in memory (an experiment arm's), whichever version is active.

    Loaded once by a background thread; a failed load is not retried, ``error`` says why."""

    def __init__(self, version: ModelVersion, loader: Loader[T]) -> None:
        self.version = version
        self.last_used = time.monotonic()
        self.error: str | None = None
        self.loaded: T | None = None
        self._loader = loader
        self.thread = threading.Thread(target=self._load, name=f"pinned-{version.label}", daemon=True)
        self.thread.start()

    def _load(self) -> None:
        try:
            self.loaded = self._loader(self.version, artifact_store().fetch(self.version))
        except Exception as exc:  # reported by the owner's status; the arm's users get the active model
            self.error = f"{self.version.label} (experiment arm): {type(exc).__name__}: {exc}"
            logger.exception("tenant %s: cannot load %s", self.version.tenant_id, self.error)

    def get(self, timeout: float | None) -> T | None:
        """The loaded object, waiting up to ``timeout`` (None: as long as it takes) for the load;
        None when it failed or is still loading."""
        self.last_used = time.monotonic()
        if self.thread.is_alive():
            self.thread.join(timeout)
        return self.loaded


class PinnedVersions(Generic[T]):
    """The versions of one model type held by label in this process (experiment arms).

    A label's version is looked up once and cached for good (a version never changes its number
    or its artifact). ``remember_missing`` also caches a label that names no servable version,
    so that a feed does not query for it again. A version not asked for ``idle_seconds`` (its
    experiment ended) is dropped from memory; None keeps it for the life of the process."""

    def __init__(
        self, model_type: str, loader: Loader[T], *, idle_seconds: float | None, remember_missing: bool
    ) -> None:
        self.model_type = model_type
        self.loader = loader
        self.idle_seconds = idle_seconds
        self.remember_missing = remember_missing
        self._versions: dict[tuple[int, str], ModelVersion | None] = {}
        self._pinned: dict[Any, PinnedModel[T]] = {}
        self._lock = threading.Lock()

    def version(self, tenant_id: int, label: str) -> ModelVersion | None:
        key = (tenant_id, label)
        with self._lock:
            if key in self._versions:
                return self._versions[key]
        version = servable_version(tenant_id, self.model_type, label)
        if version is not None or self.remember_missing:
            with self._lock:
                self._versions[key] = version
        return version

    def pinned(self, version: ModelVersion) -> PinnedModel[T]:
        """The holder of ``version``, started on first use."""
        now = time.monotonic()
        with self._lock:
            if self.idle_seconds is not None:
                for version_id, idle in list(self._pinned.items()):
                    if version_id != version.id and now - idle.last_used > self.idle_seconds:
                        del self._pinned[version_id]  # its experiment ended: free the memory
            pinned = self._pinned.get(version.id)
            if pinned is None:
                pinned = self._pinned[version.id] = PinnedModel(version, self.loader)
            return pinned

    def errors(self, tenant_id: int) -> list[str]:
        with self._lock:
            return [p.error for p in self._pinned.values() if p.version.tenant_id == tenant_id and p.error]

    def reset(self) -> list[threading.Thread]:
        """Forget every version (tests); returns the loader threads, for the caller to join."""
        with self._lock:
            threads = [p.thread for p in self._pinned.values()]
            self._pinned.clear()
            self._versions.clear()
        return threads
