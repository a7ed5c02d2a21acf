"""The operators' endpoints outside the API: ``GET /livez``, ``GET /readyz`` and ``GET /metrics``.

* ``/livez``: 200 while the process answers at all; no dependency is checked (a restart would
  not fix a database outage, so liveness must not fail for one).
* ``/readyz``: checks the database, the cache and the broker (``core.health``'s probes) and
  whether this process holds what it serves. 503, with JSON naming what is missing, while the
  database is unreachable or the process is still warming up, so that a new worker stays out of
  the load balancer until it can serve. An unreachable cache or broker is reported (``status``
  "degraded", ``unreachable`` names it) with a 200: every pod shares them, so failing readiness
  for them would take the whole fleet out of the balancer at once, while the API still serves
  from the database without them (feeds, events; tasks wait for the broker). What a process must hold is
  asked of the warm-up sources apps register (:func:`register_warmup`, from ``AppConfig.ready``):
  a source starts warming on its first call (idempotent, once per process) and returns what is
  still warming. gunicorn's ``post_worker_init`` hook calls :func:`start_warmup` so each worker
  warms at boot; otherwise the first ``/readyz`` starts it.
* ``/metrics``: Prometheus text (``core.metrics.render``). With ``METRICS_TOKEN`` set, only a
  request with ``Authorization: Bearer <METRICS_TOKEN>`` gets it (401 otherwise). Without it,
  only a direct request from a loopback or private address, with no ``X-Forwarded-For`` or
  ``Forwarded`` header (a request relayed by a proxy or ingress, even a private one, is
  refused), gets it (403 otherwise).

These are plain Django views, not DRF ones: no authentication, throttling or OpenAPI schema.
``patra.middleware.ProbeMiddleware`` answers them ahead of the host check and the HTTPS redirect,
so an orchestrator or a scraper may call a pod by its address over plain HTTP.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from core import metrics
from core.health import dependency_checks

# Starts warming what this process serves (once per process; later calls only look) and
# returns what is still warming, e.g. ["candidate store of tenant 3"]; [] when warm.
WarmupSource = Callable[[], list[str]]

_warmups: list[WarmupSource] = []


def register_warmup(source: WarmupSource) -> None:
    if source not in _warmups:
        _warmups.append(source)


def start_warmup() -> list[str]:
    """Start every warm-up source; what is still warming."""
    waiting: list[str] = []
    for source in _warmups:
        waiting += source()
    return waiting


def probe_views() -> dict[str, Callable[[HttpRequest], HttpResponse]]:
    """The operators' endpoints by path (``ProbeMiddleware`` answers these itself)."""
    return {"/livez": livez, "/readyz": readyz, "/metrics": metrics_view}


@require_GET
@never_cache
def livez(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "alive"})


@require_GET
@never_cache
def readyz(request: HttpRequest) -> HttpResponse:
    checks = dependency_checks()
    waiting = start_warmup()
    down = [name for name, check in checks.items() if not check["ok"]]
    ready = "database" not in down and not waiting
    body = {
        "status": ("degraded" if down else "ready") if ready else "not_ready",
        "unreachable": down,
        "warming_up": waiting,
        "checks": checks,
    }
    return JsonResponse(body, status=200 if ready else 503)


@require_GET
@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    refused = _metrics_refusal(request)
    if refused is not None:
        return refused
    return HttpResponse(metrics.render(), content_type=metrics.CONTENT_TYPE)


def _metrics_refusal(request: HttpRequest) -> HttpResponse | None:
    token = settings.METRICS_TOKEN
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme == "Bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return None
        response = JsonResponse({"detail": "Metrics need 'Authorization: Bearer <METRICS_TOKEN>'."}, status=401)
        response["WWW-Authenticate"] = "Bearer"
        return response
    if _direct_private(request):
        return None
    return JsonResponse(
        {"detail": "Metrics are served only to direct requests from private addresses unless METRICS_TOKEN is set."},
        status=403,
    )


def _direct_private(request: HttpRequest) -> bool:
    if "HTTP_X_FORWARDED_FOR" in request.META or "HTTP_FORWARDED" in request.META:
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return address.is_loopback or address.is_private
