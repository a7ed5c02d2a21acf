"""Bulk onboarding of profiles: ``POST /internal/v1/profiles/batch`` and ``import_profiles``.

Validation is the single ``POST /internal/v1/profiles``'s own, item by item: the API's
``ProfileSerializer`` (shapes and ranges; a partial one for an update) and the model's checks
(``profile_build``), so an item refused here would be refused there, with the same field-level
messages. On top of them, a batch refuses an ``external_id`` given twice (the later items) and,
unless told to skip or update them, one that already exists in the tenant.

Writes are bulk (one INSERT per 500 rows, one UPDATE for the changed ones) in one transaction,
with no per-profile hook: the derived work (embeddings, through them the serving indexes, and
safety classification) is enqueued after commit as one batched task per concern
(``services/derived.py``).

The serializer is the API layer's, imported here rather than copied: the import command must
accept exactly what the API accepts, and a second copy of the rules would drift.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from rest_framework import serializers

from accounts.models import Tenant
from recommender.models import LIFESTYLE_FIELDS, Profile, ProfileStatus
from recommender.services.derived import DerivedWork, profiles_derived_enqueue
from recommender.services.profiles import profile_apply_changes, profile_build, profiles_store
from recommender.services.tabular import uuid_cell
from recommender.validation import ProfileSerializer

Mode = Literal["all_or_nothing", "per_item"]
OnExisting = Literal["error", "skip", "update"]
MODES: tuple[str, ...] = ("all_or_nothing", "per_item")
EXISTS_MESSAGE = "A profile with this external_id already exists in this tenant."


class ProfileBatchInvalid(Exception):
    """An all-or-nothing batch with at least one bad item: nothing was stored. ``errors`` is the
    API's shape, ``{"profiles": {"3": {"age": ["..."]}}}``."""

    def __init__(self, errors: dict[str, Any]) -> None:
        super().__init__(errors)
        self.errors = errors


@dataclass
class ItemOutcome:
    index: int
    external_id: str | None  # as given, when it is a valid UUID
    status: str  # created, updated, skipped or error
    errors: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "external_id": self.external_id, "status": self.status}
        if self.errors is not None:
            out["errors"] = self.errors
        return out


@dataclass
class ProfileBatchPlan:
    """What a batch would do; nothing written yet."""

    outcomes: list[ItemOutcome] = field(default_factory=list)
    created: list[Profile] = field(default_factory=list)
    updated: list[tuple[Profile, list[str]]] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    def errors(self) -> dict[str, Any]:
        return {"profiles": {str(o.index): o.errors for o in self.outcomes if o.status == "error"}}


@dataclass
class ProfileBatchReport:
    plan: ProfileBatchPlan
    derived: DerivedWork | None
    profile_ids: list[int] = field(default_factory=list)  # pks created or updated

    def as_dict(self) -> dict[str, Any]:
        return {
            "results": [o.as_dict() for o in self.plan.outcomes],
            "created": self.plan.count("created"),
            "updated": self.plan.count("updated"),
            "failed": self.plan.count("error"),
            "enqueued": {
                "profiles": self.derived.profiles if self.derived else 0,
                "embedding_tasks": self.derived.embedding_tasks if self.derived else 0,
                "safety_tasks": self.derived.safety_tasks if self.derived else 0,
            },
        }


def _plain(errors: Any) -> Any:
    """DRF's ErrorDetail strings and ReturnDicts as plain JSON values."""
    if isinstance(errors, Mapping):
        return {str(k): _plain(v) for k, v in errors.items()}
    if isinstance(errors, list | tuple):
        return [_plain(v) for v in errors]
    return str(errors)


# The API's own reading of an external id (a UUID in any form uuid.UUID takes, or an integer):
# duplicates and existing profiles must be found under the id the serializer will store.
_EXTERNAL_ID = serializers.UUIDField()


def _external_id(item: Any) -> uuid.UUID | None:
    raw = item.get("external_id") if isinstance(item, Mapping) else None
    if raw is None:
        return None
    try:
        return _EXTERNAL_ID.to_internal_value(raw)
    except serializers.ValidationError:
        return None


