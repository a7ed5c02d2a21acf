"""API views: reports, blocks and appeals (user token), the classify endpoint (service key)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import ApiClient
from accounts.permissions import IsServiceKey, IsUserToken, IsUserTokenMayBeBanned
from core.errors import PayloadTooLarge
from core.openapi import AUTH_ERRORS, RETRY_AFTER, errors
from recommender.models import Profile, ProfileStatus
from safety import serving
from safety.ml import LABELS
from safety.models import ReportReason
from safety.selectors import access_appealable_decision
from safety.services import SafetyError, appeal_create, block_create, report_create


def _own(client: ApiClient) -> Profile:
    """The caller's profile: these views admit user tokens only (``IsUserToken*``)."""
    assert client.profile is not None
    return client.profile


def _target(client: ApiClient, external_id: Any) -> Profile:
    """Another profile of the caller's tenant (erased ones do not exist any more)."""
    profile = (
        Profile.objects.filter(tenant=client.tenant, external_id=external_id)
        .exclude(status=ProfileStatus.ERASED)
        .first()
    )
    if profile is None:
        raise serializers.ValidationError({"profile_id": ["No such profile."]})
    return profile


def _refused(exc: SafetyError) -> Response:
    return Response(exc.errors, status=status.HTTP_400_BAD_REQUEST)


class ReportSerializer(serializers.Serializer):
    profile_id = serializers.UUIDField(help_text="external id of the reported profile")
    reason = serializers.ChoiceField(choices=ReportReason.choices)
    text = serializers.CharField(max_length=2000, allow_blank=True, required=False, default="")


class CreatedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()


class AppealCreatedSerializer(CreatedSerializer):
    decision_id = serializers.IntegerField()


class ClassifyRequestSerializer(serializers.Serializer):
    texts = serializers.ListField(
        child=serializers.CharField(allow_blank=True),
        allow_empty=False,
        help_text="At most SAFETY_CLASSIFY_MAX_TEXTS (64) texts of SAFETY_CLASSIFY_MAX_CHARS (5000) characters.",
    )


class LabelEvidenceSerializer(serializers.Serializer):
    model_score = serializers.FloatField(allow_null=True, help_text="The trained head's probability; null: rules only.")
    rules = serializers.ListField(child=serializers.DictField(), help_text="Rules that fired, with their spans.")
    tokens = serializers.ListField(child=serializers.CharField(), help_text="Words that pushed the label up most.")
    scope = serializers.CharField(required=False)


# One field per safety label (safety.ml.LABELS).
LabelScoresSerializer = type(
    "LabelScoresSerializer",
    (serializers.Serializer,),
    {label: serializers.FloatField(help_text="Probability in [0, 1].") for label in LABELS},
)
LabelEvidenceMapSerializer = type(
    "LabelEvidenceMapSerializer", (serializers.Serializer,), {label: LabelEvidenceSerializer() for label in LABELS}
)


class ClassifyResultSerializer(serializers.Serializer):
    labels = LabelScoresSerializer()
    evidence = LabelEvidenceMapSerializer()


class ClassifyResponseSerializer(serializers.Serializer):
    results = ClassifyResultSerializer(many=True)
    model_version = serializers.CharField()
    fallback = serializers.ChoiceField(
        choices=["ml_disabled", "model_unavailable"],
        allow_null=True,
        help_text="Why the trained heads did not run (the rules answered alone), or null.",
    )


class ReportView(APIView):
    permission_classes = [IsUserToken]

    @extend_schema(
        operation_id="report_create",
        summary="Report a profile",
        tags=["safety"],
        request=ReportSerializer,
        responses={201: CreatedSerializer, **errors(400, *AUTH_ERRORS)},
        parameters=[RETRY_AFTER],
    )
    def post(self, request: Request) -> Response:
        ser = ReportSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        client: ApiClient = request.user
        reported = _target(client, ser.validated_data["profile_id"])
        try:
            report = report_create(
                reporter=_own(client),
                reported=reported,
                reason=ser.validated_data["reason"],
                text=ser.validated_data["text"],
            )
        except SafetyError as exc:
            return _refused(exc)
        return Response({"id": report.pk, "status": "received"}, status=status.HTTP_201_CREATED)


