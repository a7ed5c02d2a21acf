"""The OpenAPI 3 security schemes of the bearer credentials (drf-spectacular).

Two bearer schemes, ``serviceKey`` and ``userToken``: both travel in ``Authorization: Bearer
<key>``; which one an operation accepts follows from its permission class (``IsServiceKey``,
``IsUserToken``, or either for ``IsApiClient``).

Imported by ``AccountsConfig.ready`` so the extension is registered before any schema is built.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema

from accounts.permissions import IsApiClient, IsServiceKey, IsUserToken, IsUserTokenMayBeBanned

SERVICE_KEY = "serviceKey"
USER_TOKEN = "userToken"


class BearerKeyScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.BearerKeyAuthentication"
    name = [SERVICE_KEY, USER_TOKEN]

    def get_security_definition(self, auto_schema: AutoSchema) -> list[dict[str, Any]]:
        return [
            {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "psk_...",
                "description": (
                    "A tenant service key (`python manage.py create_service_key`): acts for any "
                    "user of its tenant. For backend services only."
                ),
            },
            {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "put_...",
                "description": (
                    "A user token (`POST /internal/v1/users/{external_id}/tokens`): acts for one "
                    "profile only. For the mobile app."
                ),
            },
        ]

    def get_security_requirement(self, auto_schema: AutoSchema) -> list[dict[str, list[Any]]]:
        perms = [p.__class__ for p in auto_schema.view.get_permissions()]
        accepted: list[dict[str, list[Any]]] = []
        if any(issubclass(p, (IsServiceKey, IsApiClient)) for p in perms):
            accepted.append({SERVICE_KEY: []})
        if any(issubclass(p, (IsUserToken, IsUserTokenMayBeBanned, IsApiClient)) for p in perms):
            accepted.append({USER_TOKEN: []})
        return accepted
