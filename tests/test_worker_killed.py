"""A Celery worker killed with SIGKILL in the middle of a training job (PostgreSQL + Redis).

The job is acknowledged late, so Redis hands its message out again once the visibility timeout
passes; the next worker sees a run still marked running under the same task id, marks it and
its half-registered version failed, and the previously active version keeps serving.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

import tests.celery_jobs  # noqa: F401 - registers the job in this process too (task_run_start checks it)
from patra.celery import app
from registry.jobs import WORKER_LOST, task_run_start
from registry.models import ModelVersion, TaskRun, TaskRunStatus, VersionStatus
from registry.services import model_version_register

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def worker_env(tmp_path: Path, settings: Any) -> dict[str, str]:
    db = connection.settings_dict
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    return {
        **os.environ,
        # the worker uses this test's database and artifact folder
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "CELERY_VISIBILITY_TIMEOUT": "3",
        "ARTIFACT_ROOT": str(settings.ARTIFACT_ROOT),
        "PATRA_VAR_DIR": str(tmp_path / "var"),
    }


@pytest.fixture
def start_worker(worker_env: dict[str, str]) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    workers: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        name = f"killtest-{os.getpid()}-{len(workers)}@%h"
        cmd = [sys.executable, "-m", "celery", "-A", "patra", "worker", "-Q", "training", "-I", "tests.celery_jobs"]
        cmd += ["--pool", "solo", "-n", name, "--without-gossip", "--without-mingle", "--loglevel", "WARNING"]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=worker_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        workers.append(proc)
        return proc

    was_eager = app.conf.task_always_eager
    app.conf.task_always_eager = False  # this test's job must travel through Redis
    yield start
    app.conf.task_always_eager = was_eager
    for proc in workers:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def test_killed_worker_leaves_no_half_version_and_the_active_one_serving(tenant, tmp_path, start_worker):
    previous_file = tmp_path / "previous.bin"
    previous_file.write_bytes(b"the model serving before the run")
    previous = model_version_register(
        tenant=tenant, model_type="ranker", artifact_path=previous_file, metrics={}, created_by="system:test"
    )
    assert previous.status == VersionStatus.ACTIVE  # the first version of a slot is auto-activated

    first = start_worker()
    marker = tmp_path / "started"
    run = task_run_start(kind="test_killed_midway", tenant=tenant, actor="system:test", params={"marker": str(marker)})
    half_id = wait_for(lambda: marker.exists() and marker.read_text(), 90, "the job to start registering")
    assert ModelVersion.objects.get(pk=half_id).status == VersionStatus.REGISTERING

    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    start_worker()  # takes the message Redis hands out again after the visibility timeout

    run = wait_for(
        lambda: TaskRun.objects.filter(pk=run.pk, status=TaskRunStatus.FAILED).first(), 120, "the run to fail"
    )
    assert run.error == WORKER_LOST
    half = ModelVersion.objects.get(pk=half_id)
    assert half.status == VersionStatus.FAILED
    previous.refresh_from_db()
    assert previous.status == VersionStatus.ACTIVE
    assert list(ModelVersion.objects.filter(status=VersionStatus.ACTIVE)) == [previous]
    assert not ModelVersion.objects.filter(status=VersionStatus.REGISTERING).exists()


def test_sweep_fails_runs_and_versions_left_behind(tenant, tmp_path, settings):
    from datetime import timedelta

    from django.utils import timezone

    from registry.jobs import task_runs_sweep_stale
    from registry.models import ModelSlot

    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    long_ago = timezone.now() - timedelta(hours=3)
    run = TaskRun.objects.create(
        kind="test_killed_midway", tenant=tenant, started_by="t", status=TaskRunStatus.RUNNING, started_at=long_ago
    )
    ModelSlot.objects.get_or_create(tenant=tenant, model_type="ranker")
    half = ModelVersion.objects.create(
        tenant=tenant, model_type="ranker", version=99, status=VersionStatus.REGISTERING, created_by=f"task:x:{run.pk}"
    )
    ModelVersion.objects.filter(pk=half.pk).update(created_at=long_ago)
    fresh = TaskRun.objects.create(
        kind="test_killed_midway",
        tenant=tenant,
        started_by="t",
        status=TaskRunStatus.RUNNING,
        started_at=timezone.now(),
    )
    assert task_runs_sweep_stale(older_than=timedelta(hours=1)) == 2
    assert TaskRun.objects.get(pk=run.pk).status == TaskRunStatus.FAILED
    assert ModelVersion.objects.get(pk=half.pk).status == VersionStatus.FAILED
    assert TaskRun.objects.get(pk=fresh.pk).status == TaskRunStatus.RUNNING
