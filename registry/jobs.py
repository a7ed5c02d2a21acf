"""Jobs (training, embedding, indexing) that ML admins start from the registry, and their runs.

Other apps register their jobs by name, in their AppConfig.ready() (the registry never imports
them)::

    from registry.jobs import JobContext, register_job

    @register_job("train_ranker", queue="training", description="Train the LightGBM ranker")
    def train_ranker(ctx: JobContext) -> ModelVersion:
        with ctx.registering(model_type="ranker") as handle:
            ...  # write into handle.workdir, ctx.progress(epoch=3, of=10), fill handle.metrics
        return handle.version

and start them with ``task_run_start(kind="train_ranker", ...)`` (the admin does): it records a
TaskRun and, after commit, queues the Celery task ``registry.tasks.run_job`` by name, which calls
``execute_run``: claim the run once, call the job, record the outcome.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery.result import AsyncResult
from django.db import transaction
from django.utils import timezone

from accounts.models import Tenant
from core.tasks import enqueue_task
from registry.models import ModelVersion, TaskRun, TaskRunStatus, VersionStatus
from registry.selectors import Actor, actor_name
from registry.services import RegistrationHandle, RegistryError, jsonable, model_version_fail, registering

logger = logging.getLogger(__name__)

# The Celery task that runs a job (registry/tasks.py), queued by name: tasks import this module.
RUN_JOB_TASK = "registry.tasks.run_job"
WORKER_LOST = "The worker running this job died (killed, out of memory or restarted); nothing was kept."


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


# --- Task runs -----------------------------------------------------------------------------------


def task_run_start(
    *, kind: str, tenant: Tenant, actor: Actor, task: str = RUN_JOB_TASK, params: dict[str, Any] | None = None
) -> TaskRun:
    """Record a run of the job ``kind`` and queue it (``task``: the name of the Celery task that
    runs it; any registered task taking the run id works). Queued after commit, so the worker
    finds the row."""
    if kind not in JOBS:
        raise RegistryError(f"Unknown job {kind!r}; known jobs: {', '.join(sorted(JOBS)) or 'none'}.")
    try:
        JOBS[kind].check_params(dict(params or {}))
    except ValueError as exc:
        raise RegistryError(str(exc)) from exc
    run = TaskRun.objects.create(kind=kind, tenant=tenant, started_by=actor_name(actor), params=jsonable(params))

    def record_task_id(result: AsyncResult) -> None:
        # Eager mode has finished the run by now; only fill the id, never overwrite its outcome.
        TaskRun.objects.filter(pk=run.pk).update(celery_task_id=result.id or "")

    enqueue_task(task, args=[str(run.pk)], options={"queue": JOBS[kind].queue}, on_sent=record_task_id)
    return run


def task_run_claim(*, run_id: Any, celery_task_id: str = "") -> TaskRun | None:
    """Claim a queued run once.

    A message delivered again for a run that is still ``running`` under the same Celery task id
    means the worker that ran it died (tasks are acknowledged late, so the broker hands the
    message out again): the run and any version it left ``registering`` are marked failed, and
    nothing runs twice. The previously active version keeps serving throughout.
    """
    with transaction.atomic():
        run = TaskRun.objects.select_for_update().select_related("tenant").filter(pk=run_id).first()
        if run is not None and run.status == TaskRunStatus.RUNNING and celery_task_id == run.celery_task_id:
            task_run_abandon(run=run, error=WORKER_LOST)
            return None
        if run is None or run.status != TaskRunStatus.QUEUED:
            return None
        run.status = TaskRunStatus.RUNNING
        run.started_at = timezone.now()
        fields = ["status", "started_at"]
        if celery_task_id:
            run.celery_task_id = celery_task_id
            fields.append("celery_task_id")
        run.save(update_fields=fields)
    return run


def task_run_abandon(*, run: TaskRun, error: str) -> None:
    """Fail a run whose worker is gone, and every version it left half-registered."""
    for version in ModelVersion.objects.filter(
        status=VersionStatus.REGISTERING, created_by=f"task:{run.kind}:{run.pk}"
    ):
        model_version_fail(version=version, error=error)
    task_run_finish(run=run, error=error)


def task_runs_sweep_stale(*, older_than: timedelta) -> int:
    """Fail runs still ``running`` (and versions still ``registering``) long after any task
    could still be alive: the safety net for a worker lost without its message coming back."""
    cutoff = timezone.now() - older_than
    stale = 0
    for run in TaskRun.objects.filter(status=TaskRunStatus.RUNNING, started_at__lt=cutoff):
        task_run_abandon(run=run, error=WORKER_LOST)
        stale += 1
    for version in ModelVersion.objects.filter(status=VersionStatus.REGISTERING, created_at__lt=cutoff):
        model_version_fail(version=version, error=WORKER_LOST)
        stale += 1
    return stale


def task_run_progress(*, run: TaskRun, **progress: Any) -> None:
    run.progress = {**run.progress, **jsonable(progress)}
    run.save(update_fields=["progress"])


def task_run_finish(*, run: TaskRun, version: ModelVersion | None = None, error: str = "") -> None:
    run.status = TaskRunStatus.FAILED if error else TaskRunStatus.SUCCEEDED
    run.version = version
    run.error = error[:10_000]
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "version", "error", "finished_at"])
