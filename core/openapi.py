"""OpenAPI 3 helpers shared by every app's ``extend_schema`` (drf-spectacular).

* The error shapes every endpoint shares, as components added by a post-processing hook
  (:func:`add_error_components`, in ``SPECTACULAR_SETTINGS``): ``Error``
  (``{"detail": ..., "code": ...}``), ``ValidationError`` (field-level messages, items of a batch
  keyed by index) and ``PayloadTooLarge`` (413 with the limit).
* :func:`errors` builds the ``responses`` entries for the error codes of an operation,
  :data:`AUTH_ERRORS` lists those every authenticated endpoint can answer, and
  :data:`RETRY_AFTER` documents the ``Retry-After`` header of 429 and 503 answers.

The security schemes of the bearer credentials live with their authentication, in
``accounts/openapi.py``.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

_DETAIL = {"type": "string", "description": "What went wrong, for a person to read."}
COMPONENTS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "description": (
            "A refused request: `detail` says why. 401 (no or bad credential), 403 (wrong credential "
            "kind, or another user's data), 404, 429 (throttled) and 503 answer this shape; a 403 on "
            "a field names the field instead, like a validation error."
        ),
        "properties": {
            "detail": _DETAIL,
            "code": {"type": "string", "description": "A stable machine-readable code, where there is one."},
        },
        "additionalProperties": True,
    },
    "ValidationError": {
        "type": "object",
        "description": (
            'Field-level messages: `{"field": ["message"]}`; items of a batch are keyed by their '
            'index, as `{"swipes": {"3": {"candidate_id": ["message"]}}}`. Nothing of a '
            "refused request is stored."
        ),
        "additionalProperties": True,
        "example": {"texts": {"2": ["At most 2000 characters per text; got 2412."]}},
    },
    "PayloadTooLarge": {
        "type": "object",
        "description": "More items than one request may carry (413): the body names the field and the limit.",
        "properties": {
            "detail": _DETAIL,
            "code": {"type": "string", "enum": ["batch_too_large"]},
            "field": {"type": "string", "description": "The list that is too long."},
            "limit": {"type": "integer", "description": "The most items allowed."},
            "received": {"type": "integer", "description": "How many items the request carried."},
        },
        "required": ["detail", "code", "field", "limit", "received"],
        "example": {
            "detail": "At most 128 items in texts per request; got 200.",
            "code": "batch_too_large",
            "field": "texts",
            "limit": 128,
            "received": 200,
        },
    },
}

_DESCRIPTIONS: dict[int, tuple[str, str]] = {
    400: ("ValidationError", "Invalid request: field-level messages; nothing was changed."),
    401: ("Error", "No credential, or an invalid, expired or revoked one."),
    403: ("Error", "The credential may not call this endpoint, or act for this user."),
    404: ("Error", "No such object in the credential's tenant."),
    409: ("ValidationError", "Conflicts with an existing object."),
    413: ("PayloadTooLarge", "Too many items in one request; the body names the limit."),
    429: ("Error", "Throttled: too many requests for this credential; retry after `Retry-After` seconds."),
    503: (
        "Error",
        "A dependency (the database) is unavailable, or the server process is still warming up; retry after "
        "`Retry-After` seconds.",
    ),
}


def error_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def errors(*codes: int, **descriptions: str) -> dict[int, OpenApiResponse]:
    """``responses`` entries for error ``codes``; ``descriptions`` (``e400="..."``) override the
    default description of a code."""
    out: dict[int, OpenApiResponse] = {}
    for code in codes:
        component, description = _DESCRIPTIONS[code]
        out[code] = OpenApiResponse(
            response=error_ref(component), description=descriptions.get(f"e{code}", description)
        )
    return out


# Errors every authenticated endpoint can answer (bad credential, wrong kind, throttled, DB down).
AUTH_ERRORS: tuple[int, ...] = (401, 403, 429, 503)

RETRY_AFTER = OpenApiParameter(
    name="Retry-After",
    type=OpenApiTypes.INT,
    location=OpenApiParameter.HEADER,
    response=[429, 503],
    description="Seconds to wait before retrying.",
)
# For endpoints whose 503 is a report of their own (the ML health), not a "retry later".
RETRY_AFTER_THROTTLED = OpenApiParameter(
    name="Retry-After",
    type=OpenApiTypes.INT,
    location=OpenApiParameter.HEADER,
    response=[429],
    description="Seconds to wait before retrying.",
)


def add_error_components(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular post-processing hook: register the shared error shapes."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in COMPONENTS.items():
        schemas.setdefault(name, schema)
    return result
