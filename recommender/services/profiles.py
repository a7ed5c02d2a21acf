"""Writes to profiles: create, update, erase.

Callers pass data already validated by ``recommender.validation.ProfileSerializer`` (the
API) or produced by trusted code (the demo loader); the model's own validation runs again here
as the last guard, so nothing out of range reaches the database whatever the caller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import Tenant
from accounts.services import user_tokens_revoke
from recommender.models import LIFESTYLE_FIELDS, Profile, ProfileStatus, new_external_id
from recommender.services.hooks import on_profile_changed

# Top-level API fields that map one-to-one onto model columns (the admin's profile form edits
# the same set, plus the lifestyle attributes).
PROFILE_PLAIN_FIELDS: tuple[str, ...] = (
    "age",
    "gender",
    "seeking",
    "age_min",
    "age_max",
    "max_distance_km",
    "lat",
    "lon",
    "bio",
    "prompts",
    "interests",
    "status",
)


def _apply(profile: Profile, data: Mapping[str, Any]) -> list[str]:
    if data.get("status") == ProfileStatus.ERASED:
        raise ValueError("status 'erased' is set only by profile_erase, which also wipes the personal fields")
    changed: list[str] = []
    for name in PROFILE_PLAIN_FIELDS:
        if name in data:
            setattr(profile, name, data[name])
            changed.append(name)
    for name, value in (data.get("attributes") or {}).items():
        if name not in LIFESTYLE_FIELDS:
            raise ValueError(f"unknown attribute {name!r}")
        setattr(profile, name, value if value is not None else _empty_attribute(name))
        changed.append(name)
    return changed


def _empty_attribute(name: str) -> Any:
    return None if name == "height" else ""


@transaction.atomic
def profile_create(*, tenant: Tenant, data: Mapping[str, Any]) -> Profile:
    profile = Profile(tenant=tenant, external_id=data["external_id"])
    _apply(profile, data)
    # Field validators and clean() cover every check constraint; uniqueness is left to the
    # database so that two concurrent creates of one id cannot both pass a prior read.
    profile.full_clean(validate_unique=False, validate_constraints=False)
    profile.save()
    on_profile_changed(profile)
    return profile


@transaction.atomic
def profile_update(*, profile: Profile, data: Mapping[str, Any]) -> Profile:
    changed = _apply(profile, data)
    if not changed:
        return profile
    profile.updated_at = timezone.now()
    profile.full_clean(validate_unique=False, validate_constraints=False)
    profile.save(update_fields=[*changed, "updated_at"])
    on_profile_changed(profile)
    return profile


def _coarse_age(age: int) -> int:
    """Keep only the decade (at least 18): enough for anonymised analytics, not identifying."""
    return max(18, (age // 10) * 10)


@transaction.atomic
def profile_erase(*, profile: Profile) -> Profile:
    """Erase a profile: personal fields go, the row stays as an anonymous tombstone.

    Events keep pointing at the tombstone, whose external id is replaced by a random one, so they
    survive only in anonymised form: nothing links them back to the app's user any more. Gender
    and the age decade are kept for aggregate analytics; everything else is wiped.
    """
    profile = Profile.objects.select_for_update().get(pk=profile.pk)
    user_tokens_revoke(profile=profile)
    profile.external_id = new_external_id()
    profile.status = ProfileStatus.ERASED
    profile.erased_at = profile.updated_at = timezone.now()
    profile.age = _coarse_age(profile.age)
    profile.seeking, profile.prompts, profile.interests = [], [], []
    profile.bio = ""
    profile.lat = profile.lon = 0.0
    profile.age_min, profile.age_max, profile.max_distance_km = 18, 120, 50.0
    for name in LIFESTYLE_FIELDS:
        setattr(profile, name, _empty_attribute(name))
    profile.save()
    on_profile_changed(profile)
    return profile


def profile_set_status(*, profile: Profile, status: str) -> Profile:
    """Used by moderation: hide, ban or restore a profile, with feeds and index updated."""
    return profile_update(profile=profile, data={"status": status})


def profiles_bulk_create(*, tenant: Tenant, rows: list[Mapping[str, Any]], batch_size: int = 2_000) -> list[Profile]:
    """Create many profiles at once (demo and synthetic populations), validated like one.

    No per-profile hooks run: a bulk load is followed by a bulk rebuild of derived data
    (embeddings, index, Elo), which is far cheaper than one task per profile.
    """
    profiles: list[Profile] = []
    for data in rows:
        profile = Profile(tenant=tenant, external_id=data["external_id"])
        _apply(profile, data)
        profile.full_clean(validate_unique=False, validate_constraints=False)
        profiles.append(profile)
    with transaction.atomic():
        Profile.objects.bulk_create(profiles, batch_size=batch_size)
    if profiles and profiles[0].pk is None:  # backends that return no ids (none we support today)
        by_ext = dict(
            Profile.objects.filter(tenant=tenant, external_id__in=[p.external_id for p in profiles]).values_list(
                "external_id", "pk"
            )
        )
        for p in profiles:
            p.pk = by_ext[p.external_id]
    return profiles


# --- Bulk onboarding (recommender/services/imports.py) -------------------------------------------


def profile_build(*, tenant: Tenant, data: Mapping[str, Any]) -> Profile:
    """An unsaved profile from validated data, checked as :func:`profile_create` checks it
    (raises django's ValidationError with field messages)."""
    profile = Profile(tenant=tenant, external_id=data["external_id"])
    _apply(profile, data)
    # The tenant is a loaded row: checking that it exists would cost one query per profile.
    profile.full_clean(exclude=["tenant"], validate_unique=False, validate_constraints=False)
    return profile


def profile_apply_changes(*, profile: Profile, data: Mapping[str, Any]) -> list[str]:
    """Apply validated (partial) data to a loaded profile and check it, without saving: the changed
    column names, ``updated_at`` included when anything changed."""
    changed = _apply(profile, data)
    if changed:
        profile.updated_at = timezone.now()
        profile.full_clean(exclude=["tenant"], validate_unique=False, validate_constraints=False)
        changed.append("updated_at")
    return changed


def profiles_store(
    *, created: Sequence[Profile], updated: Sequence[tuple[Profile, list[str]]], batch_size: int = 500
) -> None:
    """Write built and changed profiles in bulk (call inside a transaction).

    No per-profile hook runs: the caller enqueues the derived work of the whole batch as one task
    per concern (recommender/services/derived.py), which is what makes bulk onboarding fast.
    Rows of ``updated`` must have been loaded with ``select_for_update`` in the same transaction:
    every changed column of the batch is written for every row, so a row must not have changed in
    between.
    """
    Profile.objects.bulk_create(list(created), batch_size=batch_size)
    if updated:
        fields = sorted({name for _profile, changed in updated for name in changed})
        Profile.objects.bulk_update([p for p, _changed in updated], fields, batch_size=batch_size)
