"""The request's id, access log line and metrics; answering API callers in JSON even where no API
view ran."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import resolve

from core import logging as log_context
from core.metrics import observe_request
from core.probes import probe_views

API_PREFIXES = ("/api/", "/internal/")
# Probed every few seconds by orchestrators and scrapers: counted in the metrics, not logged.
QUIET_PATHS = frozenset({"/livez", "/readyz", "/metrics"})
# An incoming X-Request-ID is kept when it is a plausible id, else a new one is made.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

access_log = logging.getLogger("patra.request")


class RequestContextMiddleware:
    """First in the chain: takes the caller's ``X-Request-ID`` (or makes one) and returns it,
    binds it to every log line of the request (``core.logging``), then writes one access line
    (method, path, view, status, duration; tenant and credential kind once the bearer
    authentication bound them) and counts the request by view (``core.metrics``). The view is
    the URL pattern's name (``api:feed``), never the raw path, so the series stay few."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        given = request.headers.get("X-Request-ID", "")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        token = log_context.bind(request_id=request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            seconds = time.perf_counter() - started
            match = request.resolver_match
            view = (match.view_name or match.url_name or "unnamed") if match is not None else "unmatched"
            response["X-Request-ID"] = request_id
            observe_request(view, request.method or "", response.status_code, seconds)
            if request.path not in QUIET_PATHS:
                log_context.bind(view=view)
                _log_access(request, response.status_code, seconds)
            # This line replaces django.request's "Not Found: ..." / "Service Unavailable: ..." of a
            # 4xx/5xx answer, which Django writes after every middleware ran, without the request
            # id (an exception's own line, with its traceback, is still written, with the id).
            response._has_been_logged = True  # type: ignore[attr-defined]
            return response
        finally:
            log_context.reset(token)


def _log_access(request: HttpRequest, status: int, seconds: float) -> None:
    level = logging.ERROR if status >= 500 else logging.WARNING if status >= 400 else logging.INFO
    extra = {"method": request.method, "path": request.path, "status": status, "duration_ms": round(seconds * 1000, 3)}
    access_log.log(level, "%s %s %s", request.method, request.path, status, extra=extra)


class ProbeMiddleware:
    """Answers ``/livez``, ``/readyz`` and ``/metrics`` before the middleware that reads the Host
    header or redirects to HTTPS: the kubelet and Prometheus call a pod by its IP address over
    plain HTTP, which ``ALLOWED_HOSTS`` would refuse (400) and ``SECURE_SSL_REDIRECT`` would
    answer with a redirect a probe counts as success. None of the three builds a URL from the
    Host header; ``/metrics`` keeps its own guard (``core.probes``)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        # resolved once: the match gives the request metrics their view name
        self.routes = {path: (view, resolve(path)) for path, view in probe_views().items()}

    def __call__(self, request: HttpRequest) -> HttpResponse:
        route = self.routes.get(request.path_info)
        if route is None:
            return self.get_response(request)
        view, request.resolver_match = route
        return view(request)


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
