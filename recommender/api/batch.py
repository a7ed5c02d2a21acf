"""The ML API (``api/v1/ml/``): batch embeddings, similarities and rankings, and ML health
(docs/api.md). Thin views with their input and output serializers beside them.

Who may call: **tenant service keys only**. These endpoints serve backend services (they take
any profile of the tenant and call the model in bulk); a user token gets 403 saying so, no
credential 401. Profile ids are looked up in the key's tenant only: another tenant's id is
"unknown" (400, keyed by its index), so its existence is never revealed.

Limits (settings, docs/operations.md): more than ``ML_BATCH_MAX_ITEMS`` texts, profile ids, pairs
or users answers 413 naming the limit; a text longer than ``ML_TEXT_MAX_CHARS`` answers 400 on
that item; rankings also cap candidates per user (``ML_RANK_MAX_CANDIDATES``) and pairs per
request (``ML_RANK_MAX_PAIRS``), with 413. Throttles: the credential's general burst/sustained
pair plus the stricter ``ml_*`` pair for the three model-calling endpoints (429 + Retry-After).

Fallback: with ML disabled or the model missing, every endpoint still answers 200 with
``"available": false`` and ``"fallback": "ml_disabled" | "model_unavailable"`` (see
``recommender/vectors.py`` and ``recommender/feed/rank.py`` for what each answers then).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import ApiClient
from accounts.permissions import IsServiceKey
from core.openapi import AUTH_ERRORS, RETRY_AFTER, RETRY_AFTER_THROTTLED, error_ref, errors
from core.throttling import ML_THROTTLES
from recommender.api.common import BatchTooLarge, StrictSerializer, check_count, validated
from recommender.api.components import RANK_COMPONENTS, components_serializer
from recommender.feed.rank import FILTER_REASONS, RankBatch, RankRequest, profiles_rank
from recommender.serving.health import ml_health
from recommender.vectors import EmbeddingBatch, Side, SimilarityBatch, embeddings_compute, similarities_compute

FALLBACKS = ("ml_disabled", "model_unavailable")


class IsServiceKeyForMl(IsServiceKey):
    message = (
        "The ML API is for backend services: call it with a tenant service key "
        "(Authorization: Bearer psk_...), not a user token."
    )


class MlTextField(serializers.CharField):
    """A non-blank text of at most ML_TEXT_MAX_CHARS characters (read per request)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        kwargs.setdefault("help_text", "At most ML_TEXT_MAX_CHARS characters (default 2000), not blank.")
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):  # CharField would turn 5 or true into "5" or "True"
            raise ValidationError("Must be a string.")
        value = super().to_internal_value(data)
        if not value.strip():
            raise ValidationError("Must not be blank.")
        limit = settings.ML_TEXT_MAX_CHARS
        if len(value) > limit:
            raise ValidationError(f"At most {limit} characters per text; got {len(value)}.")
        return value


# --------------------------------------------------------------------------- serializers


class EmbeddingsBatchSerializer(StrictSerializer):
    texts = serializers.ListField(
        child=MlTextField(), required=False, allow_empty=False, help_text="At most ML_BATCH_MAX_ITEMS (128)."
    )
    profile_ids = serializers.ListField(
        child=serializers.UUIDField(),
        required=False,
        allow_empty=False,
        help_text="External ids of the key's tenant; at most ML_BATCH_MAX_ITEMS (128).",
    )

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if ("texts" in data) == ("profile_ids" in data):
            raise ValidationError({"non_field_errors": ["Give exactly one of texts and profile_ids."]})
        return data


class EmbeddingItemSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position in the request.")
    profile_id = serializers.UUIDField(required=False, help_text="Present when profile ids were asked.")
    vector = serializers.ListField(
        child=serializers.FloatField(), allow_null=True, help_text="Unit vector of `dimension` floats, or null."
    )
    source = serializers.ChoiceField(
        choices=["computed", "stored"],
        allow_null=True,
        help_text="`stored`: the profile's fresh stored embedding (cache, then database); `computed`: encoded now.",
    )
    reason = serializers.ChoiceField(
        choices=["no_text", *FALLBACKS],
        allow_null=True,
        help_text="Why `vector` is null: the profile has no text, or the fallback.",
    )


