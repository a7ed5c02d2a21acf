"""A job for tests/test_worker_killed.py, imported by its worker (`celery worker -I tests.celery_jobs`).

It starts registering a version, writes part of the artifact, says so through a marker file, and
then waits to be killed.
"""

from __future__ import annotations

import time
from pathlib import Path

from registry.jobs import JobContext, register_job
from registry.models import ModelVersion


@register_job("test_killed_midway", queue="training", description="test only: waits to be killed mid-registration")
def killed_midway(ctx: JobContext) -> ModelVersion:
    with ctx.registering(model_type="ranker") as handle:
        (handle.workdir / "weights.bin").write_bytes(b"half of an artifact")
        Path(ctx.params["marker"]).write_text(str(handle.version.pk))
        time.sleep(float(ctx.params.get("sleep", 120)))
    return handle.version
