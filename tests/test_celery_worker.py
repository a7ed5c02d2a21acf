"""A real Celery worker consuming a named queue through Redis (the production path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from patra.celery import app

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parent.parent


def test_named_queues_and_routes_are_configured():
    queues = {q.name for q in settings.CELERY_TASK_QUEUES}
    assert queues == {"default", "embeddings", "training", "indexing", "safety"}
    assert settings.CELERY_TASK_ACKS_LATE and settings.CELERY_TASK_REJECT_ON_WORKER_LOST
    assert settings.CELERY_TASK_TIME_LIMIT > settings.CELERY_TASK_SOFT_TIME_LIMIT
    assert app.conf.beat_schedule, "periodic jobs are scheduled"


@pytest.fixture
def not_eager():
    # The real-mode test run makes tasks that services enqueue eager; this one must not be.
    was = app.conf.task_always_eager
    app.conf.task_always_eager = False
    yield
    app.conf.task_always_eager = was


def test_worker_runs_a_task_from_redis(not_eager):
    env = {**os.environ, "REDIS_URL": settings.REDIS_URL, "CELERY_TASK_ALWAYS_EAGER": "false"}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "patra",
            "worker",
            "-Q",
            "default",
            "--pool",
            "solo",
            "-n",
            f"test-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        # Bypass eager mode: this must travel through the broker to the worker process.
        result = app.send_task("patra.ping", queue="default")
        assert result.get(timeout=60) == "pong"
    finally:
        worker.terminate()
        worker.wait(timeout=30)
