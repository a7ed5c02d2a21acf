"""Deep models and the ranker, Django side: `train --model two_tower|graphsage`, `train_ranker`,
`export_onnx`, the registry jobs and the versions they register (a small demo, tiny configs)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from accounts.models import Tenant
from recommender.ml.collab import InductiveModel, load_recommender
from recommender.ml.ranker import RANKER_FEATURES, OnnxRanker, Ranker
from recommender.models import Profile
from recommender.training.extract import export_hash
from registry.jobs import JOBS, task_run_start
from registry.models import ModelVersion, TaskRun

torch.set_num_threads(1)

TINY = {
    "two_tower": {"dim": 16, "id_dim": 8, "hidden": 32, "epochs": 3, "batch_size": 256, "threads": 1},
    "graphsage": {"dim": 16, "id_dim": 8, "hidden": 32, "epochs": 2, "batch_size": 256, "fanout1": 4,
                  "fanout2": 2, "threads": 1},
}  # fmt: skip
RANKER = {"n_estimators": 20, "num_leaves": 7, "min_data_in_leaf": 5}


@pytest.fixture(autouse=True)
def _isolated(isolated_ml_state: None) -> None:
    """Artifacts and the artifact cache in the test's folder (see conftest)."""


@pytest.fixture
def demo(tenant: Tenant, tmp_path: Path) -> Path:
    """A 300-profile demo with swipes and impressions, exported and split: the splits folder."""
    call_command("load_demo", "--limit", "300", "--swipes", "3000", "--no-users", verbosity=0)
    events, splits = tmp_path / "events", tmp_path / "splits"
    start = (timezone.now() - timedelta(days=60)).date().isoformat()
    call_command("extract_events", "--output", str(events), "--start-date", start, "--tenant", tenant.slug, verbosity=0)
    call_command("build_datasets", "--input", str(events), "--output", str(splits), verbosity=0)
    return splits


