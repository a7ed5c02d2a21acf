"""Structured logs: JSON lines with the request id across the web line and the task it enqueued,
the X-Request-ID round trip, and no key, token or bio in any line (JSON or text)."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings

from core import logging as log_context
from core.logging import ContextFilter, JsonFormatter, TextFormatter, logging_config
from recommender.models import Profile
from tests.conftest import bearer_client, profile_data

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def json_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Every record logged during the test, as the production JSON handler writes it."""
    yield from _captured(JsonFormatter(), lambda text: [json.loads(line) for line in text.splitlines() if line])


@pytest.fixture
def text_log() -> Iterator[Callable[[], str]]:
    yield from _captured(TextFormatter(), lambda text: text)


def _captured(formatter: logging.Formatter, parse: Callable[[str], Any]) -> Iterator[Callable[[], Any]]:
    # Celery's first look-up of the apps' tasks in a process runs django.setup() again, which
    # re-applies LOGGING (dropping handlers added since): have it happen before adding ours.
    from patra.celery import app

    app.loader.import_default_modules()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield lambda: parse(stream.getvalue())
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


@pytest.mark.django_db(transaction=True)
def test_request_id_is_on_the_web_line_and_on_the_task_it_enqueued(service_client: Any, json_lines: Any, settings):
    settings.ML_ENABLED = False
    data = profile_data(bio="a bio for the task test")
    response = service_client.post("/internal/v1/profiles", data, format="json", HTTP_X_REQUEST_ID="req-trace-42")
    assert response.status_code == 201, response.content
    assert response["X-Request-ID"] == "req-trace-42"

    lines = json_lines()
    web = [r for r in lines if r["logger"] == "patra.request" and r.get("request_id") == "req-trace-42"]
    assert len(web) == 1, lines
    line = web[0]
    assert {"timestamp", "level", "logger", "message"} <= set(line)
    assert line["view"] == "internal:profile-create" and line["status"] == 201 and line["method"] == "POST"
    assert line["tenant"] == "default" and line["credential"] == "service"
    assert line["duration_ms"] > 0
    # the classification task the profile write enqueued (eager here) logs under the same id
    tasks = [r for r in lines if r.get("task_name") == "safety.tasks.classify_profile"]
    assert tasks and all(r["request_id"] == "req-trace-42" and r["task_id"] for r in tasks), lines


@pytest.mark.django_db
def test_request_id_is_made_when_missing_or_implausible(service_client: Any) -> None:
    made = service_client.get("/api/v1/health")["X-Request-ID"]
    assert len(made) == 32 and made != service_client.get("/api/v1/health")["X-Request-ID"]
    bad = service_client.get("/api/v1/health", HTTP_X_REQUEST_ID="x" * 300 + "\n")["X-Request-ID"]
    assert len(bad) == 32
    assert service_client.get("/api/v1/health", HTTP_X_REQUEST_ID="abc\n")["X-Request-ID"] != "abc\n"
    assert service_client.get("/livez", HTTP_X_REQUEST_ID="lb-7:probe")["X-Request-ID"] == "lb-7:probe"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fmt", ["json", "text"])
