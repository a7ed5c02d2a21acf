"""History backfill: an app's past impressions, swipes and matches, read from a file in chunks
(the ``import_events`` command).

* **Validation is the API's.** Each value is checked by the very serializer field the event
  endpoints use (``recommender.validation``), so a value refused there is refused here,
  with the same message. A fast path accepts the common well-formed values (a canonical UUID, an
  ISO 8601 time, a plain integer in range) without the field's overhead; anything else goes
  through the field, which decides. Ids are the app's external ids, resolved in the tenant as
  the API resolves them (erased and other tenants' profiles are unknown).
* **Duplicates** are decided by the ingestion services' unique constraints
  (``services/events.py``, history section): re-importing a file stores nothing new.
* **Retention**: impressions and swipes older than ``EVENT_RETENTION_DAYS`` would be deleted by
  the next nightly ``prune_expired_events``; they are counted as *expired* (with the oldest
  time) so the command can refuse them. Matches are kept by retention and never expire.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework import serializers

from accounts.models import Tenant
from recommender.models import MatchType, Profile, ProfileStatus, SwipeAction
from recommender.services.events import (
    HistoryResult,
    ImpressionHistoryIn,
    MatchHistoryIn,
    SwipeHistoryIn,
    impressions_store_history,
    matches_store_history,
    swipes_store_history,
)
from recommender.services.retention import PRUNED_EVENT_KINDS, event_is_expired, retention_cutoff
from recommender.services.tabular import Row, uuid_cell
from recommender.validation import (
    SWIPE_ACTIONS,
    ImpressionBatchSerializer,
    MatchItemSerializer,
    SwipeBatchSerializer,
    SwipeItemSerializer,
)

KINDS: tuple[str, ...] = ("impressions", "swipes", "matches")
# (required, optional) columns per kind; user_id / candidate_id are the app's external ids.
COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "swipes": (("user_id", "candidate_id", "action", "timestamp"), ("session_id", "duration_ms", "event_id")),
    "impressions": (
        ("user_id", "candidate_id", "timestamp"),
        ("position", "context_hash", "model_version", "experiment_arm"),
    ),
    "matches": (("user_id", "candidate_id", "timestamp"), ("match_type",)),
}
# The session of a swipe whose file gives none: part of the swipe's natural key, so a re-import
# of the same file finds the same key (a duplicate), as a re-sent API batch does.
DEFAULT_SESSION_ID = "import"
# Rows per transaction when storing: bounds the advisory locks one transaction holds (PostgreSQL's
# shared lock table is ~6,400 slots by default) and the work a failure rolls back.
STORE_TRANSACTION_ROWS = 500
_RESOLVE_CHUNK = 2_000  # external ids per lookup query
_ID_CACHE_MAX = 2_000_000  # id cells remembered as valid (a few hundred MB at most)


@dataclass
class _Parsed:
    where: str
    user: uuid.UUID
    candidate: uuid.UUID
    occurred_at: datetime
    extra: dict[str, Any]


@dataclass
class ChunkCheck:
    """One chunk, checked: storable rows, refused rows and the expired ones."""

    valid: list[SwipeHistoryIn | ImpressionHistoryIn | MatchHistoryIn] = field(default_factory=list)
    errors: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)  # (where, field errors)
    expired: int = 0
    oldest_expired: datetime | None = None


# --- Field checks: a fast path, then the API's own serializer field --------------------------


Check = Callable[[Any], Any]


def _checked(api_field: serializers.Field, fast: Callable[[Any], Any]) -> Check:
    """``fast(value)`` returns the value when it is plainly valid, else None; then the API's field
    decides (and raises DRF's ValidationError with its message)."""

    def check(value: Any) -> Any:
        out = fast(value)
        return out if out is not None else api_field.run_validation(value)

    return check


def _fast_uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _fast_int(api_field: serializers.IntegerField) -> Callable[[Any], int | None]:
    low, high = api_field.min_value, api_field.max_value

    def fast(value: Any) -> int | None:
        if isinstance(value, str) and value.isascii() and value.isdigit():
            value = int(value)
        if type(value) is int and (low is None or value >= low) and (high is None or value <= high):
            return value
        return None

    return fast


def _fast_text(api_field: serializers.CharField) -> Callable[[Any], str | None]:
    limit = api_field.max_length

    def fast(value: Any) -> str | None:
        ok = isinstance(value, str) and value and value == value.strip() and (limit is None or len(value) <= limit)
        return value if ok else None

    return fast


def _fast_choice(choices: Sequence[str]) -> Callable[[Any], str | None]:
    allowed = frozenset(choices)
    return lambda value: value if isinstance(value, str) and value in allowed else None


def _fast_time(limit: datetime) -> Callable[[Any], datetime | None]:
    """An ISO 8601 text or a datetime (Parquet) no later than ``limit``; naive means UTC, as the
    API's DateTimeField reads it (TIME_ZONE is UTC)."""

    def fast(value: Any) -> datetime | None:
        try:
            parsed = value if isinstance(value, datetime) else parse_datetime(value) if isinstance(value, str) else None
        except ValueError:  # well-formed but impossible (month 13): the field words the error
            return None
        if parsed is None:
            return None
        if timezone.is_naive(parsed):
            parsed = parsed.replace(tzinfo=UTC)
        return parsed if parsed <= limit else None

    return fast


def _field_checks(kind: str, now: datetime) -> dict[str, Check]:
    swipe, batch = SwipeItemSerializer().fields, SwipeBatchSerializer().fields
    impression, match = ImpressionBatchSerializer().fields, MatchItemSerializer().fields
    limit = now + timedelta(seconds=settings.EVENT_MAX_FUTURE_SKEW_SECONDS)
    checks: dict[str, Check] = {
        "user_id": _checked(match["user_id"], _fast_uuid),
        "candidate_id": _checked(match["candidate_id"], _fast_uuid),
        "timestamp": _checked(match["timestamp"], _fast_time(limit)),
    }
    if kind == "swipes":
        checks |= {
            "action": _checked(swipe["action"], _fast_choice(SWIPE_ACTIONS)),
            "session_id": _checked(batch["session_id"], _fast_text(batch["session_id"])),
            "duration_ms": _checked(swipe["duration_ms"], _fast_int(swipe["duration_ms"])),
            "event_id": _checked(swipe["event_id"], _fast_text(swipe["event_id"])),
        }
    elif kind == "impressions":
        position = impression["positions"].child
        checks |= {"position": _checked(position, _fast_int(position))}
        for name in ("context_hash", "model_version", "experiment_arm"):
            checks[name] = _checked(impression[name], _fast_text(impression[name]))
    else:
        checks["match_type"] = _checked(match["match_type"], _fast_choice(list(match["match_type"].choices)))
    return checks


# --- Checking a chunk --------------------------------------------------------------------------


class EventBackfill:
    """One import of one kind into one tenant. Create one per pass over the file: it numbers the
    positions of impressions given without one, in file order."""

    def __init__(self, *, tenant: Tenant, kind: str, now: datetime | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        self.tenant, self.kind = tenant, kind
        self.now = now or timezone.now()
        self.cutoff = retention_cutoff(self.now)
        self.expires = kind in PRUNED_EVENT_KINDS
        self.checks = _field_checks(kind, self.now)
        self.required = COLUMNS[kind][0]
        self._profiles: dict[uuid.UUID, int | None] = {}  # external id -> pk (None: unknown)
        self._valid_ids: dict[str, uuid.UUID] = {}  # id cells already checked -> their UUID
        self._last_screen: tuple[uuid.UUID, datetime, str] | None = None
        self._next_position = 0

    def check(self, rows: Sequence[Row]) -> ChunkCheck:
        result = ChunkCheck()
        parsed: list[_Parsed] = []
        for row in rows:
            item = self._parse(row, result)
            if item is not None:
                parsed.append(item)
        self._resolve({p.user for p in parsed} | {p.candidate for p in parsed})
        for item in parsed:
            self._admit(item, result)
        return result

    def _parse(self, row: Row, result: ChunkCheck) -> _Parsed | None:
        if row.problem:
            result.errors.append((row.where, {"row": [row.problem]}))
            return None
        values: dict[str, Any] = {}
        errors: dict[str, list[str]] = {}
        for name, check in self.checks.items():
            raw = row.values.get(name)
            if name in ("user_id", "candidate_id"):
                raw = uuid_cell(raw)
                if raw in self._valid_ids:  # a history names the same people over and over
                    values[name] = self._valid_ids[raw]
                    continue
            if raw is None:
                if name in self.required:
                    errors[name] = ["This field is required."]
                continue
            try:
                values[name] = check(raw)
            except serializers.ValidationError as exc:
                errors[name] = [str(m) for m in _messages(exc.detail)]
            else:
                if name in ("user_id", "candidate_id") and len(self._valid_ids) < _ID_CACHE_MAX:
                    self._valid_ids[raw] = values[name]
        if errors:
            result.errors.append((row.where, errors))
            return None
        user, candidate, at = values.pop("user_id"), values.pop("candidate_id"), values.pop("timestamp")
        return _Parsed(row.where, user, candidate, at, values)

    def _resolve(self, ids: set[uuid.UUID]) -> None:
        todo = [i for i in ids if i not in self._profiles]
        for start in range(0, len(todo), _RESOLVE_CHUNK):
            part = todo[start : start + _RESOLVE_CHUNK]
            found = dict(
                Profile.objects.filter(tenant=self.tenant, external_id__in=part)
                .exclude(status=ProfileStatus.ERASED)
                .values_list("external_id", "pk")
            )
            for ext in part:
                self._profiles[ext] = found.get(ext)

    def _admit(self, item: _Parsed, result: ChunkCheck) -> None:
        user, candidate = self._profiles[item.user], self._profiles[item.candidate]
        errors: dict[str, list[str]] = {}
        for name, ext, pk in (("user_id", item.user, user), ("candidate_id", item.candidate, candidate)):
            if pk is None:
                errors[name] = [f"Unknown profile {ext} in this tenant."]
        if not errors and user == candidate:
            message = "A match needs two different profiles." if self.kind == "matches" else None
            errors["candidate_id"] = [message or "A user cannot act on their own profile."]
        if errors:
            result.errors.append((item.where, errors))
            return
        assert user is not None and candidate is not None
        if self.expires and event_is_expired(item.occurred_at, cutoff=self.cutoff):
            result.expired += 1
            if result.oldest_expired is None or item.occurred_at < result.oldest_expired:
                result.oldest_expired = item.occurred_at
            return
        result.valid.append(self._event(item, user, candidate))

    def _event(self, item: _Parsed, user: int, candidate: int) -> SwipeHistoryIn | ImpressionHistoryIn | MatchHistoryIn:
        extra = item.extra
        if self.kind == "swipes":
            action = SwipeAction.PASS if extra["action"] == "reject" else extra["action"]
            return SwipeHistoryIn(
                user, candidate, str(action), item.occurred_at, extra.get("session_id") or DEFAULT_SESSION_ID,
                extra.get("duration_ms"), extra.get("event_id"),
            )  # fmt: skip
        if self.kind == "impressions":
            context = extra.get("context_hash") or ""
            position = extra.get("position")
            if position is None:
                position = self._position(item.user, item.occurred_at, context)
            return ImpressionHistoryIn(
                user, candidate, item.occurred_at, position, context,
                extra.get("model_version") or "", extra.get("experiment_arm") or "",
            )  # fmt: skip
        return MatchHistoryIn(user, candidate, item.occurred_at, str(extra.get("match_type") or MatchType.EXTERNAL))

    def _position(self, user: uuid.UUID, at: datetime, context: str) -> int:
        """Rows without a position: consecutive rows of one screen (same user, time and context)
        are numbered 0, 1, 2, ... in file order."""
        screen = (user, at, context)
        self._next_position = self._next_position + 1 if screen == self._last_screen else 0
        self._last_screen = screen
        return self._next_position

    def store(self, events: Sequence[Any]) -> HistoryResult:
        """Store checked events: on PostgreSQL one transaction per STORE_TRANSACTION_ROWS (their
        advisory locks must fit the lock table); SQLite takes no such locks and a commit costs it
        an fsync, so one per chunk (every statement inside is bounded in parameters)."""
        store = {"swipes": swipes_store_history, "impressions": impressions_store_history}.get(
            self.kind, matches_store_history
        )
        size = STORE_TRANSACTION_ROWS if connection.vendor == "postgresql" else max(len(events), 1)
        total = HistoryResult()
        for start in range(0, len(events), size):
            part = store(tenant=self.tenant, rows=events[start : start + size])
            total.created += part.created
            total.duplicates += part.duplicates
            total.matches += part.matches
        return total


def _messages(detail: Any) -> list[str]:
    if isinstance(detail, dict):
        return [m for value in detail.values() for m in _messages(value)]
    if isinstance(detail, list):
        return [m for value in detail for m in _messages(value)]
    return [str(detail)]