class EmbeddingResponseSerializer(serializers.Serializer):
    model = serializers.CharField(help_text="EMBEDDING_MODEL.")
    dimension = serializers.IntegerField(allow_null=True, help_text="Length of every vector; null in fallback.")
    available = serializers.BooleanField(help_text="False when ML cannot serve: then no vectors.")
    fallback = serializers.ChoiceField(choices=FALLBACKS, allow_null=True)
    items = EmbeddingItemSerializer(many=True)
    stats = serializers.DictField(
        child=serializers.IntegerField(),
        help_text="computed (texts encoded now); for profiles also stored and cache_hits.",
    )
    latency_ms = serializers.FloatField()


class SideSerializer(StrictSerializer):
    text = MlTextField(required=False)
    profile_id = serializers.UUIDField(required=False)

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if ("text" in data) == ("profile_id" in data):
            raise ValidationError({"non_field_errors": ["Give exactly one of text and profile_id."]})
        return data


class PairSerializer(StrictSerializer):
    a = SideSerializer()
    b = SideSerializer()


class SimilarityBatchSerializer(StrictSerializer):
    pairs = PairSerializer(many=True, allow_empty=False, help_text="At most ML_BATCH_MAX_ITEMS (128) pairs.")


class SimilarityItemSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    similarity = serializers.FloatField(
        allow_null=True,
        help_text="Cosine in [-1, 1] (method embedding) or interest Jaccard in [0, 1] (method interests).",
    )
    method = serializers.ChoiceField(choices=["embedding", "interests"], allow_null=True)
    reason = serializers.ChoiceField(choices=["no_text", *FALLBACKS], allow_null=True)


class SimilarityResponseSerializer(serializers.Serializer):
    model = serializers.CharField()
    available = serializers.BooleanField()
    fallback = serializers.ChoiceField(choices=FALLBACKS, allow_null=True)
    results = SimilarityItemSerializer(many=True)
    latency_ms = serializers.FloatField()


class RankItemSerializer(StrictSerializer):
    user_id = serializers.UUIDField()
    candidate_ids = serializers.ListField(
        child=serializers.UUIDField(), allow_empty=False, help_text="At most ML_RANK_MAX_CANDIDATES (200), distinct."
    )

    def validate_candidate_ids(self, value: list[Any]) -> list[Any]:
        seen: set[Any] = set()
        duplicates: dict[str, list[str]] = {}
        for i, candidate in enumerate(value):
            if candidate in seen:
                duplicates[str(i)] = [f"Duplicate candidate id {candidate}."]
            seen.add(candidate)
        if duplicates:
            raise ValidationError(duplicates)
        return value


class RankBatchSerializer(StrictSerializer):
    requests = RankItemSerializer(many=True, allow_empty=False, help_text="At most ML_BATCH_MAX_ITEMS (128) users.")


RankComponentsSerializer = components_serializer(
    "RankComponentsSerializer",
    RANK_COMPONENTS,
    "The feed's signals for one (user, candidate) pair, full-precision; null = unavailable for the pair.",
)


class RankedCandidateSerializer(serializers.Serializer):
    candidate_id = serializers.UUIDField()
    rank = serializers.IntegerField(help_text="1-based position among all given candidates.")
    score = serializers.FloatField(help_text="The reciprocal score (components.reciprocal).")
    passes_filters = serializers.BooleanField(help_text="The feed could show this candidate to this user.")
    failed_filters = serializers.ListField(child=serializers.ChoiceField(choices=FILTER_REASONS))
    components = RankComponentsSerializer()


