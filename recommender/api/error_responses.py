"""How recommender's own exceptions answer in the API's error shape (``core.errors``), registered
in ``RecommenderConfig.ready``: the services' field-level errors answer 400, a candidate store
still being built in this process answers 503 with ``Retry-After``."""

from __future__ import annotations

from rest_framework import status
from rest_framework.response import Response

from core.errors import field_errors_response, register_exception_response
from recommender.feed.store import StoreWarmingUp
from recommender.ml_inputs import MlInputError
from recommender.services.events import EventValidationError


def _warming_up(exc: StoreWarmingUp) -> Response:
    return Response(
        {"detail": "The feed is warming up in this server process; retry shortly.", "code": "warming_up"},
        status=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(exc.retry_after)},
    )


def register_error_responses() -> None:
    register_exception_response(EventValidationError, field_errors_response)
    register_exception_response(MlInputError, field_errors_response)
    register_exception_response(StoreWarmingUp, _warming_up)
