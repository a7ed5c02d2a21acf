"""The registry's services: registration, activation, rollback, deactivation, audit, jobs, CLI."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.exceptions import PermissionDenied
from django.core.files.storage import FileSystemStorage
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction

from registry import storage as storage_module
from registry.jobs import JOBS, JobContext, register_job, task_run_start
from registry.models import AuditAction, AuditLog, ModelVersion, TaskRun, TaskRunStatus, VersionStatus
from registry.selectors import active_version
from registry.services import (
    AUTO_ACTIVATE_REASON,
    ActivationRefused,
    RegistryError,
    model_version_activate,
    model_version_deactivate,
    model_version_register,
    model_version_rollback,
    registering,
)
from registry.storage import DjangoStorageArtifactStore, LocalArtifactStore, artifact_store
from tests.test_registry_support import artifacts, eager_celery, make_ml_admin, make_staff, register, write_npy

pytestmark = pytest.mark.django_db
__all__ = ["artifacts", "eager_celery"]  # the fixture, imported for pytest


def active_label(tenant: Any, model_type: str = "ranker") -> str | None:
    version = active_version(tenant_id=tenant.pk, model_type=model_type)
    return version.label if version else None


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# --- Registration ----------------------------------------------------------------------------------


def test_register_stores_artifact_with_checksum_and_numbers_versions(tenant, artifacts, tmp_path):
    v1 = register(tenant, tmp_path, 1.0)
    v2 = register(tenant, tmp_path, 2.0)
    other_type = register(tenant, tmp_path, 3.0, model_type="embedding")

    assert (v1.version, v2.version, other_type.version) == (1, 2, 1)
    assert v1.artifact_uri.startswith("local://default/ranker/")
    assert len(v1.checksum) == 64 and v1.artifact_size and v1.artifact_size > 0
    artifact_store().verify(v2)  # does not raise
    assert v2.metrics["curves"]["val_ndcg@10"] == [0.1, 0.2, 0.25]
    assert v2.data_ref == {"split": "time", "rows": 1000}
    assert v2.created_by == "test"


def test_first_version_is_auto_activated_and_audited_later_ones_are_not(tenant, artifacts, tmp_path):
    v1 = register(tenant, tmp_path, 1.0)
    v2 = register(tenant, tmp_path, 2.0)

    v1.refresh_from_db()
    assert v1.status == VersionStatus.ACTIVE
    assert v2.status == VersionStatus.READY
    audit = AuditLog.objects.get()
    assert (audit.action, audit.to_version, audit.from_version) == (AuditAction.AUTO_ACTIVATE, v1, None)
    assert audit.reason == AUTO_ACTIVATE_REASON and audit.actor == "system:registry"


def test_no_auto_activation_after_a_deactivation(tenant, artifacts, tmp_path, django_user_model):
    register(tenant, tmp_path, 1.0)
    model_version_deactivate(tenant=tenant, model_type="ranker", actor=make_ml_admin(django_user_model), reason="bad")
    v2 = register(tenant, tmp_path, 2.0)
    assert v2.status == VersionStatus.READY
    assert active_label(tenant) is None


def test_register_directory_round_trips_through_fetch(tenant, artifacts, tmp_path):
    source = tmp_path / "index"
    write_npy(source, 5.0, "vectors.npy")
    (source / "meta").mkdir()
    (source / "meta" / "ids.txt").write_text("a\nb\n")
    version = model_version_register(
        tenant=tenant, model_type="index", artifact_path=source, created_by="test", metrics={"n": np.int64(2)}
    )
    assert version.artifact_format == "tar"
    assert version.metrics == {"n": 2}  # numpy scalars stored as plain numbers

    local = artifact_store().fetch(version)
    assert np.load(local / "vectors.npy").tolist() == [5.0] * 4
    assert (local / "meta" / "ids.txt").read_text() == "a\nb\n"


def test_same_directory_packs_to_same_checksum(tenant, artifacts, tmp_path):
    source = tmp_path / "dir"
    write_npy(source, 1.0)
    a = model_version_register(tenant=tenant, model_type="index", artifact_path=source, created_by="t")
    (source / "weights.npy").touch()  # a new mtime, same bytes
    b = model_version_register(tenant=tenant, model_type="index", artifact_path=source, created_by="t")
    assert a.checksum == b.checksum


def test_failed_upload_leaves_no_version_and_no_partial_file(tenant, artifacts, tmp_path, monkeypatch):
    register(tenant, tmp_path, 1.0)
    before = stored_files(artifacts)

    def crash_midway(src: Any, dst: Any) -> tuple[str, int]:
        dst.write(src.read(10))  # part of the artifact reaches the disk, then the process "dies"
        raise OSError("disk full")

    monkeypatch.setattr(storage_module, "_copy_hashing", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        register(tenant, tmp_path, 2.0)

    assert ModelVersion.objects.count() == 1
    assert stored_files(artifacts) == before
    assert active_label(tenant) == "ranker-v1"


def test_failed_row_creation_removes_the_stored_artifact(tenant, artifacts, tmp_path, monkeypatch):
    from registry import services

    def refuse(version: ModelVersion) -> None:
        raise IntegrityError("simulated")

    monkeypatch.setattr(services, "_auto_activate_if_first", refuse)
    with pytest.raises(IntegrityError):
        register(tenant, tmp_path, 1.0)
    assert ModelVersion.objects.count() == 0
    assert stored_files(artifacts) == []


def test_unknown_model_type_is_refused_before_upload(tenant, artifacts, tmp_path):
    with pytest.raises(RegistryError, match="Unknown model type"):
        register(tenant, tmp_path, 1.0, model_type="oracle")
    assert stored_files(artifacts) == []


def test_registering_context_marks_failed_on_exception_and_stores_nothing(tenant, artifacts, tmp_path):
    v1 = register(tenant, tmp_path, 1.0)
    with (
        pytest.raises(RuntimeError, match="epoch 3"),
        registering(tenant=tenant, model_type="ranker", created_by="t") as h,
    ):
        assert h.version.status == VersionStatus.REGISTERING
        write_npy(h.workdir, 9.0)
        raise RuntimeError("diverged at epoch 3")

    failed = ModelVersion.objects.get(version=2)
    assert failed.status == VersionStatus.FAILED and "diverged at epoch 3" in failed.error
    assert failed.artifact_uri == ""
    assert active_label(tenant) == v1.label
    assert [p.parent.name for p in stored_files(artifacts)] == [str(v1.id)]
    with pytest.raises(ActivationRefused):
        model_version_activate(version=failed, actor="system:test", reason="try")


def test_registering_context_success(tenant, artifacts, tmp_path):
    with registering(tenant=tenant, model_type="ranker", created_by="t", data_ref={"rows": 5}) as h:
        write_npy(h.workdir, 4.0)
        h.metrics["val_ndcg@10"] = 0.42
    version = h.version
    assert version.status == VersionStatus.ACTIVE  # first of its slot
    assert version.metrics == {"val_ndcg@10": 0.42} and version.data_ref == {"rows": 5}
    assert np.load(artifact_store().fetch(version) / "weights.npy")[0] == 4.0


def test_registering_without_artifact_fails(tenant, artifacts):
    with (
        pytest.raises(RegistryError, match="wrote no artifact"),
        registering(tenant=tenant, model_type="ranker", created_by="t"),
    ):
        pass
    assert ModelVersion.objects.get().status == VersionStatus.FAILED


# --- Activation, rollback, deactivation -----------------------------------------------------------------


def test_activate_swaps_and_audits(tenant, artifacts, tmp_path, django_user_model):
    admin = make_ml_admin(django_user_model)
    v1, v2 = register(tenant, tmp_path, 1.0), register(tenant, tmp_path, 2.0)

    model_version_activate(version=v2, actor=admin, reason="better ndcg")

    v1.refresh_from_db()
    v2.refresh_from_db()
    assert (v1.status, v2.status) == (VersionStatus.RETIRED, VersionStatus.ACTIVE)
    row = AuditLog.objects.filter(action=AuditAction.ACTIVATE).get()
    assert (row.actor, row.actor_user, row.from_version, row.to_version) == ("ml", admin, v1, v2)
    assert row.reason == "better ndcg"


def test_activation_without_permission_is_refused_and_changes_nothing(tenant, artifacts, tmp_path, django_user_model):
    v1, v2 = register(tenant, tmp_path, 1.0), register(tenant, tmp_path, 2.0)
    staff = make_staff(django_user_model)
    audit_before = AuditLog.objects.count()

    for call in (
        lambda: model_version_activate(version=v2, actor=staff, reason="r"),
        lambda: model_version_rollback(tenant=tenant, model_type="ranker", actor=staff, reason="r"),
        lambda: model_version_deactivate(tenant=tenant, model_type="ranker", actor=staff, reason="r"),
    ):
        with pytest.raises(PermissionDenied):
            call()

    assert active_label(tenant) == v1.label
    assert ModelVersion.objects.get(pk=v2.pk).status == VersionStatus.READY
    assert AuditLog.objects.count() == audit_before


def test_superuser_may_activate(tenant, artifacts, tmp_path, django_user_model):
    register(tenant, tmp_path, 1.0)
    v2 = register(tenant, tmp_path, 2.0)
    root = django_user_model.objects.create_superuser("root", password="x")
    model_version_activate(version=v2, actor=root, reason="r")
    assert active_label(tenant) == v2.label


def test_reason_is_required(tenant, artifacts, tmp_path):
    register(tenant, tmp_path, 1.0)
    v2 = register(tenant, tmp_path, 2.0)
    with pytest.raises(RegistryError, match="reason"):
        model_version_activate(version=v2, actor="system:test", reason="  ")


def test_corrupted_artifact_cannot_be_activated(tenant, artifacts, tmp_path):
    v1, v2 = register(tenant, tmp_path, 1.0), register(tenant, tmp_path, 2.0)
    stored = LocalArtifactStore(artifacts)._path(v2.artifact_uri)
    data = bytearray(stored.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the weights
    stored.write_bytes(bytes(data))

    with pytest.raises(ActivationRefused, match="checksum mismatch"):
        model_version_activate(version=v2, actor="system:test", reason="r")
    assert active_label(tenant) == v1.label
    assert not AuditLog.objects.filter(action=AuditAction.ACTIVATE).exists()


def test_missing_artifact_cannot_be_activated(tenant, artifacts, tmp_path):
    v1, v2 = register(tenant, tmp_path, 1.0), register(tenant, tmp_path, 2.0)
    LocalArtifactStore(artifacts)._path(v2.artifact_uri).unlink()
    with pytest.raises(ActivationRefused, match="missing"):
        model_version_activate(version=v2, actor="system:test", reason="r")
    assert active_label(tenant) == v1.label


def test_activating_the_active_version_is_refused(tenant, artifacts, tmp_path):
    v1 = register(tenant, tmp_path, 1.0)
    with pytest.raises(ActivationRefused, match="already active"):
        model_version_activate(version=v1, actor="system:test", reason="r")


def test_rollback_restores_previous_and_a_second_rollback_undoes_it(tenant, artifacts, tmp_path, django_user_model):
    admin = make_ml_admin(django_user_model)
    v1, v2, v3 = (register(tenant, tmp_path, x) for x in (1.0, 2.0, 3.0))
    model_version_activate(version=v2, actor=admin, reason="a")
    model_version_activate(version=v3, actor=admin, reason="b")

    restored = model_version_rollback(tenant=tenant, model_type="ranker", actor=admin, reason="v3 hurts matches")
    assert restored == v2 and active_label(tenant) == v2.label
    row = AuditLog.objects.filter(action=AuditAction.ROLLBACK).get()
    assert (row.from_version, row.to_version, row.reason) == (v3, v2, "v3 hurts matches")

    assert model_version_rollback(tenant=tenant, model_type="ranker", actor=admin, reason="undo") == v3
    assert v1.pk != active_version(tenant_id=tenant.pk, model_type="ranker").pk


def test_rollback_without_history_is_refused(tenant, artifacts, tmp_path):
    register(tenant, tmp_path, 1.0)  # auto-activated: nothing was active before it
    with pytest.raises(ActivationRefused, match="no previously active"):
        model_version_rollback(tenant=tenant, model_type="ranker", actor="system:test", reason="r")


def test_rollback_after_deactivate_then_activate_goes_to_the_deactivated(tenant, artifacts, tmp_path):
    v1, v2 = register(tenant, tmp_path, 1.0), register(tenant, tmp_path, 2.0)
    model_version_deactivate(tenant=tenant, model_type="ranker", actor="system:test", reason="off")
    model_version_activate(version=v2, actor="system:test", reason="on")
    assert model_version_rollback(tenant=tenant, model_type="ranker", actor="system:test", reason="r") == v1


def test_deactivate(tenant, artifacts, tmp_path):
    v1 = register(tenant, tmp_path, 1.0)
    retired = model_version_deactivate(tenant=tenant, model_type="ranker", actor="system:test", reason="leak")
    assert retired == v1 and retired.status == VersionStatus.RETIRED
    assert active_label(tenant) is None
    row = AuditLog.objects.filter(action=AuditAction.DEACTIVATE).get()
    assert (row.from_version, row.to_version) == (v1, None)
    with pytest.raises(ActivationRefused, match="No ranker version is active"):
        model_version_deactivate(tenant=tenant, model_type="ranker", actor="system:test", reason="again")


def test_tenants_are_separate(tenant, other_tenant, artifacts, tmp_path):
    mine = register(tenant, tmp_path, 1.0)
    theirs = register(other_tenant, tmp_path, 2.0)
    assert mine.version == theirs.version == 1
    assert active_label(tenant) == active_label(other_tenant) == "ranker-v1"
    assert active_version(tenant_id=other_tenant.pk, model_type="ranker") == theirs


def test_database_refuses_two_active_versions(tenant, artifacts, tmp_path):
    register(tenant, tmp_path, 1.0)
    v2 = register(tenant, tmp_path, 2.0)
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=v2.pk).update(status=VersionStatus.ACTIVE)


# --- Storage ---------------------------------------------------------------------------------------------


def test_django_storage_store_behind_the_same_interface(tenant, tmp_path, settings):
    """The S3 path (DjangoStorageArtifactStore) exercised with a FileSystemStorage: S3 itself is
    not reachable here."""
    settings.ARTIFACT_CACHE_DIR = tmp_path / "cache"
    store = DjangoStorageArtifactStore(FileSystemStorage(location=tmp_path / "bucket"))
    source = write_npy(tmp_path / "src", 7.0)
    stored = store.put(source, "default/ranker/abc")
    assert stored.uri == "s3://default/ranker/abc/weights.npy"
    version = ModelVersion(
        tenant=tenant,
        model_type="ranker",
        version=1,
        artifact_uri=stored.uri,
        checksum=stored.checksum,
        artifact_name=stored.name,
        artifact_format=stored.format,
    )
    store.verify(version)
    assert np.load(store.fetch(version))[0] == 7.0
    (tmp_path / "bucket" / "default/ranker/abc/weights.npy").write_bytes(b"garbage")
    with pytest.raises(storage_module.ArtifactCorrupt):
        store.verify(version)
    store.delete(stored.uri)
    with pytest.raises(storage_module.ArtifactMissing):
        store.verify(version)


def test_local_store_refuses_paths_outside_its_root(tmp_path):
    store = LocalArtifactStore(tmp_path)
    with pytest.raises(storage_module.ArtifactMissing):
        store.open("local://../../etc/passwd")
    with pytest.raises(storage_module.ArtifactMissing):
        store.open("s3://bucket/x")


# --- Jobs and task runs -------------------------------------------------------------------------------------


@pytest.fixture
def jobs(eager_celery):
    saved = dict(JOBS)
    yield JOBS
    JOBS.clear()
    JOBS.update(saved)


def _start(django_capture_on_commit_callbacks: Any, tenant: Any, kind: str, **params: Any) -> TaskRun:
    with django_capture_on_commit_callbacks(execute=True):
        run = task_run_start(kind=kind, tenant=tenant, actor="system:test", params=params)
    run.refresh_from_db()
    return run


def test_job_registers_a_version_and_the_run_links_to_it(
    tenant, artifacts, tmp_path, jobs, django_capture_on_commit_callbacks
):
    @register_job("tiny_train", queue="training")
    def tiny_train(ctx: JobContext) -> ModelVersion:
        with ctx.registering(model_type="ranker", parameters={"epochs": 3}) as handle:
            for epoch in range(1, 4):
                ctx.progress(epoch=epoch, of=3)
            np.save(handle.workdir / "w.npy", np.arange(ctx.params["n"], dtype=np.float32))
            handle.metrics = {"val_ndcg@10": 0.5, "curves": {"val_ndcg@10": [0.3, 0.4, 0.5]}}
        return handle.version

    run = _start(django_capture_on_commit_callbacks, tenant, "tiny_train", n=6)

    assert run.status == TaskRunStatus.SUCCEEDED and run.error == ""
    assert run.progress == {"epoch": 3, "of": 3}
    assert run.started_at and run.finished_at and run.celery_task_id
    version = run.version
    assert version is not None and version.status == VersionStatus.ACTIVE
    assert version.created_by == f"task:tiny_train:{run.pk}"
    assert np.load(artifact_store().fetch(version) / "w.npy").tolist() == list(range(6))


def test_job_crashing_midway_leaves_previous_active_and_no_half_version(
    tenant, artifacts, tmp_path, jobs, django_capture_on_commit_callbacks
):
    v1 = register(tenant, tmp_path, 1.0)

    @register_job("crashing_train")
    def crashing_train(ctx: JobContext) -> ModelVersion:
        with ctx.registering(model_type="ranker") as handle:
            with (handle.workdir / "w.npy").open("wb") as f:
                f.write(b"\x93NUMPY partial")  # half an artifact on disk...
            ctx.progress(epoch=1)
            raise MemoryError("killed")  # ...then the job dies
        return handle.version

    run = _start(django_capture_on_commit_callbacks, tenant, "crashing_train")

    assert run.status == TaskRunStatus.FAILED and "MemoryError: killed" in run.error
    assert run.version is None
    assert active_label(tenant) == v1.label
    half = ModelVersion.objects.exclude(pk=v1.pk).get()
    assert half.status == VersionStatus.FAILED and half.artifact_uri == "" and half.checksum == ""
    assert [p.parent.name for p in stored_files(artifacts)] == [str(v1.id)]


def test_run_is_claimed_once(tenant, artifacts, jobs, django_capture_on_commit_callbacks):
    calls = []

    @register_job("count_calls")
    def count_calls(ctx: JobContext) -> None:
        calls.append(ctx.run.pk)

    run = _start(django_capture_on_commit_callbacks, tenant, "count_calls")
    from registry.jobs import execute_run

    assert execute_run(run_id=str(run.pk)) is None  # a redelivered message
    assert calls == [run.pk]


def test_unknown_job_is_refused(tenant, jobs):
    with pytest.raises(RegistryError, match="Unknown job"):
        task_run_start(kind="nope", tenant=tenant, actor="system:test")


# --- CLI -------------------------------------------------------------------------------------------------------


def test_activate_model_command(tenant, artifacts, tmp_path):
    register(tenant, tmp_path, 1.0)
    v2 = register(tenant, tmp_path, 2.0)
    out = io.StringIO()
    call_command("activate_model", str(v2.pk), "--reason", "hotfix", stdout=out)
    assert "ranker-v2 is now active" in out.getvalue()
    row = AuditLog.objects.filter(action=AuditAction.ACTIVATE).get()
    assert row.actor.startswith("system:cli") and row.actor_user is None and row.reason == "hotfix"
    with pytest.raises(CommandError, match="already active"):
        call_command("activate_model", str(v2.pk), "--reason", "again")
    with pytest.raises(CommandError, match="No model version"):
        call_command("activate_model", "00000000-0000-0000-0000-000000000000", "--reason", "x")
