"""What every resource module of the API shares: validating a request through its input
serializer, refusing unknown fields, and the 413 that names an over-long list's limit."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers, status
from rest_framework.exceptions import APIException, ValidationError


def validated(serializer_class: type[serializers.Serializer], data: Any, **kwargs: Any) -> dict[str, Any]:
    """``data`` through ``serializer_class`` (``kwargs``: ``instance``, ``partial``); 400 when invalid."""
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class StrictSerializer(serializers.Serializer):
    """Refuses unknown fields: a misspelt field must not be silently ignored."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                allowed = ", ".join(self.fields)
                raise ValidationError({name: [f"Unknown field; allowed: {allowed}."] for name in unknown})
        return super().to_internal_value(data)


class BatchTooLarge(APIException):
    """413 whose body names the list, the limit and what was received (numbers, not strings)."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "batch_too_large"

    def __init__(self, field: str, limit: int, received: int, what: str = "items") -> None:
        self.detail = {  # set directly: APIException would turn the numbers into strings
            "detail": f"At most {limit} {what} per request; got {received}.",
            "code": "batch_too_large",
            "field": field,
            "limit": limit,
            "received": received,
        }


def check_count(data: Any, field: str, limit: int, what: str | None = None) -> None:
    """413 before any validation when ``data[field]`` is a list longer than ``limit``."""
    value = data.get(field) if isinstance(data, dict) else None
    if isinstance(value, list) and len(value) > limit:
        raise BatchTooLarge(field, limit, len(value), what or f"items in {field}")