@pytest.mark.parametrize("model", ["two_tower", "graphsage"])
def test_train_command_registers_a_feature_model_covering_every_profile(
    model: str, demo: Path, tenant: Tenant, tmp_path: Path
) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TINY[model]))
    # A profile created after the export, without any event: the model must still place it.
    Profile.objects.filter(tenant=tenant).first()
    call_command("train", "--model", model, "--data", str(demo), "--config", str(config), verbosity=0)
    version = ModelVersion.objects.get(tenant=tenant, model_type="collaborative")
    assert version.parameters["model"] == model and version.metrics["model"] == model
    assert version.metrics["feature_columns"] > 400 and version.metrics["val_ndcg@10"] is not None
    artifact = Path(sorted((Path(tmp_path) / "artifacts" / "collaborative").glob(f"{model}-*"))[-1])
    loaded = load_recommender(artifact / "model.pt")
    assert isinstance(loaded, InductiveModel) and loaded.has_features
    ids = loaded.extra["ids"]
    hashes = {export_hash(p.external_id) for p in Profile.objects.filter(tenant=tenant)}
    assert hashes <= set(ids)  # every profile of the tenant has a row, history or not
    vectors = loaded.item_vectors()
    assert vectors.shape == (len(ids), loaded.config.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    taste, _appeal = loaded.embed_new(np.zeros((1, loaded.feat_mean.numel()), dtype=np.float32))
    p = loaded.like_probability_vectors(np.repeat(taste, 3, axis=0), vectors[:3])
    assert np.all((p > 0) & (p < 1))


def test_train_ranker_then_export_onnx(demo: Path, tenant: Tenant, tmp_path: Path) -> None:
    # A collaborative version first: its scores become ranker features.
    config = tmp_path / "tt.json"
    config.write_text(json.dumps(TINY["two_tower"]))
    call_command("train", "--model", "two_tower", "--data", str(demo), "--config", str(config), verbosity=0)
    ranker_config = tmp_path / "ranker.json"
    ranker_config.write_text(json.dumps(RANKER))
    call_command(
        "train_ranker", "--tenant", tenant.slug, "--groups", "pools", "--config", str(ranker_config), verbosity=0
    )
    version = ModelVersion.objects.get(tenant=tenant, model_type="ranker")
    assert version.status == "active"  # the first version of its slot
    assert version.parameters["format"] == "lightgbm" and version.parameters["groups"] == "pools"
    assert version.metrics["groups_from"] == "pools" and version.metrics["groups"] > 10
    assert version.metrics["source_models"] == ["two_tower"] and version.metrics["best_iteration"] >= 1
    assert version.created_by == "command:train_ranker"

    out = tmp_path / "onnx"
    call_command("export_onnx", "--tenant", tenant.slug, "--output", str(out), verbosity=0)
    onnx_version = ModelVersion.objects.filter(tenant=tenant, model_type="ranker").exclude(pk=version.pk).get()
    assert onnx_version.parameters["format"] == "onnx" and onnx_version.parameters["source_version"] == version.label
    assert onnx_version.metrics["onnx_max_abs_diff"] < 1e-4 and onnx_version.metrics["onnx_check_rows"] > 0
    assert onnx_version.status == "ready"  # exported, not activated behind the admins' backs
    check = np.load(out / "check.npy")
    assert check.shape[1] == len(RANKER_FEATURES)
    np.testing.assert_allclose(OnnxRanker.load(out).predict(check), Ranker.load(out).predict(check), atol=1e-4)


def test_export_onnx_refuses_without_a_ranker(tenant: Tenant) -> None:
    with pytest.raises(CommandError, match="no ranker version"):
        call_command("export_onnx", "--tenant", tenant.slug, verbosity=0)
    with pytest.raises(CommandError, match="needs --output"):
        call_command("export_onnx", "--tenant", tenant.slug, "--no-register", verbosity=0)


def test_train_ranker_refuses_without_impressions(tenant: Tenant) -> None:
    with pytest.raises(CommandError, match="no impressions"):
        call_command("train_ranker", "--tenant", tenant.slug, verbosity=0)


def test_train_ranker_on_pools_refuses_without_a_collaborative_version(tenant: Tenant) -> None:
    call_command("load_demo", "--limit", "100", "--swipes", "500", "--no-users", verbosity=0)
    with pytest.raises(CommandError, match="no active collaborative version"):
        call_command("train_ranker", "--tenant", tenant.slug, "--groups", "pools", verbosity=0)


def test_ranker_jobs_register_versions(tenant: Tenant, django_capture_on_commit_callbacks) -> None:
    assert JOBS["train_ranker"].queue == "training" and JOBS["export_onnx"].queue == "training"
    call_command("load_demo", "--limit", "300", "--swipes", "3000", "--no-users", verbosity=0)
    with django_capture_on_commit_callbacks(execute=True):
        run = task_run_start(kind="train_ranker", tenant=tenant, actor="system:test")
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.version is not None and run.version.model_type == "ranker"
    assert run.version.created_by == f"task:train_ranker:{run.pk}"
    assert run.progress["stage"] == "features" and run.progress["done"] == run.progress["total"] > 0
    with django_capture_on_commit_callbacks(execute=True):
        export = task_run_start(kind="export_onnx", tenant=tenant, actor="system:test")
    export = TaskRun.objects.get(pk=export.pk)
    assert export.status == "succeeded", export.error
    assert export.version.parameters["format"] == "onnx"
    assert export.version.metrics["onnx_max_abs_diff"] < 1e-4


def test_train_collaborative_job_accepts_the_deep_models(tenant: Tenant, django_capture_on_commit_callbacks) -> None:
    call_command("load_demo", "--limit", "300", "--swipes", "3000", "--no-users", verbosity=0)
    with django_capture_on_commit_callbacks(execute=True):
        run = task_run_start(
            kind="train_collaborative", tenant=tenant, actor="system:test", params={"model": "graphsage"}
        )
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.version.model_type == "collaborative" and run.version.metrics["model"] == "graphsage"


class _FixedTop:
    """A stand-in source: every user gets ``order`` minus the excluded pairs."""

    def __init__(self, order: list[int]) -> None:
        self.order = np.asarray(order)

    def recommend(self, users: np.ndarray, k: int, *, exclude: Any = None) -> tuple[np.ndarray, np.ndarray]:
        out = np.full((len(users), k), -1, dtype=np.int64)
        for j, u in enumerate(users):
            seen = set(exclude[u].indices.tolist()) if exclude is not None else set()
            keep = [v for v in self.order if v not in seen and v != u][:k]
            out[j, : len(keep)] = keep
        return out, np.zeros(out.shape, dtype=np.float32)


def test_bench_deep_stack_pools_groups_and_top() -> None:
    """bench.deep's ranker stack: the pool is the union of the sources' top-POOL minus what the
    user swiped; query groups are selected per user; the stack's top-K follows the ranker."""
    import scipy.sparse as sp

    from bench.deep import POOL, Groups, Window, cut_index, stack_pools, stack_top

    seen = sp.csr_matrix((np.ones(2), ([0, 1], [2, 3])), shape=(6, 6))
    window = Window(cut=0.8, models={"a": _FixedTop([1, 2, 3]), "b": _FixedTop([3, 4, 1])}, ctx=None,
                    seen=seen, labels=None)  # type: ignore[arg-type]  # fmt: skip
    pools = stack_pools(window, ("a", "b"), np.array([0, 1]))
    assert [p.tolist() for p in pools] == [[1, 3, 4], [2, 4]]  # source order, deduplicated, seen and self dropped
    assert POOL >= 10
    x = np.array([[0.1], [0.9], [0.5], [0.3], [0.7]], dtype=np.float32)
    groups = Groups(x=x, y=np.array([0, 1, 0, 0, 1]), sizes=np.array([3, 2]), users=np.array([0, 1]),
                    cands=[np.array([1, 3, 4]), np.array([2, 4])])  # fmt: skip
    one = groups.take(np.array([1]))
    assert one.sizes.tolist() == [2] and one.x[:, 0].tolist() == pytest.approx([0.3, 0.7]) and one.y.tolist() == [0, 1]

    class ByFeature:
        def predict(self, rows: np.ndarray) -> np.ndarray:
            return rows[:, 0].astype(np.float64)

    top = stack_top(ByFeature(), groups, np.array([1, 0, 5]), 2)  # type: ignore[arg-type]
    assert top.tolist() == [[4, 2], [3, 4], [-1, -1]]  # user 5 has no pool
    times = np.arange(10, dtype=float)
    assert cut_index(times, 0.8) == 8 and cut_index(times, 1.0) == 10
