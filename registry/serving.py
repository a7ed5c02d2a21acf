"""Hot swap of the served model: a process-wide holder that follows the active version.

    ranker = ActiveModel(tenant.pk, "ranker", loader=lambda version, path: Ranker.load(path))
    current = ranker.get()          # (ModelVersion, Ranker) or None
    if current is not None:
        version, model = current

``get()`` never loads anything itself: at most every REGISTRY_REFRESH_SECONDS it asks the
database for the active version's id (one lookup in a tiny partial index; after the first time
on the refresher thread, :mod:`patra.refresher`) and, when that changed, starts a background
thread that fetches, verifies and loads the artifact. Requests keep getting the old model until
the new one is loaded, then the reference is swapped under a lock. A version that fails to load
is not retried (until another version becomes active) and the old model keeps serving;
``status()`` reports the error for health checks.
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

from patra.refresher import refresh_later
from registry.models import ModelVersion
from registry.selectors import active_version_id
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
