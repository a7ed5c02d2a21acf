"""Reads, and the ``access_*`` helpers: the only way views get objects a credential may touch.

Every helper scopes by the caller's tenant first, so another tenant's object is simply "not
found" (404) and its existence is not revealed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError

from accounts.authentication import ApiClient
from accounts.models import Tenant
from recommender.models import Profile, ProfileStatus


def access_profile(client: ApiClient, external_id: uuid.UUID | str) -> Profile:
    """The profile ``external_id`` of the caller's tenant, if the caller may act for it: a
    service key for any profile of its tenant, a user token only for its own."""
    profile = (
        Profile.objects.filter(tenant=client.tenant, external_id=external_id)
        .exclude(status=ProfileStatus.ERASED)
        .first()
    )
    if profile is None:
        raise NotFound(f"No profile {external_id} in this tenant.")
    if client.is_user and (client.profile is None or client.profile.pk != profile.pk):
        raise PermissionDenied("A user token may only act for its own profile.")
    return profile


def access_acting_user(client: ApiClient, user_id: uuid.UUID | None) -> Profile:
    """The user an event batch is for: the token's own user, or ``user_id`` for a service key."""
    if client.is_user:
        assert client.profile is not None
        if user_id is not None and user_id != client.profile.external_id:
            raise PermissionDenied({"user_id": ["A user token may only send its own user's events."]})
        return client.profile
    if user_id is None:
        raise ValidationError({"user_id": ["This field is required with a service key."]})
    return access_profile(client, user_id)


def resolve_profiles(*, tenant: Tenant, external_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Profile]:
    """The tenant's live profiles among ``external_ids``; erased and other tenants' are absent.

    Only the keys are loaded: events need no more, and a full profile row (bio, three JSON
    columns) made this the most expensive query of a swipe batch."""
    found = (
        Profile.objects.filter(tenant=tenant, external_id__in=set(external_ids))
        .exclude(status=ProfileStatus.ERASED)
        .only("pk", "tenant_id", "external_id")
    )
    return {p.external_id: p for p in found}
