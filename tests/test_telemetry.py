"""Optional tracing (OpenTelemetry) and error reports (Sentry): off by default; when set, they load
in a real process and deliver to a local collector over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from django.conf import settings

from core.telemetry import configure_telemetry

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import patra.wsgi  # turns tracing and Sentry on, then loads the middleware
import sentry_sdk
from django.conf import settings
from django.test import Client
from opentelemetry import trace

assert any("opentelemetry" in m for m in settings.MIDDLEWARE), settings.MIDDLEWARE
assert Client().get("/livez").status_code == 200
sentry_sdk.capture_message("telemetry test")
assert trace.get_tracer_provider().force_flush(10_000)
sentry_sdk.flush(10)
print("tracer", type(trace.get_tracer_provider()).__name__)
"""


def test_both_are_off_by_default() -> None:
    assert settings.OTEL_EXPORTER_OTLP_ENDPOINT == "" and settings.SENTRY_DSN == ""
    assert configure_telemetry() == {"tracing": False, "sentry": False}
    assert not any("opentelemetry" in m for m in settings.MIDDLEWARE)


def test_tracing_and_sentry_load_and_deliver_when_set() -> None:
    received: list[tuple[str, int]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append((self.path, len(body)))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
        OTEL_SERVICE_NAME="patra-test",
        SENTRY_DSN=f"http://publickey@127.0.0.1:{port}/1",
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr[-3000:]
    assert "tracer TracerProvider" in result.stdout
    paths = [path for path, size in received if size > 0]
    assert "/v1/traces" in paths, received  # the request's span, exported over OTLP/HTTP
    assert any(path.startswith("/api/1/envelope") for path in paths), received  # the Sentry event