def test_no_key_token_or_bio_in_any_log_line(
    fmt: str, service_key: str, make_profile: Callable[..., Profile], user_client_for: Any, settings, request
) -> None:
    read = request.getfixturevalue("json_lines" if fmt == "json" else "text_log")
    settings.ML_ENABLED = False
    bio = "Secret bio text: I collect rare orchids 9f3b"
    profile = make_profile(bio=bio)
    service = bearer_client(service_key)
    created = service.post(f"/internal/v1/users/{profile.external_id}/tokens", format="json")
    assert created.status_code == 201
    token = created.json()["token"]
    user = bearer_client(token)
    other_bio = "Another private bio 77aa"
    assert service.post("/internal/v1/profiles", profile_data(bio=other_bio), format="json").status_code == 201
    assert (
        service.patch(f"/internal/v1/profiles/{profile.external_id}", {"bio": bio + " v2"}, format="json").status_code
        == 200
    )
    assert user.get("/api/v1/me").status_code == 200
    assert user.get("/api/v1/feed?count=2").status_code == 200
    assert bearer_client("psk_" + "n0t-a-real-key-but-secret").get("/api/v1/me").status_code == 401
    assert bearer_client(token + "x").get("/api/v1/me").status_code == 401
    # code that logs a credential by mistake: masked by the formatter
    logging.getLogger("tests.careless").warning("calling with %s and Authorization: Bearer %s", service_key, token)
    try:
        raise ValueError(f"failed for token={token}")
    except ValueError:
        logging.getLogger("tests.careless").exception("boom")

    output = read()
    text = output if isinstance(output, str) else json.dumps(output)
    assert "patra.request" in text and "tests.careless" in text  # the lines are there
    for secret in (service_key, token, service_key[4:], token[4:], "n0t-a-real-key-but-secret", bio, other_bio,
                   "rare orchids", "private bio"):  # fmt: skip
        assert secret not in text, f"{secret!r} was logged"


def test_logging_config_picks_the_formatter_and_refuses_unknown_formats() -> None:
    assert logging_config("json", "INFO")["handlers"]["console"]["formatter"] == "json"
    assert logging_config("text", "DEBUG")["handlers"]["console"]["formatter"] == "text"
    env = {**os.environ, "LOG_FORMAT": "xml"}
    result = subprocess.run([sys.executable, "-c", "import django; django.setup()"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode != 0 and "LOG_FORMAT='xml' is not valid" in result.stderr


def test_production_defaults_to_json_lines_with_the_fields() -> None:
    env = {**os.environ, "PATRA_ENV": "production", "SECRET_KEY": "k" * 40, "ALLOWED_HOSTS": "testserver"}
    env.pop("LOG_FORMAT", None)
    script = (
        "import django, logging; django.setup(); from core import logging as c; c.bind(request_id='r-1', tenant='t'); "
        "logging.getLogger('patra.x').warning('hello %s', 'world')"
    )
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert line["message"] == "hello world" and line["level"] == "WARNING" and line["logger"] == "patra.x"
    assert line["request_id"] == "r-1" and line["tenant"] == "t" and line["timestamp"].endswith("+00:00")


@pytest.mark.redis
def test_a_real_worker_logs_the_request_id_its_message_carried_and_serves_task_metrics(tmp_path: Path) -> None:
    from bench.server import free_port, wait_until
    from patra.celery import app

    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": django_settings.REDIS_URL,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "LOG_FORMAT": "json",
        "WORKER_METRICS_PORT": str(port),
    }
    log_path = tmp_path / "worker.log"
    queue = f"obs-{os.getpid()}"
    cmd = [sys.executable, "-m", "celery", "-A", "patra", "worker", "-Q", queue, "--pool", "solo",
           "-n", f"obs-{os.getpid()}@%h", "--without-gossip", "--without-mingle", "--loglevel", "INFO"]  # fmt: skip
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    was_eager, app.conf.task_always_eager = app.conf.task_always_eager, False  # through the broker
    try:
        token = log_context.bind(request_id="req-worker-9")
        try:
            result = app.send_task("patra.ping", queue=queue)
        finally:
            log_context.reset(token)
        assert result.get(timeout=60) == "pong"

        def task_lines() -> list[dict[str, Any]]:
            lines = []
            for raw in log_path.read_text().splitlines():
                if raw.startswith("{"):
                    record = json.loads(raw)
                    if record.get("logger") == "patra.task":
                        lines.append(record)
            return lines

        lines = wait_until(task_lines, 30, "the worker's task line")
        assert lines[0]["request_id"] == "req-worker-9" and lines[0]["task_name"] == "patra.ping"
        assert lines[0]["task_id"] == result.id and lines[0]["state"] == "SUCCESS"
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        assert 'patra_celery_task_duration_seconds_count{state="SUCCESS",task="patra.ping"} 1.0' in page
    finally:
        app.conf.task_always_eager = was_eager
        worker.terminate()
        worker.wait(timeout=30)
