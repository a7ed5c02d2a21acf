"""The registry's Celery tasks: thin, they call registry.jobs.

``run_job`` runs one admin-startable job: ``registry.jobs.task_run_start`` records the run and
queues this task by its name after commit, so the jobs module never imports this one.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import shared_task
from django.conf import settings

from registry.jobs import RUN_JOB_TASK, execute_run, task_runs_sweep_stale


@shared_task(name=RUN_JOB_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def run_job(self: Any, run_id: str) -> str | None:
    return execute_run(run_id=run_id, celery_task_id=self.request.id or "")


@shared_task(name="registry.tasks.sweep_stale_runs")
def sweep_stale_runs() -> int:
    """Periodic: fail runs and half-registered versions older than any task can live."""
    return task_runs_sweep_stale(older_than=timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 600))
