"""The admin of tenants and credentials.

Keys are never shown and never created here (``manage.py create_service_key`` shows a raw key
exactly once); they change only by being revoked, through ``accounts.services``. User tokens are
read-only: the app gets them from its backend, which issues them through the API.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.models import ServiceKey, Tenant, UserToken
from accounts.services import service_key_revoke
from core.admin import PatraModelAdmin, ReadOnlyAdmin

# --- Tenants -----------------------------------------------------------------------------------


@admin.register(Tenant)
class TenantAdmin(PatraModelAdmin):
    list_display = ("slug", "name", "created_at")
    search_fields = ("slug", "name")
    readonly_fields = ("created_at",)

    def get_readonly_fields(self, request: HttpRequest, obj: Tenant | None = None) -> Sequence[str]:
        # The slug identifies the tenant in settings and scripts ("default"); fixed once created.
        return (*self.readonly_fields, "slug") if obj else self.readonly_fields


# --- Credentials -------------------------------------------------------------------------------


@admin.register(ServiceKey)
class ServiceKeyAdmin(PatraModelAdmin):
    list_display = ("name", "tenant", "key_prefix", "created_at", "revoked_at")
    list_filter = ("tenant", ("revoked_at", admin.EmptyFieldListFilter))
    list_select_related = ("tenant",)
    search_fields = ("name", "^key_prefix")
    # key_hash is never shown. Everything is read-only: a key changes only by being revoked.
    fields = ("tenant", "name", "key_prefix", "created_at", "revoked_at")
    readonly_fields = fields
    actions = ("revoke",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # The raw key must be shown exactly once: `manage.py create_service_key` does that.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ServiceKey | None = None) -> bool:
        # Revoke instead: the row stays as a record of which key issued which user tokens.
        return False

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ServiceKey]) -> None:
        keys = list(queryset.filter(revoked_at__isnull=True))
        for key in keys:
            service_key_revoke(key=key)
        self.message_user(request, f"{len(keys)} key(s) revoked.", messages.SUCCESS)


@admin.register(UserToken)
class UserTokenAdmin(ReadOnlyAdmin):
    list_display = ("key_prefix", "tenant", "profile", "created_at", "expires_at", "revoked_at")
    list_filter = ("tenant", ("revoked_at", admin.EmptyFieldListFilter))
    list_select_related = ("tenant", "profile")
    search_fields = ("=profile__external_id", "^key_prefix")
    search_help_text = "A profile's external id (UUID), or the start of a token."
    fields = ("tenant", "profile", "key_prefix", "issued_by", "created_at", "expires_at", "revoked_at")
    raw_id_fields = ("profile", "issued_by")
    ordering = ("-pk",)
