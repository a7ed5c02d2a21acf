"""The profiles an ML API request names, looked up once, and the error for one the tenant lacks.

Shared by the batch vectors (``recommender.vectors``) and the rankings (``recommender.feed.rank``);
``MlInputError`` answers 400 in the API's error shape (``recommender.api.error_responses``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from accounts.models import Tenant
from recommender.models import Profile, ProfileStatus
from recommender.services.embeddings import profile_embedding_text, text_hash


class MlInputError(Exception):
    """The request names something that does not exist in the tenant: field-level ``errors``
    in the API's error shape (items keyed by index). Nothing was changed."""

    def __init__(self, errors: dict[str, Any]) -> None:
        super().__init__(errors)
        self.errors = errors


@dataclass
class ResolvedProfile:
    profile: Profile
    text: str
    fresh: bool  # the stored embedding matches the configured model and the current text


def resolve_profiles(tenant: Tenant, external_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, ResolvedProfile]:
    """The tenant's (non-erased) profiles among ``external_ids``, with their embedding freshness,
    in one query (the embedding's metadata is joined, its vector is not read)."""
    ids = set(external_ids)
    if not ids:
        return {}
    rows = (
        Profile.objects.filter(tenant=tenant, external_id__in=ids)
        .exclude(status=ProfileStatus.ERASED)
        .select_related("embedding")
        .defer("embedding__vector")
    )
    out: dict[uuid.UUID, ResolvedProfile] = {}
    for profile in rows:
        text = profile_embedding_text(profile)
        stored = getattr(profile, "embedding", None)
        fresh = bool(
            text
            and stored is not None
            and stored.model_name == settings.EMBEDDING_MODEL
            and stored.text_hash == text_hash(text)
        )
        out[profile.external_id] = ResolvedProfile(profile=profile, text=text, fresh=fresh)
    return out


def unknown_profile(external_id: uuid.UUID) -> list[str]:
    return [f"No profile {external_id} in this tenant."]