def _existing(*, tenant: Tenant, ids: set[uuid.UUID], load: bool, lock: bool) -> dict[uuid.UUID, Profile]:
    """The tenant's profiles among ``ids`` (whole rows when ``load``, locked when ``lock``)."""
    if not ids:
        return {}
    rows = Profile.objects.filter(tenant=tenant, external_id__in=ids).order_by("pk")
    if not load:
        rows = rows.only("pk", "external_id", "status")
    if lock:
        rows = rows.select_for_update()
    return {p.external_id: p for p in rows}


def profiles_batch_check(
    *,
    tenant: Tenant,
    items: Sequence[Any],
    on_existing: OnExisting = "error",
    seen: Mapping[uuid.UUID, str] | None = None,
    labels: Sequence[str] | None = None,
    lock: bool = False,
) -> ProfileBatchPlan:
    """Validate every item of a batch; write nothing.

    ``seen`` maps external ids stored by earlier batches of the same import to where they were
    given (``"line 14"``), so a duplicate across batches is refused too; ``labels`` name this
    batch's items in those messages (default ``"index i"``).
    """
    ids = {i for i in (_external_id(item) for item in items) if i is not None}
    existing = _existing(tenant=tenant, ids=ids, load=on_existing == "update", lock=lock)
    plan = ProfileBatchPlan()
    first_at: dict[uuid.UUID, str] = {}
    for index, item in enumerate(items):
        ext = _external_id(item)
        label = labels[index] if labels is not None else f"index {index}"
        earlier = None
        if ext is not None:
            earlier = first_at.get(ext) or (seen.get(ext) if seen else None)
            if earlier is None:
                first_at[ext] = label
        outcome = ItemOutcome(index=index, external_id=str(ext) if ext else None, status="error")
        if earlier is not None:
            outcome.errors = {"external_id": [f"Duplicate external_id: first given at {earlier}."]}
        elif ext in existing:
            _check_existing(plan, outcome, existing[ext], item, on_existing)
        else:
            _check_new(plan, outcome, tenant, item)
        plan.outcomes.append(outcome)
    return plan


def _check_new(plan: ProfileBatchPlan, outcome: ItemOutcome, tenant: Tenant, item: Any) -> None:
    serializer = ProfileSerializer(data=item)
    if not serializer.is_valid():
        outcome.errors = _plain(serializer.errors)
        return
    try:
        profile = profile_build(tenant=tenant, data=serializer.validated_data)
    except DjangoValidationError as exc:
        outcome.errors = _plain(exc.message_dict)
        return
    plan.created.append(profile)
    outcome.status = "created"


def _check_existing(
    plan: ProfileBatchPlan, outcome: ItemOutcome, profile: Profile, item: Any, on_existing: OnExisting
) -> None:
    if on_existing == "skip":
        outcome.status = "skipped"
        return
    if on_existing == "error" or profile.status == ProfileStatus.ERASED:
        outcome.errors = {"external_id": [EXISTS_MESSAGE]}
        return
    # An update changes only the fields the item gives (as PATCH does): no default overwrites a
    # stored value, and a moderation status is kept unless the item sets one.
    serializer = ProfileSerializer(instance=profile, data=item, partial=True)
    if not serializer.is_valid():
        outcome.errors = _plain(serializer.errors)
        return
    try:
        changed = profile_apply_changes(profile=profile, data=serializer.validated_data)
    except DjangoValidationError as exc:
        outcome.errors = _plain(exc.message_dict)
        return
    if changed:
        plan.updated.append((profile, changed))
    outcome.status = "updated"


