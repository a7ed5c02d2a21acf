"""The public readiness endpoint (``GET /api/v1/health``): no credential, for load balancers and
operators; its serializers describe core.health's report."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.health import health_report


class HealthCheckSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    latency_ms = serializers.FloatField(required=False)
    error = serializers.CharField(required=False)
    mode = serializers.CharField(required=False)


class ServingModelSerializer(serializers.Serializer):
    loaded = serializers.BooleanField()
    version = serializers.CharField(allow_null=True)
    size = serializers.IntegerField()
    built_at = serializers.DateTimeField(allow_null=True)
    age_seconds = serializers.FloatField(allow_null=True)
    last_error = serializers.CharField(allow_null=True)


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ready", "degraded", "unavailable"])
    reason = serializers.CharField(allow_blank=True)
    checks = serializers.DictField(child=HealthCheckSerializer(), help_text="database, cache and broker.")
    models = serializers.DictField(child=ServingModelSerializer(), help_text="Indexes this process serves.")
    mode = serializers.ChoiceField(choices=["embedded", "real"])


class HealthView(APIView):
    """Liveness and readiness, for load balancers and operators; no credential needed."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="health",
        summary="Readiness (public)",
        description="`ready`; `degraded` (cache or broker down, a model failed to load, a candidate store still "
        "building); `unavailable` (database down), which answers 503.",
        tags=["health"],
        responses={200: HealthSerializer, 503: HealthSerializer},
    )
    def get(self, request: Request) -> Response:
        report = health_report()
        return Response(report, status=503 if report["status"] == "unavailable" else 200)
