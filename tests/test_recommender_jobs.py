"""The recommender's admin-startable jobs run through the registry and link the version they made."""

from __future__ import annotations

import pytest

from recommender.serving.index import serving_index
from registry.jobs import JOBS, task_run_start
from registry.models import TaskRun

pytestmark = pytest.mark.slow  # embeds a few bios with the real MiniLM model


@pytest.fixture(autouse=True)
def _isolated(isolated_ml_state: None) -> None:
    """Empty in-process feed and index state, artifacts in the test's folder (see conftest)."""


def test_jobs_are_registered_on_their_queues():
    assert JOBS["build_index"].queue == "indexing"
    assert JOBS["train_collaborative"].queue == "training"


def test_build_index_job_registers_and_serves_an_index_version(
    tenant, make_profile, django_capture_on_commit_callbacks
):
    profiles = [make_profile(bio=f"I love {topic}.") for topic in ("hiking", "jazz", "cooking", "chess")]
    with django_capture_on_commit_callbacks(execute=True):
        run = task_run_start(kind="build_index", tenant=tenant, actor="system:test")
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    version = run.version
    assert version is not None and version.model_type == "index"
    assert version.metrics["size"] == len(profiles)
    assert version.created_by == f"task:build_index:{run.pk}"
    index = serving_index(tenant.pk)
    assert index is not None and index.version == version.label
    assert TaskRun.objects.get(pk=run.pk).progress.get("stage") == "embedding"


def test_train_collaborative_job_trains_on_the_tenants_events(tenant, django_capture_on_commit_callbacks):
    from django.core.management import call_command

    call_command("load_demo", "--limit", "300", "--swipes", "3000", "--no-users", verbosity=0)
    with django_capture_on_commit_callbacks(execute=True):
        run = task_run_start(kind="train_collaborative", tenant=tenant, actor="system:test", params={"model": "als"})
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    version = run.version
    assert version is not None and version.model_type == "collaborative"
    assert version.metrics["model"] == "als" and version.metrics["val_ndcg@10"] is not None
