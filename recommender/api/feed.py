"""The feed endpoints: a user's own feed (user token) and recommendations for a service.

Both answer the same shape::

    {"recommendations": [{"user_id": "<external id>", "score": 0.71, "components": {...}}],
     "model_version": "feed-v1+index:…", "latency_ms": 4.2, "cache_hit": true, "fallback": null}
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsServiceKey, IsUserToken
from core.openapi import AUTH_ERRORS, RETRY_AFTER, errors
from recommender.api.common import validated
from recommender.api.components import FEED_COMPONENTS, components_serializer
from recommender.feed.pipeline import MAX_COUNT, FeedFilters, FeedResult, feed_for
from recommender.models import MAX_AGE, MIN_AGE, Gender
from recommender.selectors import access_profile

DEFAULT_COUNT = 20


class FeedQuerySerializer(serializers.Serializer):
    count = serializers.IntegerField(min_value=1, max_value=MAX_COUNT, default=DEFAULT_COUNT)


class FeedFiltersSerializer(serializers.Serializer):
    """Filters narrow the user's own preferences; they can never widen them."""

    age_min = serializers.IntegerField(min_value=MIN_AGE, max_value=MAX_AGE, required=False, allow_null=True)
    age_max = serializers.IntegerField(min_value=MIN_AGE, max_value=MAX_AGE, required=False, allow_null=True)
    max_distance_km = serializers.FloatField(required=False, allow_null=True)
    genders = serializers.ListField(
        child=serializers.ChoiceField(choices=Gender.choices), required=False, allow_null=True, allow_empty=False
    )

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                allowed = ", ".join(self.fields)
                raise serializers.ValidationError({name: [f"Unknown filter; allowed: {allowed}."] for name in unknown})
        return super().to_internal_value(data)

    def validate_max_distance_km(self, value: float | None) -> float | None:
        if value is not None and not value > 0:
            raise serializers.ValidationError("Must be greater than 0.")
        return value

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        lo, hi = data.get("age_min"), data.get("age_max")
        if lo is not None and hi is not None and lo > hi:
            raise serializers.ValidationError({"age_min": ["age_min must not be greater than age_max."]})
        return data


class RecommendationRequestSerializer(serializers.Serializer):
    tenant_id = serializers.SlugField(max_length=64, help_text="The tenant's slug; must be the service key's tenant.")
    user_id = serializers.UUIDField()
    count = serializers.IntegerField(min_value=1, max_value=MAX_COUNT, default=DEFAULT_COUNT)
    filters = FeedFiltersSerializer(required=False, allow_null=True)


# Built from recommender/api/components.py, the one documented list (the rank API's: api/batch.py).
FeedComponentsSerializer = components_serializer(
    "FeedComponentsSerializer",
    FEED_COMPONENTS,
    "Why a candidate scored what it did: the scoring signals, full-precision, plus the ranker's score (when a "
    "ranker served the feed) and the exploration flag.",
)


class FeedItemSerializer(serializers.Serializer):
    user_id = serializers.UUIDField(help_text="The candidate's external id.")
    score = serializers.FloatField(
        help_text="What the feed is ordered by, full-precision: components.reciprocal, or, when a ranker served "
        "the feed, the fusion of its score (components.ranker) with p_candidate_likes (a ranker without "
        "calibration: its raw score)."
    )
    components = FeedComponentsSerializer()


class FeedResponseSerializer(serializers.Serializer):
    recommendations = FeedItemSerializer(many=True)
    model_version = serializers.CharField()
    latency_ms = serializers.FloatField()
    cache_hit = serializers.BooleanField()
    fallback = serializers.ChoiceField(
        choices=["ml_disabled", "model_unavailable", "index_missing"],
        allow_null=True,
        help_text="Why the feed used the structured fallback; null when ML served.",
    )


def feed_response(result: FeedResult) -> dict[str, Any]:
    return {
        "recommendations": [
            {"user_id": str(item.external_id), "score": item.score, "components": item.components}
            for item in result.items
        ],
        "model_version": result.model_version,
        "latency_ms": result.latency_ms,
        "cache_hit": result.cache_hit,
        "fallback": result.fallback,
    }


class FeedView(APIView):
    """``GET /api/v1/feed?count=N``: the token's user's feed; served candidates are logged."""

    permission_classes = [IsUserToken]

    @extend_schema(
        operation_id="feed_read",
        summary="The user's reciprocal feed",
        tags=["feed"],
        parameters=[FeedQuerySerializer, RETRY_AFTER],
        responses={200: FeedResponseSerializer, **errors(400, *AUTH_ERRORS)},
    )
    def get(self, request: Request) -> Response:
        data = validated(FeedQuerySerializer, request.query_params)
        result = feed_for(tenant=request.user.tenant, user=request.user.profile, count=data["count"])
        return Response(feed_response(result))


class RecommendationsView(APIView):
    """``POST /internal/ml/recommendations``: a feed for any user of the service key's tenant."""

    permission_classes = [IsServiceKey]

    @extend_schema(
        operation_id="recommendations_create",
        summary="A feed for any user of the tenant",
        tags=["feed"],
        request=RecommendationRequestSerializer,
        responses={200: FeedResponseSerializer, **errors(400, 404, *AUTH_ERRORS)},
        parameters=[RETRY_AFTER],
    )
    def post(self, request: Request) -> Response:
        data = validated(RecommendationRequestSerializer, request.data)
        tenant = request.user.tenant
        if data["tenant_id"] != tenant.slug:
            # never serve across tenants, whatever the body says
            raise PermissionDenied({"tenant_id": ["This service key belongs to another tenant."]})
        user = access_profile(request.user, data["user_id"])
        filters = FeedFilters(**{k: v for k, v in (data.get("filters") or {}).items() if v is not None})
        result = feed_for(tenant=tenant, user=user, count=data["count"], filters=filters)
        return Response(feed_response(result))
