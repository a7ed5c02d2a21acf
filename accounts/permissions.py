"""Which kind of credential may call a view."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework.permissions import BasePermission

from accounts.authentication import ApiClient

if TYPE_CHECKING:  # DRF imports its default permission classes while rest_framework.views loads
    from rest_framework.request import Request
    from rest_framework.views import APIView


BANNED_MESSAGE = "This account is banned; it may only appeal the decision (POST /api/v1/appeals)."


class IsApiClient(BasePermission):
    message = "Authentication with a service key or user token is required."

    def has_permission(self, request: Request, view: APIView) -> bool:
        if isinstance(request.user, ApiClient) and request.user.is_banned:
            self.message = BANNED_MESSAGE
            return False
        return isinstance(request.user, ApiClient)


class IsServiceKey(BasePermission):
    message = "This endpoint needs a tenant service key."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return isinstance(request.user, ApiClient) and request.user.is_service


class IsUserToken(BasePermission):
    message = "This endpoint needs a user token."

    def has_permission(self, request: Request, view: APIView) -> bool:
        if isinstance(request.user, ApiClient) and request.user.is_banned:
            self.message = BANNED_MESSAGE
            return False
        return isinstance(request.user, ApiClient) and request.user.is_user


class IsUserTokenMayBeBanned(BasePermission):
    """For the appeal endpoint: the one thing a banned user may still do."""

    message = "This endpoint needs a user token."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return isinstance(request.user, ApiClient) and request.user.is_user
