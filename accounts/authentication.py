"""Bearer-key authentication for the two kinds of API credentials.

``Authorization: Bearer <key>`` carries either a tenant service key (``psk_…``) or a user token
(``put_…``). Both are stored only as SHA-256 hashes. The authenticated principal is an
:class:`ApiClient`, never a Django ``User``: API callers are services and app users, not staff.

A user token's profile is a ``recommender.Profile``: accounts sits below recommender and knows it
only through ``UserToken.profile`` and the two statuses below.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Model
from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from accounts.models import ServiceKey, Tenant, UserToken, hash_key
from core.logging import bind as bind_log_context
from core.throttling import Credential

# The values of recommender.models.ProfileStatus that change what a user token may do: a banned
# user may only appeal (accounts.permissions), an erased one may not use the API at all.
PROFILE_BANNED = "banned"
PROFILE_ERASED = "erased"


@dataclass(frozen=True)
class ApiClient(Credential):
    tenant: Tenant
    service_key: ServiceKey | None = None
    profile: Model | None = None  # a recommender.Profile, for a user token

    is_authenticated = True
    is_anonymous = False

    @property
    def is_service(self) -> bool:
        return self.service_key is not None

    @property
    def is_user(self) -> bool:
        return self.profile is not None

    @property
    def is_banned(self) -> bool:
        return self.profile is not None and self.profile.status == PROFILE_BANNED

    @property
    def ident(self) -> str:
        """A stable identity for throttling and logs (never the raw key)."""
        if self.service_key is not None:
            return f"svc:{self.service_key.pk}"
        assert self.profile is not None
        return f"usr:{self.profile.pk}"


class BearerKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ApiClient, str] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        if scheme != self.keyword or not raw.strip():
            raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <key>'.")
        client = authenticate_key(raw.strip())
        # Every later log line of this request names the tenant and the kind of credential.
        bind_log_context(tenant=client.tenant.slug, credential="service" if client.is_service else "user")
        return client, raw

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


def authenticate_key(raw: str) -> ApiClient:
    digest = hash_key(raw)
    if raw.startswith(ServiceKey.RAW_PREFIX + "_"):
        key = ServiceKey.objects.select_related("tenant").filter(key_hash=digest, revoked_at__isnull=True).first()
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked service key.")
        return ApiClient(tenant=key.tenant, service_key=key)
    if raw.startswith(UserToken.RAW_PREFIX + "_"):
        token = UserToken.objects.select_related("tenant", "profile").filter(key_hash=digest).first()
        if token is None or not token.is_valid_at(timezone.now()):
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked user token.")
        if token.profile.status == PROFILE_ERASED:
            raise exceptions.AuthenticationFailed("This account can no longer use the API.")
        # A banned user still authenticates, but permissions let them do one thing: appeal.
        return ApiClient(tenant=token.tenant, profile=token.profile)
    raise exceptions.AuthenticationFailed("Unknown key format.")
