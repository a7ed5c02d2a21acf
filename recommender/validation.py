"""What a profile and an event may be: the checks every way in applies, shared by the API
(recommender/api/), the importers (services/imports.py, services/backfill.py) and the admin.

They live below both the API and the services so that a profile imported from a file, edited in
the admin or sent to the API is refused for the same reasons, with the same message, without the
services importing the API. Serializers check shape and ranges only; anything that needs the
database (unknown ids, self-swipes) is checked by the services, which answer with the same
field-level error shape.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework import serializers

from recommender.models import (
    LIFESTYLE_FIELDS,
    MAX_AGE,
    MIN_AGE,
    Gender,
    MatchType,
    Profile,
    ProfileStatus,
)

SWIPE_ACTIONS = ("like", "pass", "superlike", "reject")  # reject is a synonym of pass
MAX_PROMPTS = 10
MAX_INTERESTS = 50


class PromptSerializer(serializers.Serializer):
    question = serializers.CharField(max_length=200)
    answer = serializers.CharField(max_length=1000, allow_blank=True)


class AttributesSerializer(serializers.Serializer):
    """The lifestyle attributes of the OkCupid codebook. Height is in centimetres."""

    body_type = serializers.CharField(max_length=64, allow_blank=True, required=False, allow_null=True)
    diet = serializers.CharField(max_length=64, allow_blank=True, required=False, allow_null=True)
    drinks = serializers.CharField(max_length=64, allow_blank=True, required=False, allow_null=True)
    drugs = serializers.CharField(max_length=64, allow_blank=True, required=False, allow_null=True)
    education = serializers.CharField(max_length=128, allow_blank=True, required=False, allow_null=True)
    ethnicity = serializers.CharField(max_length=200, allow_blank=True, required=False, allow_null=True)
    height = serializers.IntegerField(min_value=50, max_value=272, required=False, allow_null=True)
    job = serializers.CharField(max_length=128, allow_blank=True, required=False, allow_null=True)
    offspring = serializers.CharField(max_length=128, allow_blank=True, required=False, allow_null=True)
    orientation = serializers.CharField(max_length=64, allow_blank=True, required=False, allow_null=True)
    pets = serializers.CharField(max_length=128, allow_blank=True, required=False, allow_null=True)
    religion = serializers.CharField(max_length=128, allow_blank=True, required=False, allow_null=True)
    smokes = serializers.CharField(max_length=64, allow_blank=True, required=False, allow_null=True)
    speaks = serializers.CharField(max_length=255, allow_blank=True, required=False, allow_null=True)
    relationship_status = serializers.CharField(max_length=64, allow_blank=True, required=False, allow_null=True)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(LIFESTYLE_FIELDS))
            if unknown:
                raise serializers.ValidationError(
                    {name: [f"Unknown attribute; allowed: {', '.join(LIFESTYLE_FIELDS)}."] for name in unknown}
                )
        return super().to_internal_value(data)


class ProfileSerializer(serializers.Serializer):
    """The profile as the API sees it. ``external_id`` is set on create and never changes."""

    external_id = serializers.UUIDField()
    age = serializers.IntegerField(min_value=MIN_AGE, max_value=MAX_AGE)
    gender = serializers.ChoiceField(choices=Gender.choices)
    seeking = serializers.ListField(child=serializers.ChoiceField(choices=Gender.choices), min_length=1, max_length=3)
    # Left out or null: no bound on that side (stored as MIN_AGE / MAX_AGE, which filter nobody and
    # are neutral in scoring: recommender.ml.structured.states_age_preference).
    age_min = serializers.IntegerField(min_value=MIN_AGE, max_value=MAX_AGE, default=MIN_AGE, allow_null=True)
    age_max = serializers.IntegerField(min_value=MIN_AGE, max_value=MAX_AGE, default=MAX_AGE, allow_null=True)
    max_distance_km = serializers.FloatField(min_value=1.0, max_value=20_000.0, default=50.0)
    lat = serializers.FloatField(min_value=-90.0, max_value=90.0)
    lon = serializers.FloatField(min_value=-180.0, max_value=180.0)
    bio = serializers.CharField(max_length=5000, allow_blank=True, default="")
    prompts = PromptSerializer(many=True, default=list, max_length=MAX_PROMPTS)
    interests = serializers.ListField(
        child=serializers.CharField(max_length=64), default=list, max_length=MAX_INTERESTS
    )
    attributes = AttributesSerializer(default=dict)
    status = serializers.ChoiceField(
        choices=[ProfileStatus.ACTIVE, ProfileStatus.HIDDEN, ProfileStatus.BANNED], default=ProfileStatus.ACTIVE
    )
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def validate_seeking(self, value: list[str]) -> list[str]:
        return sorted(set(value))

    def validate_prompts(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # A partial update (PATCH) does not make the keys of nested items optional.
        for i, prompt in enumerate(value):
            missing = {"question", "answer"} - set(prompt)
            if missing:
                raise serializers.ValidationError({str(i): {k: ["This field is required."] for k in sorted(missing)}})
        return value

    def validate_age_min(self, value: int | None) -> int:
        return MIN_AGE if value is None else value

    def validate_age_max(self, value: int | None) -> int:
        return MAX_AGE if value is None else value

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        instance: Profile | None = self.instance
        if instance is not None and "external_id" in data and data["external_id"] != instance.external_id:
            raise serializers.ValidationError({"external_id": ["external_id cannot be changed."]})
        age_min = data.get("age_min", instance.age_min if instance else MIN_AGE)
        age_max = data.get("age_max", instance.age_max if instance else MAX_AGE)
        if age_min > age_max:
            raise serializers.ValidationError({"age_min": ["age_min must not be greater than age_max."]})
        return data

    def to_representation(self, instance: Profile) -> dict[str, Any]:
        return {
            "external_id": str(instance.external_id),
            "age": instance.age,
            "gender": instance.gender,
            "seeking": instance.seeking,
            "age_min": instance.age_min,
            "age_max": instance.age_max,
            "max_distance_km": instance.max_distance_km,
            "lat": instance.lat,
            "lon": instance.lon,
            "bio": instance.bio,
            "prompts": instance.prompts,
            "interests": instance.interests,
            "attributes": instance.attributes(),
            "status": instance.status,
            "created_at": instance.created_at.isoformat(),
            "updated_at": instance.updated_at.isoformat(),
        }


def validate_event_time(value: Any) -> Any:
    limit = timezone.now() + timedelta(seconds=settings.EVENT_MAX_FUTURE_SKEW_SECONDS)
    if value > limit:
        raise serializers.ValidationError(
            f"Timestamp is in the future beyond the allowed skew of {settings.EVENT_MAX_FUTURE_SKEW_SECONDS} s."
        )
    return value


class BatchUserMixin(serializers.Serializer):
    """``user_id``: with a user token it must be absent or the token's own user; with a service
    key it is required. The view resolves it."""

    user_id = serializers.UUIDField(required=False)


def max_batch_validator(value: list[Any]) -> list[Any]:
    if len(value) > settings.EVENT_MAX_BATCH:
        raise serializers.ValidationError(f"At most {settings.EVENT_MAX_BATCH} items per batch; got {len(value)}.")
    return value


class SwipeItemSerializer(serializers.Serializer):
    candidate_id = serializers.UUIDField()
    action = serializers.ChoiceField(choices=SWIPE_ACTIONS)
    duration_ms = serializers.IntegerField(min_value=0, max_value=3_600_000, required=False, allow_null=True)
    event_id = serializers.CharField(max_length=128, required=False, allow_null=True, allow_blank=False)


class SwipeBatchSerializer(BatchUserMixin):
    session_id = serializers.CharField(max_length=128)
    timestamp = serializers.DateTimeField(validators=[validate_event_time])
    swipes = SwipeItemSerializer(many=True, allow_empty=False)

    def validate_swipes(self, value: list[Any]) -> list[Any]:
        return max_batch_validator(value)


class ImpressionBatchSerializer(BatchUserMixin):
    candidate_ids = serializers.ListField(
        child=serializers.UUIDField(), allow_empty=False, validators=[max_batch_validator]
    )
    positions = serializers.ListField(child=serializers.IntegerField(min_value=0, max_value=100_000))
    context_hash = serializers.CharField(max_length=128, allow_blank=True, default="")
    timestamp = serializers.DateTimeField(validators=[validate_event_time])
    model_version = serializers.CharField(max_length=64, allow_blank=True, default="")
    experiment_arm = serializers.CharField(max_length=64, allow_blank=True, default="")

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if len(data["positions"]) != len(data["candidate_ids"]):
            raise serializers.ValidationError(
                {"positions": [f"Expected {len(data['candidate_ids'])} positions, one per candidate id."]}
            )
        return data


class MatchItemSerializer(serializers.Serializer):
    user_id = serializers.UUIDField()
    candidate_id = serializers.UUIDField()
    timestamp = serializers.DateTimeField(validators=[validate_event_time])
    match_type = serializers.ChoiceField(choices=MatchType.choices, default=MatchType.EXTERNAL)
