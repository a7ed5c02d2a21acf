"""Optional tracing and error reports, both off by default.

* ``OTEL_EXPORTER_OTLP_ENDPOINT`` set: OpenTelemetry traces of Django requests, Celery tasks
  (publish and run, linked), psycopg queries and Redis commands, exported over OTLP/HTTP to
  ``<endpoint>/v1/traces`` as service ``OTEL_SERVICE_NAME``.
* ``SENTRY_DSN`` set: unhandled errors of requests and tasks to Sentry (Django and Celery
  integrations; no personal data: ``send_default_pii`` off), with ``SENTRY_TRACES_SAMPLE_RATE``
  of transactions.

:func:`configure_telemetry` runs once per process: in ``patra/wsgi.py`` and ``patra/asgi.py``
before the middleware is loaded (the Django instrumentation adds its own), and in each Celery
worker process (``patra/celery.py``). The libraries are imported only when their setting is on.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from django.conf import settings

from core.logging import redact

logger = logging.getLogger(__name__)

_configured_pid: int | None = None


def configure_telemetry() -> dict[str, bool]:
    """Turn on what the settings ask for (once per process); which of the two are on."""
    global _configured_pid
    on = {"tracing": bool(settings.OTEL_EXPORTER_OTLP_ENDPOINT), "sentry": bool(settings.SENTRY_DSN)}
    if _configured_pid == os.getpid():
        return on
    _configured_pid = os.getpid()
    if on["tracing"]:
        _configure_tracing()
    if on["sentry"]:
        _configure_sentry()
    return on


def _configure_tracing() -> None:
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": settings.OTEL_SERVICE_NAME}))
    endpoint = settings.OTEL_EXPORTER_OTLP_ENDPOINT.rstrip("/") + "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    for instrumentor in (DjangoInstrumentor(), CeleryInstrumentor(), PsycopgInstrumentor(), RedisInstrumentor()):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
    logger.info("tracing on: OTLP/HTTP to %s as %s", endpoint, settings.OTEL_SERVICE_NAME)


def _configure_sentry() -> None:
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=settings.SENTRY_DSN,
        environment=settings.SENTRY_ENVIRONMENT,
        traces_sample_rate=settings.SENTRY_TRACES_SAMPLE_RATE,
        send_default_pii=False,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        before_send=_redacted,
    )
    logger.info("error reports on: Sentry, environment %s", settings.SENTRY_ENVIRONMENT)


def _redacted(event: Any, hint: dict[str, Any]) -> Any:
    """Mask credentials in an event's messages, as the logs do (core.logging.redact)."""
    logentry = event.get("logentry") or {}
    for key in ("message", "formatted"):
        if isinstance(logentry.get(key), str):
            logentry[key] = redact(logentry[key])
    for exc in (event.get("exception") or {}).get("values") or []:
        if isinstance(exc.get("value"), str):
            exc["value"] = redact(exc["value"])
    return event
