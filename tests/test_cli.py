"""The model commands script well: every training command reports the version it registered by id
and label and whether it serves (``--json``: one JSON object on stdout, nothing else), list_models
lists versions, activate_model takes a label, and no command silently picks one of several tenants."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from accounts.models import Tenant
from accounts.services import tenant_create
from registry.cli import registration_text, version_summary
from registry.models import AuditAction, AuditLog, ModelVersion, VersionStatus
from registry.services import ArmSpec, experiment_create, experiment_start
from tests.test_embeddings_index import fake_encoder, seed_profiles
from tests.test_registry_support import artifacts, register
from tests.test_safety_training import stand_in

pytestmark = pytest.mark.django_db
__all__ = ["artifacts", "fake_encoder", "stand_in"]  # fixtures, imported for pytest

SUMMARY_KEYS = {
    "version_id", "label", "tenant", "model_type", "status", "active", "auto_activated", "artifact_path",
    "artifact_uri", "metrics",
}  # fmt: skip
FAST_BPR = {"factors": 8, "epochs": 2, "threads": 1}
FAST_RANKER = {"n_estimators": 10, "num_leaves": 7, "min_data_in_leaf": 5}


def run(*args: str, verbosity: int = 1) -> tuple[str, str]:
    """Call a command as a script would: its stdout and stderr."""
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err, verbosity=verbosity)
    return out.getvalue(), err.getvalue()


def run_json(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], str]:
    """``args --json``: stdout must be exactly one JSON object, and the work must not have printed
    anything to the process's stdout either (a script reading it would choke). Returns the object
    and everything written to stderr (the command's and the process's: logs, progress bars)."""
    capsys.readouterr()
    out, err = run(*args, "--json")
    stray = capsys.readouterr()
    assert stray.out == "", f"printed to stdout besides the JSON: {stray.out[:200]!r}"
    assert out.count("\n") == 1, out
    return json.loads(out), err + stray.err


@pytest.fixture
def splits(tenant: Tenant, tmp_path: Path, settings: Any) -> Path:
    """A small demo's events, exported for the default tenant and split: the splits folder."""
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    call_command("load_demo", "--limit", "150", "--swipes", "1500", "--no-users", verbosity=0)
    events, splits = tmp_path / "events", tmp_path / "splits"
    start = (timezone.now() - timedelta(days=60)).date().isoformat()
    call_command("extract_events", "--output", str(events), "--start-date", start, "--tenant", tenant.slug, verbosity=0)
    call_command("build_datasets", "--input", str(events), "--output", str(splits), verbosity=0)
    return splits