def profiles_batch_import(
    *,
    tenant: Tenant,
    items: Sequence[Any],
    mode: Mode = "all_or_nothing",
    on_existing: OnExisting = "error",
    seen: Mapping[uuid.UUID, str] | None = None,
    labels: Sequence[str] | None = None,
    enqueue: bool = True,
) -> ProfileBatchReport:
    """Validate and store a batch of profiles; enqueue their derived work after commit.

    ``all_or_nothing``: any bad item raises :class:`ProfileBatchInvalid` and nothing is stored.
    ``per_item``: the valid items are stored and the bad ones reported. Either way the answer
    has one outcome per item, in order. ``enqueue=False`` leaves the derived work to the caller
    (an import enqueues it once, after its last batch).
    """
    for attempt in (1, 2):
        try:
            with transaction.atomic():
                plan = profiles_batch_check(
                    tenant=tenant, items=items, on_existing=on_existing, seen=seen, labels=labels, lock=True
                )
                if mode == "all_or_nothing" and plan.count("error"):
                    raise ProfileBatchInvalid(plan.errors())
                profiles_store(created=plan.created, updated=plan.updated)
                touched = [p.pk for p in plan.created] + [p.pk for p, _changed in plan.updated]
                derived = None
                if touched and enqueue:
                    # one task per concern for the whole batch (PROFILE_BATCH_MAX bounds it)
                    derived = profiles_derived_enqueue(profile_ids=touched, chunk_size=len(touched))
            return ProfileBatchReport(plan=plan, derived=derived, profile_ids=touched)
        except IntegrityError:
            # Another request created one of these external ids between our read and our
            # insert (the unique constraint caught it; nothing of this attempt was stored).
            # Planning again sees it as existing.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


# --- Files (import_profiles): a row as the API's profile JSON -------------------------------------

_API_FIELDS = {name: f for name, f in ProfileSerializer().fields.items() if not f.read_only}
# Every column a profile file may have: the API's fields, plus the lifestyle attributes as
# top-level columns (merged into ``attributes``).
PROFILE_COLUMNS: tuple[str, ...] = (*_API_FIELDS, *LIFESTYLE_FIELDS)
# The columns a file of new profiles needs (the serializer's required fields).
PROFILE_REQUIRED_COLUMNS: tuple[str, ...] = tuple(name for name, f in _API_FIELDS.items() if f.required)
_LIST_COLUMNS = ("seeking", "interests")
_JSON_COLUMNS = ("prompts", "attributes")


def profile_item_from_row(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """A file row as the profile JSON the API takes, and the cells that could not be read.

    CSV cells are text: ``seeking`` and ``interests`` are ``;``-separated (``man;woman``) or a JSON
    list, ``prompts`` and ``attributes`` JSON text. Parquet may hold lists and structs natively.
    Absent values (empty cells, nulls) are left out, so the API's defaults apply.
    """
    item: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    columns: dict[str, Any] = {}  # lifestyle attributes given as their own columns
    for name, value in values.items():
        if value is None:
            continue
        try:
            if name in LIFESTYLE_FIELDS:
                columns[name] = value
            elif name in _LIST_COLUMNS:
                item[name] = _list_cell(value)
            elif name in _JSON_COLUMNS:
                item[name] = _json_cell(value)
            else:
                item[name] = uuid_cell(value) if name == "external_id" else value
        except ValueError as exc:
            errors[name] = [str(exc)]
    if columns:
        given = item.get("attributes")
        if isinstance(given, dict):
            for name in sorted(set(given) & set(columns)):
                errors[name] = ["Given both as a column and in attributes."]
            item["attributes"] = {**given, **columns}
        elif given is None:
            item["attributes"] = columns
    return item, errors


def _list_cell(value: Any) -> Any:
    if not isinstance(value, str):
        return value  # Parquet lists; the serializer checks the items
    text = value.strip()
    if text.startswith("["):
        return _json_cell(text)
    return [part.strip() for part in text.split(";") if part.strip()]


def _json_cell(value: Any) -> Any:
    if not isinstance(value, str):
        # Parquet structs carry every key of the column's type: a null there means "absent".
        return {k: v for k, v in value.items() if v is not None} if isinstance(value, dict) else value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"Not valid JSON: {exc.msg} (character {exc.pos}).") from None