class RankingSerializer(serializers.Serializer):
    user_id = serializers.UUIDField()
    candidates = RankedCandidateSerializer(many=True)


class RankResponseSerializer(serializers.Serializer):
    rankings = RankingSerializer(many=True)
    model_version = serializers.CharField()
    available = serializers.BooleanField()
    fallback = serializers.ChoiceField(choices=FALLBACKS, allow_null=True)
    fusion = serializers.CharField(help_text="ML_FUSION_METHOD.")
    latency_ms = serializers.FloatField()


class CheckSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    latency_ms = serializers.FloatField(required=False)
    error = serializers.CharField(required=False)
    mode = serializers.CharField(required=False)


class EmbeddingModelStatusSerializer(serializers.Serializer):
    available = serializers.BooleanField()
    name = serializers.CharField()
    requested_device = serializers.CharField(help_text="EMBEDDING_DEVICE.")
    backend = serializers.CharField(help_text="EMBEDDING_BACKEND: torch, torch-bf16, onnx or onnx-int8.")
    device = serializers.ChoiceField(choices=["cpu", "cuda", "mps"], allow_null=True)
    dimension = serializers.IntegerField(allow_null=True)
    path = serializers.CharField(allow_null=True)
    error = serializers.CharField(allow_null=True)


class SafetyModelStatusSerializer(serializers.Serializer):
    available = serializers.BooleanField()
    name = serializers.CharField(allow_null=True)
    trained_heads = serializers.BooleanField(required=False)
    error = serializers.CharField(allow_null=True)


class MlModelsSerializer(serializers.Serializer):
    embedding = EmbeddingModelStatusSerializer()
    safety = SafetyModelStatusSerializer(required=False)


class IndexStatusSerializer(serializers.Serializer):
    loaded = serializers.BooleanField()
    version = serializers.CharField(allow_null=True, required=False)
    size = serializers.IntegerField(required=False)
    built_at = serializers.DateTimeField(allow_null=True, required=False)
    age_seconds = serializers.FloatField(allow_null=True, required=False)
    last_error = serializers.CharField(allow_null=True, required=False)


class ActiveVersionsSerializer(serializers.Serializer):
    embedding = serializers.CharField(allow_null=True, required=False)
    collaborative = serializers.CharField(allow_null=True, required=False)
    ranker = serializers.CharField(allow_null=True, required=False)
    safety = serializers.CharField(allow_null=True, required=False)
    index = serializers.CharField(allow_null=True, required=False)


class MlHealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ready", "degraded", "unavailable"])
    reason = serializers.CharField(allow_blank=True)
    ml_enabled = serializers.BooleanField()
    models = MlModelsSerializer()
    active_versions = ActiveVersionsSerializer(help_text="The tenant's active registry version per model type.")
    index = IndexStatusSerializer(help_text="The tenant's serving index in this process.")
    cache = CheckSerializer()
    broker = CheckSerializer()
    database = CheckSerializer()
    serving = serializers.DictField(
        child=IndexStatusSerializer(), help_text="Every index this process serves, by tenant."
    )
    mode = serializers.ChoiceField(choices=["embedded", "real"])


# --------------------------------------------------------------------------- answers


def _vector(vector: Any) -> list[float] | None:
    return None if vector is None else [float(x) for x in vector.tolist()]


def embeddings_response(batch: EmbeddingBatch, profile_ids: list[Any] | None) -> dict[str, Any]:
    items = []
    for i, item in enumerate(batch.items):
        row: dict[str, Any] = {"index": i}
        if profile_ids is not None:
            row["profile_id"] = str(profile_ids[i])
        row.update(vector=_vector(item.vector), source=item.source, reason=item.reason)
        items.append(row)
    return {
        "model": batch.model,
        "dimension": batch.dimension,
        "available": batch.available,
        "fallback": batch.fallback,
        "items": items,
        "stats": batch.stats,
        "latency_ms": batch.latency_ms,
    }


