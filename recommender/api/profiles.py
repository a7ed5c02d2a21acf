"""The profile API: create, read, update and erase a profile (service key), the user's own
profile (user token), many profiles in one call, and user tokens. Thin views with their input and
output serializers beside them; ProfileSerializer, the shape every way in shares, is in
recommender/validation.py.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import IntegrityError
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsServiceKey, IsUserToken
from accounts.services import user_token_issue
from core.openapi import AUTH_ERRORS, RETRY_AFTER, errors
from recommender.api.common import StrictSerializer, check_count, validated
from recommender.models import Profile, ProfileStatus
from recommender.selectors import access_profile
from recommender.services.derived import derived_work_in_background
from recommender.services.imports import ProfileBatchInvalid, profiles_batch_import
from recommender.services.profiles import profile_create, profile_erase, profile_update
from recommender.validation import ProfileSerializer


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
        data = validated(ProfileSerializer, request.data)
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


@extend_schema_field(ProfileSerializer)
class ProfileItemField(serializers.Field):
    """One profile, exactly as ``POST /internal/v1/profiles`` takes it. Passed through as given:
    the batch service validates each item with :class:`ProfileSerializer` and answers errors per
    item, keyed by index, instead of failing the whole request on the first bad one."""

    def to_internal_value(self, data: Any) -> Any:
        return data

    def to_representation(self, value: Any) -> Any:
        return value


# Strict: a misspelt "mode" must not silently mean all_or_nothing.
class ProfileBatchSerializer(StrictSerializer):
    """``POST /internal/v1/profiles/batch``. More than ``PROFILE_BATCH_MAX`` profiles is a 413,
    checked by the view before anything is validated."""

    profiles = serializers.ListField(
        child=ProfileItemField(),
        allow_empty=False,
        help_text="Profiles as POST /internal/v1/profiles takes them; at most PROFILE_BATCH_MAX (500).",
    )
    mode = serializers.ChoiceField(
        choices=["all_or_nothing", "per_item"],
        default="all_or_nothing",
        help_text=(
            "all_or_nothing (default): any bad item refuses the batch (400, errors keyed by index) and "
            "nothing is stored. per_item: the valid items are stored, the bad ones reported (200)."
        ),
    )
    update_existing = serializers.BooleanField(
        default=False,
        help_text=(
            "false (default): an external_id that exists in the tenant is an error on its item. true: "
            "that profile is updated with the fields the item gives (as PATCH does)."
        ),
    )


class ProfileBatchItemResultSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="The item's position in the request's profiles.")
    external_id = serializers.UUIDField(allow_null=True, help_text="As given; null when it is not a valid UUID.")
    status = serializers.ChoiceField(choices=["created", "updated", "error"])
    errors = serializers.DictField(
        required=False,
        help_text='Only with status error: field-level messages, e.g. {"age": ["Ensure this value is ..."]}.',
    )


class ProfileBatchEnqueuedSerializer(serializers.Serializer):
    profiles = serializers.IntegerField(help_text="Profiles whose derived data (embedding, safety) is enqueued.")
    embedding_tasks = serializers.IntegerField(help_text="Batched embedding tasks (queue embeddings): 0 or 1.")
    safety_tasks = serializers.IntegerField(help_text="Batched safety classification tasks (queue safety): 0 or 1.")


class ProfileBatchResultSerializer(serializers.Serializer):
    """One result per item, in request order, and the totals."""

    results = ProfileBatchItemResultSerializer(many=True)
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    failed = serializers.IntegerField(help_text="Items refused (status error); only per_item answers have any.")
    enqueued = ProfileBatchEnqueuedSerializer()


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
        check_count(request.data, "profiles", settings.PROFILE_BATCH_MAX, "profiles")
        data = validated(ProfileBatchSerializer, request.data)
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
        data = validated(ProfileSerializer, request.data, instance=profile, partial=True)
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


class SelfProfileSerializer(ProfileSerializer):
    """What a user may change on their own profile: everything but the id, and only
    active/hidden as status (bans are moderation decisions)."""

    status = serializers.ChoiceField(choices=[ProfileStatus.ACTIVE, ProfileStatus.HIDDEN], required=False)


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
        data = validated(SelfProfileSerializer, request.data, instance=profile, partial=True)
        return Response(ProfileSerializer(profile_update(profile=profile, data=data)).data)


class UserTokenResponseSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="The raw user token (put_...): shown once, stored only as a hash.")
    expires_at = serializers.DateTimeField()


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