class BlockSerializer(serializers.Serializer):
    profile_id = serializers.UUIDField()


class BlockView(APIView):
    permission_classes = [IsUserToken]

    @extend_schema(
        operation_id="block_create",
        summary="Block a profile",
        tags=["safety"],
        request=BlockSerializer,
        responses={
            201: OpenApiResponse(CreatedSerializer, description="Blocked now."),
            200: OpenApiResponse(CreatedSerializer, description="Already blocked."),
            **errors(400, *AUTH_ERRORS),
        },
        parameters=[RETRY_AFTER],
    )
    def post(self, request: Request) -> Response:
        ser = BlockSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        client: ApiClient = request.user
        try:
            blocked = _target(client, ser.validated_data["profile_id"])
            block, created = block_create(blocker=_own(client), blocked=blocked)
        except SafetyError as exc:
            return _refused(exc)
        return Response({"id": block.pk, "status": "blocked"}, status=201 if created else 200)


class AppealSerializer(serializers.Serializer):
    decision_id = serializers.IntegerField(required=False, min_value=1, help_text="default: your latest decision")
    text = serializers.CharField(max_length=4000)


class AppealView(APIView):
    permission_classes = [IsUserTokenMayBeBanned]  # a banned user must be able to appeal

    @extend_schema(
        operation_id="appeal_create",
        summary="Appeal a moderation decision",
        tags=["safety"],
        request=AppealSerializer,
        responses={201: AppealCreatedSerializer, **errors(400, *AUTH_ERRORS)},
        parameters=[RETRY_AFTER],
    )
    def post(self, request: Request) -> Response:
        ser = AppealSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        client: ApiClient = request.user
        try:
            decision = access_appealable_decision(_own(client), ser.validated_data.get("decision_id"))
        except Http404:
            return Response({"decision_id": ["No decision of yours to appeal."]}, status=400)
        try:
            appeal = appeal_create(profile=_own(client), decision=decision, text=ser.validated_data["text"])
        except SafetyError as exc:
            return _refused(exc)
        return Response({"id": appeal.pk, "decision_id": decision.pk, "status": appeal.status}, status=201)


class ClassifyView(APIView):
    permission_classes = [IsServiceKey]

    @extend_schema(
        operation_id="safety_classify",
        summary="Texts to per-label safety probabilities",
        tags=["safety", "ml"],
        request=ClassifyRequestSerializer,
        responses={
            200: ClassifyResponseSerializer,
            **errors(400, *AUTH_ERRORS),
            413: OpenApiResponse({"$ref": "#/components/schemas/Error"}, description="A text is too long."),
        },
        parameters=[RETRY_AFTER],
    )
    def post(self, request: Request) -> Response:
        data = request.data
        texts = data.get("texts") if isinstance(data, dict) else None
        if not isinstance(texts, list) or not texts:
            return Response({"texts": ["A non-empty list of strings is required."]}, status=400)
        max_texts, max_chars = settings.SAFETY_CLASSIFY_MAX_TEXTS, settings.SAFETY_CLASSIFY_MAX_CHARS
        if len(texts) > max_texts:
            return Response({"texts": [f"At most {max_texts} texts per request; got {len(texts)}."]}, status=400)
        bad = {str(i): ["Must be a string."] for i, t in enumerate(texts) if not isinstance(t, str)}
        if bad:
            return Response({"texts": bad}, status=400)
        too_long = [i for i, t in enumerate(texts) if len(t) > max_chars]
        if too_long:
            raise PayloadTooLarge(f"texts {too_long[:10]} are longer than {max_chars} characters.")
        results, version, fallback = serving.classify(request.user.tenant.pk, texts)
        return Response({"results": [r.as_dict() for r in results], "model_version": version, "fallback": fallback})
