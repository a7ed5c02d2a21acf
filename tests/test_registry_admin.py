"""The registry's admin pages through the test client: pages render (with their SVG charts), the
confirmation flow performs and audits, and people outside ML admins are refused."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from django.test import Client
from django.urls import reverse

from recommender.training.tasks import parse_start
from registry.jobs import JOBS, JobContext, is_true, register_job, task_run_start
from registry.models import AuditAction, AuditLog, Experiment, ExperimentStatus, TaskRun, TaskRunStatus
from registry.selectors import active_version
from registry.services import ArmSpec, RegistryError, experiment_create, experiment_start
from tests.test_registry_support import artifacts, eager_celery, make_ml_admin, make_staff, register

pytestmark = pytest.mark.django_db
__all__ = ["artifacts", "eager_celery"]


def login(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def ml_client(django_user_model) -> Client:
    return login(make_ml_admin(django_user_model))


@pytest.fixture
def staff_client(django_user_model) -> Client:
    return login(make_staff(django_user_model))


def slot(tenant: Any, model_type: str = "ranker") -> str:
    return reverse("admin:registry_modelversion_slot", args=[tenant.pk, model_type])


def test_registry_pages_render_with_metrics_and_charts(ml_client, tenant, artifacts, tmp_path):
    v1 = register(tenant, tmp_path, 1.0)
    register(tenant, tmp_path, 2.0, metrics={"val_ndcg@10": 0.41, "auc": 0.7, "curves": {"val_ndcg@10": [0.2, 0.41]}})

    index = ml_client.get(reverse("admin:registry_modelversion_index"))
    assert index.status_code == 200 and "ranker-v1" in index.content.decode()

    page = ml_client.get(slot(tenant)).content.decode()
    assert "Active: <strong" in page and "ranker-v1" in page and "ranker-v2" in page
    assert "<th>auc</th>" in page and "<th>val_ndcg@10</th>" in page
    assert page.count('class="registry-chart"') == 3  # two metrics across versions and one run's curves
    assert "val_ndcg@10 across versions" in page and "Training curves of ranker-v2" in page
    assert reverse("admin:registry_modelversion_activate", args=[v1.pk]) not in page  # v1 is active
    curves = ml_client.get(slot(tenant) + "?curves=1").content.decode()
    assert "Training curves of ranker-v1" in curves


def test_activation_through_the_confirmation_page(ml_client, tenant, artifacts, tmp_path):
    v1, v2 = register(tenant, tmp_path, 1.0), register(tenant, tmp_path, 2.0)
    url = reverse("admin:registry_modelversion_activate", args=[v2.pk])

    page = ml_client.get(url).content.decode()
    assert "ranker-v1" in page and "ranker-v2" in page and 'name="reason"' in page

    refused = ml_client.post(url, {"reason": ""})
    assert refused.status_code == 200 and active_version(tenant_id=tenant.pk, model_type="ranker") == v1

    done = ml_client.post(url, {"reason": "better offline ndcg"})
    assert done.status_code == 302 and done["Location"] == slot(tenant)
    assert active_version(tenant_id=tenant.pk, model_type="ranker") == v2
    assert AuditLog.objects.filter(action=AuditAction.ACTIVATE, reason="better offline ndcg").exists()

    again = ml_client.post(url, {"reason": "twice"})
    assert again.status_code == 400 and "already active" in again.content.decode()

    back = ml_client.post(reverse("admin:registry_modelversion_rollback", args=[tenant.pk, "ranker"]), {"reason": "r"})
    assert back.status_code == 302 and active_version(tenant_id=tenant.pk, model_type="ranker") == v1

    off = ml_client.post(reverse("admin:registry_modelversion_deactivate", args=[tenant.pk, "ranker"]), {"reason": "r"})
    assert off.status_code == 302 and active_version(tenant_id=tenant.pk, model_type="ranker") is None


def test_changelist_action_leads_to_the_confirmation_page(ml_client, tenant, artifacts, tmp_path):
    register(tenant, tmp_path, 1.0)
    v2 = register(tenant, tmp_path, 2.0)
    response = ml_client.post(
        reverse("admin:registry_modelversion_changelist"),
        {"action": "activate_selected", "_selected_action": [str(v2.pk)]},
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:registry_modelversion_activate", args=[v2.pk])


def test_people_outside_ml_admins_may_look_but_not_activate(staff_client, tenant, artifacts, tmp_path):
    v1, v2 = register(tenant, tmp_path, 1.0), register(tenant, tmp_path, 2.0)
    page = staff_client.get(slot(tenant))
    assert page.status_code == 200 and "Activate…" not in page.content.decode()
    url = reverse("admin:registry_modelversion_activate", args=[v2.pk])
    assert staff_client.get(url).status_code == 403
    assert staff_client.post(url, {"reason": "sneaky"}).status_code == 403
    rollback = reverse("admin:registry_modelversion_rollback", args=[tenant.pk, "ranker"])
    assert staff_client.post(rollback, {"reason": "x"}).status_code == 403
    response = staff_client.post(
        reverse("admin:registry_modelversion_changelist"),
        {"action": "activate_selected", "_selected_action": [str(v2.pk)]},
    )
    assert response.status_code == 403
    assert active_version(tenant_id=tenant.pk, model_type="ranker") == v1
    assert not AuditLog.objects.filter(action=AuditAction.ACTIVATE).exists()


def test_anonymous_is_sent_to_login(client, tenant):
    response = client.get(slot(tenant))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_experiment_report_and_promotion(ml_client, tenant, artifacts, tmp_path):
    v1, v2 = register(tenant, tmp_path, 1.0), register(tenant, tmp_path, 2.0)
    experiment = experiment_create(
        tenant=tenant,
        model_type="ranker",
        name="ab",
        arms=[ArmSpec("control", v1, 50), ArmSpec("treatment", v2, 50)],
        actor="system:test",
    )
    report_url = reverse("admin:registry_experiment_report", args=[experiment.pk])
    assert "Start…" in ml_client.get(report_url).content.decode()
    start = ml_client.post(reverse("admin:registry_experiment_start", args=[experiment.pk]), {"reason": "go"})
    assert start.status_code == 302
    page = ml_client.get(report_url).content.decode()
    assert "Like rate per arm" in page and page.count('class="registry-chart"') == 2 and "Promote…" in page

    treatment = experiment.arms.get(name="treatment")
    promote = reverse("admin:registry_experiment_promote", args=[experiment.pk, treatment.pk])
    assert "ranker-v2" in ml_client.get(promote).content.decode()
    assert ml_client.post(promote, {"reason": "wins"}).status_code == 302
    assert Experiment.objects.get(pk=experiment.pk).status == ExperimentStatus.PROMOTED
    assert active_version(tenant_id=tenant.pk, model_type="ranker") == v2


def test_running_experiment_arms_are_read_only_in_admin(ml_client, tenant, artifacts, tmp_path):
    v1, v2 = register(tenant, tmp_path, 1.0), register(tenant, tmp_path, 2.0)
    experiment = experiment_create(
        tenant=tenant,
        model_type="ranker",
        name="ab",
        arms=[ArmSpec("control", v1, 50), ArmSpec("treatment", v2, 50)],
        actor="system:test",
    )
    experiment_start(experiment=experiment, actor="system:test", reason="go")
    page = ml_client.get(reverse("admin:registry_experiment_change", args=[experiment.pk])).content.decode()
    assert 'name="arms-0-percent"' not in page and 'name="salt"' not in page


@pytest.fixture
def demo_job(eager_celery):
    saved = dict(JOBS)

    @register_job("demo_train", description="Demo training")
    def demo_train(ctx: JobContext) -> Any:
        with ctx.registering(model_type="ranker") as handle:
            np.save(handle.workdir / "w.npy", np.ones(3))
            ctx.progress(step="saved")
        return handle.version

    yield
    JOBS.clear()
    JOBS.update(saved)


def test_job_started_from_admin_shows_progress_and_links_to_its_version(
    ml_client, tenant, artifacts, demo_job, django_capture_on_commit_callbacks
):
    form = ml_client.get(reverse("admin:registry_taskrun_add")).content.decode()
    assert "Demo training" in form
    with django_capture_on_commit_callbacks(execute=True):
        response = ml_client.post(reverse("admin:registry_taskrun_add"), {"kind": "demo_train", "tenant": tenant.pk})
    run = TaskRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:registry_taskrun_progress", args=[run.pk])
    assert run.status == TaskRunStatus.SUCCEEDED and run.started_by == "ml"

    page = ml_client.get(response["Location"]).content.decode()
    assert "succeeded" in page and "step: saved" in page and 'http-equiv="refresh"' not in page
    assert f'href="{slot(tenant)}"' in page and "ranker-v1" in page


def test_job_parameters_from_admin_are_checked_then_passed_to_the_job(
    ml_client, tenant, eager_celery, django_capture_on_commit_callbacks
):
    saved = dict(JOBS)
    seen: list[dict[str, Any]] = []

    @register_job("demo_params", description="Demo (params: groups=impressions|pools)",
                  params={"groups": ("impressions", "pools"), "since": parse_start})  # fmt: skip
    def demo_params(ctx: JobContext) -> None:
        seen.append(ctx.params)

    try:
        url = reverse("admin:registry_taskrun_add")
        for text, error in [
            ("groups=everything", "groups must be one of impressions, pools, not &#x27;everything&#x27;"),
            ("colour=red", "demo_params has no parameter &#x27;colour&#x27;; its parameters: groups, since"),
            ("since=last tuesday", "since: not a date or datetime"),
            ("groups", "Line 1 is not name=value"),
            ("groups=pools\ngroups=impressions", "groups is given twice"),
        ]:
            page = ml_client.post(url, {"kind": "demo_params", "tenant": tenant.pk, "params": text})
            assert page.status_code == 200 and error in page.content.decode(), text
        assert not TaskRun.objects.exists()  # a refused form starts nothing
        with django_capture_on_commit_callbacks(execute=True):
            response = ml_client.post(
                url, {"kind": "demo_params", "tenant": tenant.pk, "params": " groups = pools \n\nsince=2026-01-01"}
            )
        assert response.status_code == 302
        run = TaskRun.objects.get()
        assert run.params == {"groups": "pools", "since": "2026-01-01"} and run.status == TaskRunStatus.SUCCEEDED
        assert seen == [{"groups": "pools", "since": "2026-01-01"}]
        with pytest.raises(RegistryError, match="groups must be one of"):
            task_run_start(kind="demo_params", tenant=tenant, actor="system:test", params={"groups": "x"})
    finally:
        JOBS.clear()
        JOBS.update(saved)


def test_the_recommender_and_safety_jobs_declare_what_they_read() -> None:
    assert JOBS["train_ranker"].params is not None and set(JOBS["train_ranker"].params) == {"since", "groups"}
    assert JOBS["train_collaborative"].params is not None and "refit_all" in JOBS["train_collaborative"].params
    assert JOBS["train_safety"].params == {"include_decisions": ("true", "false")}
    assert is_true("true") and not is_true("False") and not is_true("no") and is_true(True)


def test_unfinished_run_page_refreshes_itself(ml_client, tenant):
    run = TaskRun.objects.create(kind="x", tenant=tenant, started_by="t", progress={"epoch": 2})
    page = ml_client.get(reverse("admin:registry_taskrun_progress", args=[run.pk])).content.decode()
    assert '<meta http-equiv="refresh" content="2">' in page and "epoch: 2" in page
