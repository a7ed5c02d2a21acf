"""One error shape for the whole API.

Validation errors answer 400 with field-level messages (``{"field": ["message"]}``; items of a
batch are keyed by index, as ``{"swipes": {"3": {"candidate_id": ["message"]}}}``); an unreachable
database answers 503 at once with a clear body instead of hanging or leaking a traceback.

Apps answer their own exceptions in this shape by registering a response for them at start-up
(:func:`register_exception_response`, from ``AppConfig.ready``): core sits under every app and
imports none of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError, InterfaceError, OperationalError
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)

E = TypeVar("E", bound=Exception)
ExceptionResponse = Callable[[Any], Response]

# Checked in registration order, before the shapes below: an app's exception answers as its app says.
_responses: list[tuple[type[Exception], ExceptionResponse]] = []


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request is larger than allowed."
    default_code = "payload_too_large"


def register_exception_response(exc_type: type[E], respond: Callable[[E], Response]) -> None:
    """Answer ``exc_type`` (and its subclasses) raised by a view with ``respond(exc)``.
    Registering the same pair twice (a second ``ready``) has no further effect."""
    if (exc_type, respond) not in _responses:
        _responses.append((exc_type, respond))


def field_errors_response(exc: Any) -> Response:
    """400 with a service exception's field-level ``errors`` (a dict in the shape above)."""
    return Response(exc.errors, status=status.HTTP_400_BAD_REQUEST)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    for exc_type, respond in _responses:
        if isinstance(exc, exc_type):
            return respond(exc)
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        return Response(detail, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, (OperationalError, InterfaceError)):
        logger.warning("database unavailable: %s", exc)
        return Response(
            {"detail": "The database is unavailable; retry shortly.", "code": "database_unavailable"},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )
    if isinstance(exc, DatabaseError):
        logger.exception("database error")
        return Response(
            {"detail": "The request could not be stored; nothing was changed.", "code": "database_error"},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    return drf_exception_handler(exc, context)