def config(tmp_path: Path, values: dict[str, Any], name: str = "config.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(values))
    return str(path)


# --- train, list_models, activate_model ------------------------------------------------------------


def test_train_reports_its_version_and_the_first_one_activates_itself(
    splits: Path, tenant: Tenant, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bpr = config(tmp_path, FAST_BPR)
    first, err = run_json("train", "--model", "bpr", "--data", str(splits), "--config", bpr, capsys=capsys)
    version = ModelVersion.objects.get(tenant=tenant, model_type="collaborative")
    assert set(first) == SUMMARY_KEYS
    assert first["version_id"] == str(version.pk) and first["label"] == "collaborative-v1" == version.label
    assert first["tenant"] == "default" and first["model_type"] == "collaborative"
    assert first["active"] is True and first["auto_activated"] is True and first["status"] == "active"
    assert Path(first["artifact_path"], "model.pt").is_file() and first["artifact_uri"] == version.artifact_uri
    assert first["metrics"]["val_ndcg@10"] == version.metrics["val_ndcg@10"]
    assert first["metrics"]["model"] == "bpr" and first["metrics"]["epochs_run"] >= 1
    assert "%|" in err  # the progress bar went to stderr

    # A second version is only ready; the line for people says so, and how to serve it.
    out, _ = run("train", "--model", "bpr", "--data", str(splits), "--config", bpr, verbosity=0)
    second = ModelVersion.objects.get(tenant=tenant, model_type="collaborative", version=2)
    assert second.status == VersionStatus.READY
    assert f"registered as collaborative-v2 (id {second.pk}; ready, not active" in out
    assert "activate_model collaborative-v2 --tenant default --reason TEXT" in out

    listed, _ = run("list_models", "--json")
    rows = {row["label"]: row for row in json.loads(listed)["versions"]}
    assert set(rows) == {"collaborative-v1", "collaborative-v2"}
    assert rows["collaborative-v1"]["active"] and not rows["collaborative-v2"]["active"]
    assert rows["collaborative-v2"]["metric"] == {"name": "val_ndcg@10", "value": second.metrics["val_ndcg@10"]}
    assert rows["collaborative-v2"]["version_id"] == str(second.pk) and rows["collaborative-v2"]["tenant"] == "default"
    assert rows["collaborative-v2"]["created_at"] == second.created_at.isoformat()
    only_active = json.loads(run("list_models", "--active", "--json")[0])["versions"]
    assert [row["label"] for row in only_active] == ["collaborative-v1"]
    assert json.loads(run("list_models", "--type", "ranker", "--json")[0]) == {"versions": []}

    out, _ = run("activate_model", "collaborative-v2", "--reason", "better offline")
    assert out.strip() == "default: collaborative-v2 is now active (was collaborative-v1, now retired)."
    second.refresh_from_db()
    assert second.status == VersionStatus.ACTIVE
    audit = AuditLog.objects.filter(action=AuditAction.ACTIVATE).get()
    assert audit.to_version == second and audit.from_version.label == "collaborative-v1"
    assert audit.actor.startswith("system:cli") and audit.reason == "better offline" and audit.actor_user is None


def test_list_models_table_shows_type_metric_and_experiment_arms(tenant: Tenant, artifacts: Path, tmp_path) -> None:
    v1 = register(tenant, tmp_path, 1.0)
    v2 = register(tenant, tmp_path, 2.0)
    index = register(tenant, tmp_path, 3.0, model_type="index", metrics={"recall_at_10": 0.97, "size": 10})
    first = version_summary(model_type="ranker", version_id=v1.pk, metrics={}, artifact_path=None)
    assert registration_text(first) == (
        f"registered as ranker-v1 (id {v1.pk}; activated: first ranker version of tenant default)"
    )
    experiment = experiment_create(
        tenant=tenant, model_type="ranker", name="lgbm-ab", actor="system:test",
        arms=[ArmSpec("control", v1, 50), ArmSpec("treatment", v2, 50)],
    )  # fmt: skip
    experiment_start(experiment=experiment, actor="system:test", reason="test")

    rows = {row["label"]: row for row in json.loads(run("list_models", "--tenant", "default", "--json")[0])["versions"]}
    arm = {"experiment": "lgbm-ab", "status": "running", "arm": "treatment", "percent": 50}
    assert rows["ranker-v2"]["experiment_arms"] == [{**arm, "tag": f"x{experiment.pk}:treatment"}]
    assert rows["ranker-v1"]["metric"] == {"name": "val_ndcg@10", "value": v1.metrics["val_ndcg@10"]}
    assert rows["index-v1"]["metric"] == {"name": "recall_at_10", "value": 0.97} and rows["index-v1"]["active"]

    table, _ = run("list_models")
    header, *lines = table.splitlines()
    assert header.split()[:4] == ["ID", "TENANT", "LABEL", "TYPE"] and len(lines) == 3
    line = next(line for line in lines if "ranker-v1" in line)
    assert str(v1.pk) in line and "ranker" in line.split() and "yes" in line.split()
    assert "val_ndcg@10 0.3100" in line and "lgbm-ab/control 50% (running)" in line
    assert str(index.pk) in table
    with pytest.raises(CommandError, match="Unknown tenant 'nope'; existing: default"):
        run("list_models", "--tenant", "nope")


def test_activate_model_by_label_needs_the_tenant_when_there_are_several(tenant, artifacts, tmp_path) -> None:
    register(tenant, tmp_path, 1.0)
    ours = register(tenant, tmp_path, 2.0)
    out, _ = run("activate_model", "ranker-v2", "--reason", "only one tenant")  # one tenant: no --tenant needed
    assert "default: ranker-v2 is now active" in out
    ours.refresh_from_db()
    assert ours.status == VersionStatus.ACTIVE

    other = tenant_create(slug="other", name="Other")
    register(other, tmp_path / "o", 1.0)
    theirs = register(other, tmp_path / "o", 2.0)
    audits = AuditLog.objects.count()
    with pytest.raises(CommandError, match=r"Several tenants exist \(default, other\): pass --tenant SLUG"):
        run("activate_model", "ranker-v1", "--reason", "ambiguous")
    assert AuditLog.objects.count() == audits  # refused: nothing changed
    out, _ = run("activate_model", "ranker-v2", "--tenant", "other", "--reason", "theirs")
    theirs.refresh_from_db()
    assert theirs.status == VersionStatus.ACTIVE and out.startswith("other: ranker-v2 is now active")
    # By id it needs no tenant, but a --tenant that is not the version's is refused.
    with pytest.raises(CommandError, match="is a version of other, not of default"):
        run("activate_model", str(theirs.pk), "--tenant", "default", "--reason", "x")
    with pytest.raises(CommandError, match="Tenant other has no model version ranker-v9"):
        run("activate_model", "ranker-v9", "--tenant", "other", "--reason", "x")
    with pytest.raises(CommandError, match="neither a version id"):
        run("activate_model", "ranker-2", "--reason", "x")
    with pytest.raises(CommandError, match="already active"):
        run("activate_model", str(ours.pk), "--reason", "again")
    with pytest.raises(CommandError, match="reason"):
        run("activate_model", "ranker-v1", "--tenant", "default", "--reason", "  ")


# --- Several tenants ---------------------------------------------------------------------------------


def test_extract_events_refuses_to_mix_tenants_and_train_to_guess(tenant: Tenant, tmp_path: Path) -> None:
    start = "2000-01-01"
    out, _ = run("extract_events", "--output", str(tmp_path / "one"), "--start-date", start, verbosity=0)
    assert "Exported default's swipes 0" in out
    assert json.loads((tmp_path / "one" / "manifest.json").read_text())["tenant"] == "default"

    tenant_create(slug="other", name="Other")
    with pytest.raises(CommandError, match=r"Several tenants exist \(default, other\): pass --tenant SLUG"):
        run("extract_events", "--output", str(tmp_path / "two"), "--start-date", start)
    assert not (tmp_path / "two").exists()
    run("extract_events", "--output", str(tmp_path / "two"), "--start-date", start, "--tenant", "other", verbosity=0)
    assert json.loads((tmp_path / "two" / "manifest.json").read_text())["tenant"] == "other"

    # train: data that does not name its tenant is not registered to "default" by guess.
    with pytest.raises(CommandError, match="does not say which tenant"):
        run("train", "--model", "popularity", "--data", str(tmp_path / "nowhere"))
    with pytest.raises(CommandError, match="Unknown tenant 'nope'"):
        run("train", "--model", "popularity", "--data", str(tmp_path / "nowhere"), "--tenant", "nope")


# --- The other model commands -----------------------------------------------------------------------


def test_train_ranker_and_export_onnx_report_their_versions(
    splits: Path, tenant: Tenant, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ranker, _ = run_json(
        "train_ranker", "--tenant", "default", "--config", config(tmp_path, FAST_RANKER), capsys=capsys
    )
    trained = ModelVersion.objects.get(tenant=tenant, model_type="ranker")
    assert ranker["label"] == "ranker-v1" == trained.label and ranker["version_id"] == str(trained.pk)
    assert ranker["active"] and ranker["auto_activated"] and Path(ranker["artifact_path"], "ranker.txt").is_file()
    assert ranker["metrics"]["best_iteration"] == trained.metrics["best_iteration"] >= 1
    assert "val_ndcg@10" in ranker["metrics"]

    exported, _ = run_json(
        "export_onnx", "--model-version", "ranker-v1", "--output", str(tmp_path / "onnx"), capsys=capsys
    )
    onnx = ModelVersion.objects.get(tenant=tenant, model_type="ranker", version=2)
    assert exported["label"] == "ranker-v2" and exported["version_id"] == str(onnx.pk)
    assert exported["active"] is False and exported["auto_activated"] is False and exported["status"] == "ready"
    assert exported["metrics"]["onnx_max_abs_diff"] < 1e-4 and exported["artifact_path"] == str(tmp_path / "onnx")
    with pytest.raises(CommandError, match="Tenant default has no version ranker-v7"):
        run("export_onnx", "--model-version", "ranker-v7")
    with pytest.raises(CommandError, match="neither a version id nor a label"):
        run("export_onnx", "--model-version", "latest")


def test_build_index_json(fake_encoder: Any, tenant: Tenant, settings: Any, tmp_path: Path, capsys) -> None:
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    seed_profiles(tenant, 12)
    built, _ = run_json("build_index", "--tenant", "default", capsys=capsys)
    version = ModelVersion.objects.get(tenant=tenant, model_type="index")
    assert built["label"] == "index-v1" and built["version_id"] == str(version.pk) and built["active"]
    assert built["metrics"]["size"] == 12 and built["metrics"]["recall_at_10"] == 1.0
    assert Path(built["artifact_path"]).exists()
    tenant_create(slug="other", name="Other")
    both, _ = run_json("build_index", "--all-tenants", capsys=capsys)
    assert [b["tenant"] for b in both["builds"]] == ["default", "other"]
    assert [b["label"] for b in both["builds"]] == ["index-v2", "index-v1"]
    assert both["builds"][0]["active"] is False  # a later build is only ready


def test_train_safety_json_keeps_its_log_on_stderr(stand_in: Path, tenant: Tenant, capsys) -> None:
    trained, err = run_json("train_safety", "--limit", "300", "--c-grid", "4", "--no-progress", capsys=capsys)
    version = ModelVersion.objects.get(tenant=tenant, model_type="safety")
    assert trained["label"] == "safety-v1" and trained["version_id"] == str(version.pk) and trained["active"]
    assert trained["artifact_path"] == str(stand_in)
    assert trained["metrics"]["spam_scam_full_roc_auc"] == version.metrics["spam_scam_full_roc_auc"]
    assert "training on sms" in err  # the training log, on stderr
    out, _ = run("train_safety", "--limit", "300", "--c-grid", "4", "--no-progress")
    assert "training on sms" in out and "registered as safety-v2" in out and "not active" in out
    row = json.loads(run("list_models", "--type", "safety", "--json")[0])["versions"][-1]
    assert row["label"] == "safety-v1" and row["metric"]["name"] == "min_full_roc_auc"


def test_json_mode_sends_whatever_the_work_prints_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    from registry.cli import stdout_kept_for_json

    with stdout_kept_for_json(True):
        print("a stray print in a training loop")
    with stdout_kept_for_json(False):
        print("the line for people")
    captured = capsys.readouterr()
    assert captured.out == "the line for people\n" and captured.err == "a stray print in a training loop\n"
