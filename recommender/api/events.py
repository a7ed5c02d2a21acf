"""The event API: batches of swipes and impressions (user token or service key) and matches made
outside the feed (service key). Thin views with their input and output serializers beside them;
the swipe and impression shapes, which the history import checks too, are in
recommender/validation.py.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsApiClient, IsServiceKey
from core.openapi import AUTH_ERRORS, RETRY_AFTER, errors
from recommender.api.common import validated
from recommender.selectors import access_acting_user
from recommender.services.events import (
    ImpressionBatchIn,
    MatchIn,
    SwipeIn,
    impression_batch_ingest,
    match_events_ingest,
    swipe_batch_ingest,
)
from recommender.validation import (
    ImpressionBatchSerializer,
    MatchItemSerializer,
    SwipeBatchSerializer,
    max_batch_validator,
)


class IngestResultSerializer(serializers.Serializer):
    """The answer to an event batch: 201 when something was stored, 200 when all were duplicates.
    ``received == created + duplicates + sampled_out``."""

    received = serializers.IntegerField(help_text="Items in the batch.")
    created = serializers.IntegerField(help_text="Items stored now.")
    duplicates = serializers.IntegerField(help_text="Items already stored (re-sent): harmless.")
    sampled_out = serializers.IntegerField(
        help_text="Items accepted but deliberately not stored. Nothing is sampled today: always 0."
    )
    matches = serializers.ListField(
        child=serializers.UUIDField(), help_text="Candidates this batch matched the user with."
    )


_INGEST_RESPONSES = {
    201: OpenApiResponse(IngestResultSerializer, description="Something was stored."),
    200: OpenApiResponse(IngestResultSerializer, description="Every item was a duplicate; nothing new stored."),
    **errors(400, 404, *AUTH_ERRORS),
}


def _ingest_status(created: int) -> int:
    return status.HTTP_201_CREATED if created else status.HTTP_200_OK


class SwipeBatchView(APIView):
    permission_classes = [IsApiClient]

    @extend_schema(
        operation_id="swipes_ingest",
        summary="Record a batch of swipes",
        description="Validated whole and stored whole; re-sent swipes count as duplicates.",
        tags=["events"],
        request=SwipeBatchSerializer,
        responses=_INGEST_RESPONSES,
        parameters=[RETRY_AFTER],
    )
    def post(self, request: Request) -> Response:
        data = validated(SwipeBatchSerializer, request.data)
        user = access_acting_user(request.user, data.get("user_id"))
        result = swipe_batch_ingest(
            tenant=request.user.tenant,
            user=user,
            session_id=data["session_id"],
            timestamp=data["timestamp"],
            swipes=[SwipeIn(**item) for item in data["swipes"]],
        )
        return Response(result.as_dict(), status=_ingest_status(result.created))


class ImpressionBatchView(APIView):
    permission_classes = [IsApiClient]

    @extend_schema(
        operation_id="impressions_ingest",
        summary="Record a batch of impressions",
        tags=["events"],
        request=ImpressionBatchSerializer,
        responses=_INGEST_RESPONSES,
        parameters=[RETRY_AFTER],
    )
    def post(self, request: Request) -> Response:
        data = validated(ImpressionBatchSerializer, request.data)
        user = access_acting_user(request.user, data.pop("user_id", None))
        result = impression_batch_ingest(tenant=request.user.tenant, user=user, batch=ImpressionBatchIn(**data))
        return Response(result.as_dict(), status=_ingest_status(result.created))


class MatchBatchSerializer(serializers.Serializer):
    matches = MatchItemSerializer(many=True, allow_empty=False)

    def validate_matches(self, value: list[Any]) -> list[Any]:
        return max_batch_validator(value)


class MatchEventsView(APIView):
    permission_classes = [IsServiceKey]

    @extend_schema(
        operation_id="matches_ingest",
        summary="Record matches made outside the feed",
        tags=["events"],
        request=MatchBatchSerializer,
        responses=_INGEST_RESPONSES,
        parameters=[RETRY_AFTER],
    )
    def post(self, request: Request) -> Response:
        data = validated(MatchBatchSerializer, request.data)
        result = match_events_ingest(tenant=request.user.tenant, matches=[MatchIn(**m) for m in data["matches"]])
        return Response(result.as_dict(), status=_ingest_status(result.created))
