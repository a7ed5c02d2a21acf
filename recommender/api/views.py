"""Thin views: check the credential, validate, call one service, shape the answer."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import IntegrityError
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from recommender.api.ml import BatchTooLarge
from recommender.api.schema import AUTH_ERRORS, RETRY_AFTER, errors
from recommender.api.serializers import (
    ImpressionBatchSerializer,
    IngestResultSerializer,
    MatchBatchSerializer,
    ProfileBatchResultSerializer,
    ProfileBatchSerializer,
    ProfileSerializer,
    SelfProfileSerializer,
    SwipeBatchSerializer,
    UserTokenResponseSerializer,
)
from recommender.models import Profile
from recommender.permissions import IsApiClient, IsServiceKey, IsUserToken
from recommender.selectors import access_acting_user, access_profile
from recommender.services.credentials import user_token_issue
from recommender.services.derived import derived_work_in_background
from recommender.services.events import (
    ImpressionBatchIn,
    MatchIn,
    SwipeIn,
    impression_batch_ingest,
    match_events_ingest,
    swipe_batch_ingest,
)
from recommender.services.imports import ProfileBatchInvalid, profiles_batch_import
from recommender.services.profiles import profile_create, profile_erase, profile_update


def _validated(serializer_class: type, data: Any, **kwargs: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class ProfileCreateView(APIView):
    permission_classes = [IsServiceKey]

    @extend_schema(
        operation_id="profile_create",
        summary="Create a profile",
        tags=["profiles"],
        request=ProfileSerializer,
        responses={201: ProfileSerializer, **errors(400, 409, *AUTH_ERRORS)},
        parameters=[RETRY_AFTER],
    )
    def post(self, request: Request) -> Response:
        data = _validated(ProfileSerializer, request.data)
        try:
            profile = profile_create(tenant=request.user.tenant, data=data)
        except IntegrityError:
            if not Profile.objects.filter(tenant=request.user.tenant, external_id=data["external_id"]).exists():
                raise
            return Response(
                {"external_id": ["A profile with this external_id already exists in this tenant."]},
                status=status.HTTP_409_CONFLICT,
            )
        return Response(ProfileSerializer(profile).data, status=status.HTTP_201_CREATED)


class ProfileBatchView(APIView):
    permission_classes = [IsServiceKey]

    @extend_schema(
        operation_id="profiles_batch_create",
        summary="Create (or update) many profiles in one call",
        description=(
            "Bulk onboarding. Each item is validated as POST /internal/v1/profiles validates it. The rows are "
            "stored in bulk; embeddings and safety classification are enqueued after commit as one batched task "
            "each, not computed in the request. all_or_nothing (default) answers 201, or 400 with errors keyed "
            "by item index and nothing stored; per_item stores the valid items and answers 200 with a result "
            "per item. More than PROFILE_BATCH_MAX (500) profiles is a 413."
        ),
        tags=["profiles"],
        request=ProfileBatchSerializer,
        responses={
            201: OpenApiResponse(ProfileBatchResultSerializer, description="all_or_nothing: every item stored."),
            200: OpenApiResponse(
                ProfileBatchResultSerializer, description="per_item: the valid items stored; see failed and results."
            ),
            **errors(400, 413, *AUTH_ERRORS, e400="Invalid request or, all_or_nothing, a bad item: nothing stored."),
        },
        parameters=[RETRY_AFTER],
    )
    def post(self, request: Request) -> Response:
        items = request.data.get("profiles") if isinstance(request.data, dict) else None
        if isinstance(items, list) and len(items) > settings.PROFILE_BATCH_MAX:
            raise BatchTooLarge("profiles", settings.PROFILE_BATCH_MAX, len(items), "profiles")
        data = _validated(ProfileBatchSerializer, request.data)
        try:
            # Embedded mode (eager Celery): the batched model work runs on the in-process worker
            # thread, not in this request.
            with derived_work_in_background():
                report = profiles_batch_import(
                    tenant=request.user.tenant,
                    items=data["profiles"],
                    mode=data["mode"],
                    on_existing="update" if data["update_existing"] else "error",
                )
        except ProfileBatchInvalid as exc:
            raise ValidationError(exc.errors) from exc
        code = status.HTTP_201_CREATED if data["mode"] == "all_or_nothing" else status.HTTP_200_OK
        return Response(report.as_dict(), status=code)


class ProfileDetailView(APIView):
    permission_classes = [IsServiceKey]

    @extend_schema(
        operation_id="profile_read",
        summary="Read a profile",
        tags=["profiles"],
        responses={200: ProfileSerializer, **errors(404, *AUTH_ERRORS)},
        parameters=[RETRY_AFTER],
    )
    def get(self, request: Request, external_id: str) -> Response:
        return Response(ProfileSerializer(access_profile(request.user, external_id)).data)

    @extend_schema(
        operation_id="profile_update",
        summary="Update a profile (partial)",
        tags=["profiles"],
        request=ProfileSerializer,
        responses={200: ProfileSerializer, **errors(400, 404, *AUTH_ERRORS)},
        parameters=[RETRY_AFTER],
    )
    def patch(self, request: Request, external_id: str) -> Response:
        profile = access_profile(request.user, external_id)
        data = _validated(ProfileSerializer, request.data, instance=profile, partial=True)
        return Response(ProfileSerializer(profile_update(profile=profile, data=data)).data)

    @extend_schema(
        operation_id="profile_erase",
        summary="Erase a profile",
        description="Personal fields are wiped and the embedding deleted; events are kept, anonymised.",
        tags=["profiles"],
        responses={204: OpenApiResponse(description="Erased."), **errors(404, *AUTH_ERRORS)},
        parameters=[RETRY_AFTER],
    )
    def delete(self, request: Request, external_id: str) -> Response:
        profile_erase(profile=access_profile(request.user, external_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    permission_classes = [IsUserToken]

    @extend_schema(
        operation_id="me_read",
        summary="The user's own profile",
        tags=["profiles"],
        responses={200: ProfileSerializer, **errors(*AUTH_ERRORS)},
        parameters=[RETRY_AFTER],
    )
    def get(self, request: Request) -> Response:
        return Response(ProfileSerializer(request.user.profile).data)

    @extend_schema(
        operation_id="me_update",
        summary="Update the user's own profile (partial)",
        tags=["profiles"],
        request=SelfProfileSerializer,
        responses={200: ProfileSerializer, **errors(400, *AUTH_ERRORS)},
        parameters=[RETRY_AFTER],
    )
    def patch(self, request: Request) -> Response:
        profile = request.user.profile
        data = _validated(SelfProfileSerializer, request.data, instance=profile, partial=True)
        return Response(ProfileSerializer(profile_update(profile=profile, data=data)).data)


class UserTokenView(APIView):
    permission_classes = [IsServiceKey]

    @extend_schema(
        operation_id="user_token_issue",
        summary="Issue a user token",
        tags=["profiles"],
        request=None,
        responses={201: UserTokenResponseSerializer, **errors(404, *AUTH_ERRORS)},
        parameters=[RETRY_AFTER],
    )
    def post(self, request: Request, external_id: str) -> Response:
        profile = access_profile(request.user, external_id)
        issued = user_token_issue(profile=profile, issued_by=request.user.service_key)
        return Response(
            {"token": issued.raw, "expires_at": issued.record.expires_at.isoformat()}, status=status.HTTP_201_CREATED
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
        data = _validated(SwipeBatchSerializer, request.data)
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
        data = _validated(ImpressionBatchSerializer, request.data)
        user = access_acting_user(request.user, data.pop("user_id", None))
        result = impression_batch_ingest(tenant=request.user.tenant, user=user, batch=ImpressionBatchIn(**data))
        return Response(result.as_dict(), status=_ingest_status(result.created))


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
        data = _validated(MatchBatchSerializer, request.data)
        result = match_events_ingest(tenant=request.user.tenant, matches=[MatchIn(**m) for m in data["matches"]])
        return Response(result.as_dict(), status=_ingest_status(result.created))