def similarity_response(batch: SimilarityBatch) -> dict[str, Any]:
    return {
        "model": batch.model,
        "available": batch.available,
        "fallback": batch.fallback,
        "results": [
            {"index": i, "similarity": r.similarity, "method": r.method, "reason": r.reason}
            for i, r in enumerate(batch.results)
        ],
        "latency_ms": batch.latency_ms,
    }


def rank_response(batch: RankBatch) -> dict[str, Any]:
    return {
        "rankings": [
            {
                "user_id": str(r.user_id),
                "candidates": [
                    {
                        "candidate_id": str(c.candidate_id),
                        "rank": c.rank,
                        "score": c.score,
                        "passes_filters": c.passes_filters,
                        "failed_filters": c.failed_filters,
                        "components": c.components,
                    }
                    for c in r.candidates
                ],
            }
            for r in batch.rankings
        ],
        "model_version": batch.model_version,
        "available": batch.available,
        "fallback": batch.fallback,
        "fusion": batch.fusion,
        "latency_ms": batch.latency_ms,
    }


# --------------------------------------------------------------------------- views


class MlView(APIView):
    permission_classes = [IsServiceKeyForMl]
    throttle_classes = ML_THROTTLES


_BATCH_ERRORS = errors(400, 413, *AUTH_ERRORS, e403="A user token: the ML API needs a tenant service key.")


