"""Answer API callers in JSON even where no API view ran."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

API_PREFIXES = ("/api/", "/internal/")


class ApiNotFoundMiddleware:
    """A path under the API that matches no route (a malformed id, say) gets a JSON 404 like
    every API view's, in production and under DEBUG alike; people browsing the admin or the
    console keep Django's page."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code == 404
            and request.path.startswith(API_PREFIXES)
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            return JsonResponse({"detail": f"No such endpoint or object: {request.path}"}, status=404)
        return response
