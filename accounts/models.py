"""Tenants and the API credentials of services and app users.

Every row of the other apps belongs to exactly one tenant. A service key acts for any user of its
tenant; a user token acts for one profile (``recommender.Profile``, named by a string reference:
accounts sits below recommender and does not import it).

These models were born in ``recommender`` and keep its tables (``db_table``): moving them here
changed Django's state only, never the database (accounts/migrations/0001_initial.py).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from django.db import models
from django.utils import timezone

DEFAULT_TENANT_SLUG = "default"


class Tenant(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        db_table = "recommender_tenant"
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


def hash_key(raw_key: str) -> str:
    """Keys are 256-bit random strings, so one SHA-256 is enough (no salt or stretching needed:
    there is nothing to brute-force)."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


def generate_key(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


class ServiceKey(models.Model):
    """A tenant's key for backend services. Only the hash is stored; the key is shown once."""

    RAW_PREFIX = "psk"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="service_keys")
    name = models.CharField(max_length=100)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    key_prefix = models.CharField(max_length=12, editable=False, help_text="First characters, to recognise a key.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "recommender_servicekey"
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="service_key_unique_name")]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.name} ({self.key_prefix}…)"


class UserToken(models.Model):
    """A mobile-app token scoped to one profile."""

    RAW_PREFIX = "put"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="user_tokens")
    profile = models.ForeignKey("recommender.Profile", on_delete=models.CASCADE, related_name="tokens")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    key_prefix = models.CharField(max_length=12, editable=False)
    issued_by = models.ForeignKey(ServiceKey, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "recommender_usertoken"

    def __str__(self) -> str:
        return f"token {self.key_prefix}… for {self.profile_id}"

    def is_valid_at(self, now: datetime) -> bool:
        return self.revoked_at is None and self.expires_at > now