class EmbeddingsBatchView(MlView):
    @extend_schema(
        operation_id="ml_embeddings_batch",
        summary="Texts or profiles to vectors",
        description=(
            "Exactly one of `texts` and `profile_ids`. Texts are encoded in one model call. A profile "
            "gets its stored embedding (from the cache when there) while it is fresh -- made by the "
            "configured model from the profile's current text -- else one encoded now from that text; a "
            "profile without text has no vector (`reason: no_text`). With ML disabled or the model "
            "missing: 200, `available: false`, a `fallback` reason and no vectors. Unknown profile ids "
            "(other tenants' included): 400 keyed by index."
        ),
        tags=["ml"],
        request=EmbeddingsBatchSerializer,
        responses={200: EmbeddingResponseSerializer, **_BATCH_ERRORS},
        parameters=[RETRY_AFTER],
        examples=[
            OpenApiExample("texts", value={"texts": ["I love hiking", "Board games and coffee"]}, request_only=True),
            OpenApiExample(
                "profiles", value={"profile_ids": ["5b6f3f8e-4f7c-4a9e-9a55-0c1f0d6b2a11"]}, request_only=True
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        check_count(request.data, "texts", settings.ML_BATCH_MAX_ITEMS)
        check_count(request.data, "profile_ids", settings.ML_BATCH_MAX_ITEMS)
        data = validated(EmbeddingsBatchSerializer, request.data)
        client: ApiClient = request.user
        profile_ids = data.get("profile_ids")
        batch = embeddings_compute(tenant=client.tenant, texts=data.get("texts"), profile_ids=profile_ids)
        return Response(embeddings_response(batch, profile_ids))


def _side(data: dict[str, Any]) -> Side:
    return Side(text=data.get("text"), profile_id=data.get("profile_id"))


class SimilarityBatchView(MlView):
    @extend_schema(
        operation_id="ml_similarity_batch",
        summary="Pairs to cosine similarities",
        description=(
            'Each side of a pair is `{"text": ...}` or `{"profile_id": ...}` (text/text, '
            "profile/profile, profile/text). `similarity` is the cosine of the two vectors in [-1, 1]; "
            "null when a profile has no text. Fallback (ML disabled or model missing): profile/profile "
            "pairs get the Jaccard overlap of their interests in [0, 1] with `method: interests`, pairs "
            "with a text get null, and `available` is false."
        ),
        tags=["ml"],
        request=SimilarityBatchSerializer,
        responses={200: SimilarityResponseSerializer, **_BATCH_ERRORS},
        parameters=[RETRY_AFTER],
        examples=[
            OpenApiExample(
                "mixed",
                value={
                    "pairs": [
                        {"a": {"text": "I love hiking"}, "b": {"text": "Mountains every weekend"}},
                        {
                            "a": {"profile_id": "5b6f3f8e-4f7c-4a9e-9a55-0c1f0d6b2a11"},
                            "b": {"text": "Board games"},
                        },
                    ]
                },
                request_only=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        check_count(request.data, "pairs", settings.ML_BATCH_MAX_ITEMS)
        data = validated(SimilarityBatchSerializer, request.data)
        pairs = [(_side(p["a"]), _side(p["b"])) for p in data["pairs"]]
        batch = similarities_compute(tenant=request.user.tenant, pairs=pairs)
        return Response(similarity_response(batch))


class RankBatchView(MlView):
    @extend_schema(
        operation_id="ml_profiles_rank_batch",
        summary="Rank each user's given candidates",
        description=(
            "Scores every given candidate with the feed's scoring (same signals, weights and fusion) "
            "and returns all of them: first those passing the feed's filters by descending reciprocal "
            "score, then the others (`passes_filters: false`, reasons in `failed_filters`: "
            + ", ".join(FILTER_REASONS)
            + "). Nothing is written. Fallback (ML disabled or model missing): the feed's fallback "
            "signals (structured score, Elo, liked-you), `available: false`."
        ),
        tags=["ml"],
        request=RankBatchSerializer,
        responses={200: RankResponseSerializer, **_BATCH_ERRORS},
        parameters=[RETRY_AFTER],
    )
    def post(self, request: Request) -> Response:
        check_count(request.data, "requests", settings.ML_BATCH_MAX_ITEMS, "users in requests")
        items = request.data.get("requests") if isinstance(request.data, dict) else None
        if isinstance(items, list):
            for item in items:
                check_count(item, "candidate_ids", settings.ML_RANK_MAX_CANDIDATES, "candidates per user")
            total = sum(
                len(i["candidate_ids"])
                for i in items
                if isinstance(i, dict) and isinstance(i.get("candidate_ids"), list)
            )
            if total > settings.ML_RANK_MAX_PAIRS:
                raise BatchTooLarge("requests", settings.ML_RANK_MAX_PAIRS, total, "(user, candidate) pairs")
        data = validated(RankBatchSerializer, request.data)
        requests = [RankRequest(user_id=r["user_id"], candidate_ids=r["candidate_ids"]) for r in data["requests"]]
        batch = profiles_rank(tenant=request.user.tenant, requests=requests)
        return Response(rank_response(batch))


class MlHealthView(APIView):
    permission_classes = [IsServiceKeyForMl]

    @extend_schema(
        operation_id="ml_health",
        summary="ML readiness for the key's tenant",
        description=(
            "ML enabled, the embedding model (name, device, dimension, path), the safety classifier, "
            "the tenant's active model versions, its serving index (size, age), cache, broker and "
            "database, and an overall `status` with its `reason`: `ready`; `degraded` (cache or broker "
            "down, no serving index, a model version failed to load); `unavailable` (database down, ML "
            "disabled, or the embedding model not loadable), which answers 503."
        ),
        tags=["ml", "health"],
        responses={
            200: MlHealthSerializer,
            503: OpenApiResponse(
                {"anyOf": [{"$ref": "#/components/schemas/MlHealth"}, error_ref("Error")]},
                description="`unavailable` (the report), or the database did not answer while checking the key.",
            ),
            **errors(401, 403, 429, e403="A user token: ML health needs a tenant service key."),
        },
        parameters=[RETRY_AFTER_THROTTLED],
    )
    def get(self, request: Request) -> Response:
        report = ml_health(tenant=request.user.tenant)
        return Response(report, status=503 if report["status"] == "unavailable" else 200)
