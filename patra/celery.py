"""The Celery application. Configuration lives in patra/settings.py under the CELERY_ prefix.

Its signals give every task what a web request has (core/logging.py, core/metrics.py): the
request id of the request that enqueued it travels in the message's ``patra_request_id``
header, and the task's log lines carry it with the task's id and name; each run is timed and
counted by task (duration, failures, retries). A worker keeps the project's ``LOGGING`` (JSON or
text) instead of installing Celery's own, and with ``WORKER_METRICS_PORT`` serves its metrics.
"""

import logging
import os
import time
from typing import Any

from celery import Celery, signals
from django.conf import settings
from prometheus_client import start_http_server

from core import logging as log_context
from core import metrics

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "patra.settings")

app = Celery("patra")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

REQUEST_ID_HEADER = "patra_request_id"
task_log = logging.getLogger("patra.task")

# task id -> (log context token, start time); a task runs on one thread, start to end.
_running: dict[str, tuple[Any, float]] = {}


@app.task(name="patra.ping", acks_late=True)
def ping() -> str:
    """A task with no side effects: lets operators and tests check broker and workers end to end."""
    return "pong"


@signals.setup_logging.connect
def _keep_django_logging(**_: Any) -> None:
    """Connected, so that Celery does not replace the root logger's handlers: Django has
    configured them from ``settings.LOGGING`` already (django.setup() in the worker)."""


@signals.before_task_publish.connect
def _send_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    request_id = log_context.current_request_id()
    if request_id and headers is not None:
        headers.setdefault(REQUEST_ID_HEADER, request_id)


@signals.task_prerun.connect
def _task_started(task_id: str = "", task: Any = None, **_: Any) -> None:
    request_id = getattr(task.request, REQUEST_ID_HEADER, None) or (task.request.headers or {}).get(REQUEST_ID_HEADER)
    fields: dict[str, Any] = {"task_id": task_id, "task_name": task.name}
    if request_id:  # eager tasks keep the enqueuing request's id from the context itself
        fields["request_id"] = request_id
    _running[task_id] = (log_context.bind(**fields), time.perf_counter())


@signals.task_postrun.connect
def _task_finished(task_id: str = "", task: Any = None, state: str | None = None, **_: Any) -> None:
    token, started = _running.pop(task_id, (None, time.perf_counter()))
    seconds = time.perf_counter() - started
    metrics.observe_task(task.name, state or "UNKNOWN", seconds)
    try:
        task_log.info("task %s %s", task.name, state, extra={"state": state, "duration_ms": round(seconds * 1000, 3)})
    finally:
        if token is not None:
            log_context.reset(token)


@signals.task_failure.connect
def _task_failed(sender: Any = None, **_: Any) -> None:
    metrics.count_task_failure(getattr(sender, "name", "unknown"))


@signals.task_retry.connect
def _task_retried(sender: Any = None, **_: Any) -> None:
    metrics.count_task_retry(getattr(sender, "name", "unknown"))


@signals.worker_init.connect
def _serve_worker_metrics(**_: Any) -> None:
    if settings.WORKER_METRICS_PORT:
        start_http_server(settings.WORKER_METRICS_PORT, registry=metrics.worker_registry())


@signals.worker_process_init.connect
@signals.worker_init.connect
def _telemetry(**_: Any) -> None:
    """Tracing and error reports in each process that runs tasks (once per process)."""
    from core.telemetry import configure_telemetry  # needs the settings, configured by now

    configure_telemetry()


@signals.worker_process_shutdown.connect
def _pool_process_exited(pid: int | None = None, **_: Any) -> None:
    metrics.mark_process_dead(pid or os.getpid())
