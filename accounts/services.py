"""Tenants and the API credentials of services and app users."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Model
from django.utils import timezone

from accounts.models import ServiceKey, Tenant, UserToken, generate_key, hash_key


@dataclass(frozen=True)
class IssuedKey:
    """A credential and its raw key. The raw key exists only here: it is never stored."""

    raw: str
    record: ServiceKey | UserToken


def tenant_create(*, slug: str, name: str) -> Tenant:
    tenant = Tenant(slug=slug, name=name)
    tenant.full_clean()
    tenant.save()
    return tenant


def service_key_create(*, tenant: Tenant, name: str) -> IssuedKey:
    raw = generate_key(ServiceKey.RAW_PREFIX)
    key = ServiceKey(tenant=tenant, name=name, key_hash=hash_key(raw), key_prefix=raw[:10])
    key.full_clean()
    key.save()
    return IssuedKey(raw=raw, record=key)


def service_key_revoke(*, key: ServiceKey) -> None:
    key.revoked_at = timezone.now()
    key.save(update_fields=["revoked_at"])


def user_token_issue(*, profile: Model, issued_by: ServiceKey | None = None) -> IssuedKey:
    raw = generate_key(UserToken.RAW_PREFIX)
    token = UserToken.objects.create(
        tenant_id=profile.tenant_id,
        profile=profile,
        key_hash=hash_key(raw),
        key_prefix=raw[:10],
        issued_by=issued_by,
        expires_at=timezone.now() + timedelta(days=settings.USER_TOKEN_TTL_DAYS),
    )
    return IssuedKey(raw=raw, record=token)


@transaction.atomic
def user_tokens_revoke(*, profile: Model) -> int:
    return UserToken.objects.filter(profile=profile, revoked_at__isnull=True).update(revoked_at=timezone.now())


def user_tokens_purge_expired() -> int:
    """Delete tokens that expired or were revoked more than a day ago."""
    cutoff = timezone.now() - timedelta(days=1)
    deleted, _ = UserToken.objects.filter(expires_at__lt=cutoff).delete()
    revoked, _ = UserToken.objects.filter(revoked_at__lt=cutoff).delete()
    return deleted + revoked
