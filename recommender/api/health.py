from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from patra.health import health_report


class HealthView(APIView):
    """Liveness and readiness, for load balancers and operators; no credential needed."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        report = health_report()
        return Response(report, status=503 if report["status"] == "unavailable" else 200)
