"""Jobs (training, embedding, indexing) run as Celery tasks and tracked by a TaskRun.

Other apps register their jobs by name, usually in their AppConfig.ready()::

    from registry.tasks import JobContext, register_job

    @register_job("train_ranker", queue="training", description="Train the LightGBM ranker")
    def train_ranker(ctx: JobContext) -> ModelVersion:
        with ctx.registering(model_type="ranker") as handle:
            ...  # write into handle.workdir, ctx.progress(epoch=3, of=10), fill handle.metrics
        return handle.version

and start them with ``registry.services.task_run_start(kind="train_ranker", ...)`` (the admin
does). The single Celery task below claims the run once, calls the job and records the outcome.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery import shared_task
from django.conf import settings

from recommender.models import Tenant
from registry.models import ModelVersion, TaskRun
from registry.services import (
    RegistrationHandle,
    registering,
    task_run_claim,
    task_run_finish,
    task_run_progress,
    task_runs_sweep_stale,
)

logger = logging.getLogger(__name__)


@dataclass
class JobContext:
    run: TaskRun
    tenant: Tenant
    params: dict[str, Any]

    @property
    def created_by(self) -> str:
        return f"task:{self.run.kind}:{self.run.pk}"

    def progress(self, **fields: Any) -> None:
        """Merge ``fields`` into the run's progress (shown live on its admin page)."""
        task_run_progress(run=self.run, **fields)

    @contextmanager
    def registering(
        self, *, model_type: str, parameters: dict[str, Any] | None = None, data_ref: dict[str, Any] | None = None
    ) -> Iterator[RegistrationHandle]:
        with registering(
            tenant=self.tenant,
            model_type=model_type,
            created_by=self.created_by,
            parameters=parameters,
            data_ref=data_ref,
        ) as handle:
            yield handle


JobFunc = Callable[[JobContext], ModelVersion | None]
# A declared parameter: its allowed values, a check that raises ValueError on a bad value, or None
# (any text).
ParamSpec = tuple[str, ...] | Callable[[str], object] | None


@dataclass(frozen=True)
class Job:
    name: str
    func: JobFunc
    queue: str = "default"
    description: str = ""
    # name -> spec of every parameter the job reads; None: not declared, taken as given (jobs
    # started only by code, such as the test suite's)
    params: dict[str, ParamSpec] | None = None

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` if the job declares every key and accepts every value; otherwise a
        ValueError naming the first bad parameter and what it takes."""
        if self.params is None:
            return params
        for key, value in params.items():
            if key not in self.params:
                known = ", ".join(sorted(self.params)) or "none"
                raise ValueError(f"{self.name} has no parameter {key!r}; its parameters: {known}")
            spec = self.params[key]
            if isinstance(spec, tuple) and str(value) not in spec:
                raise ValueError(f"{key} must be one of {', '.join(spec)}, not {value!r}")
            if callable(spec):
                try:
                    spec(str(value))
                except ValueError as exc:
                    raise ValueError(f"{key}: {exc}") from exc
        return params


JOBS: dict[str, Job] = {}
BOOLEAN: tuple[str, ...] = ("true", "false")


def is_true(value: object) -> bool:
    """A boolean job parameter: parameters typed in the admin arrive as text."""
    return str(value).strip().lower() not in ("false", "0", "no", "")


def register_job(
    name: str, *, queue: str = "default", description: str = "", params: dict[str, ParamSpec] | None = None
) -> Callable[[JobFunc], JobFunc]:
    def decorator(func: JobFunc) -> JobFunc:
        JOBS[name] = Job(
            name=name, func=func, queue=queue, description=description or (func.__doc__ or "").strip(), params=params
        )
        return func

    return decorator


def execute_run(*, run_id: str, celery_task_id: str = "") -> str | None:
    """Claim the run, call its job, record success (with the version) or the error."""
    run = task_run_claim(run_id=run_id, celery_task_id=celery_task_id)
    if run is None:
        logger.info("task run %s is not queued (already claimed, or gone); nothing to do", run_id)
        return None
    job = JOBS.get(run.kind)
    if job is None:
        task_run_finish(run=run, error=f"No job named {run.kind!r} is registered in this worker.")
        return None
    try:
        version = job.func(JobContext(run=run, tenant=run.tenant, params=dict(run.params)))
    except Exception as exc:
        # Recorded on the run, not re-raised: a retry would only repeat the failure, and the
        # person who started it reads the error on the run's page.
        logger.exception("job %s (run %s) failed", run.kind, run.pk)
        task_run_finish(run=run, error="".join(traceback.format_exception(exc))[-10_000:])
        return None
    task_run_finish(run=run, version=version)
    return str(version.pk) if version is not None else None


@shared_task(name="registry.tasks.run_job", bind=True, acks_late=True, reject_on_worker_lost=True)
def run_job(self: Any, run_id: str) -> str | None:
    return execute_run(run_id=run_id, celery_task_id=self.request.id or "")


@shared_task(name="registry.tasks.sweep_stale_runs")
def sweep_stale_runs() -> int:
    """Periodic: fail runs and half-registered versions older than any task can live."""
    return task_runs_sweep_stale(older_than=timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 600))
