"""The ANN index and the model registry: builds registered as versions, serving follows the active
version without restart, rollbacks, broken artifacts, and index experiments in the feed.

The encoder is the deterministic fake of tests/test_embeddings_index.py, so these tests exercise
the real build, registry, storage, serving and feed code without loading MiniLM.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.conf import settings
from django.core.exceptions import PermissionDenied
from pytest_django import Settings

from accounts.models import Tenant
from patra.celery import app as celery_app
from recommender import indexing
from recommender.feed.pipeline import FeedResult, feed_for, feed_reset_for_tests
from recommender.indexing import IndexBuildResult, index_build
from recommender.models import Impression, Profile, ProfileEmbedding
from recommender.services.embeddings import embeddings_upsert
from recommender.serving import encoder
from recommender.serving import index as index_service
from recommender.serving.index import (
    index_reset_for_tests,
    index_status,
    serving_index,
)
from registry.experiments import experiment_assign
from registry.models import AuditAction, AuditLog, Experiment, ModelSlot, ModelVersion, VersionStatus
from registry.services import (
    ActivationRefused,
    ArmSpec,
    experiment_create,
    experiment_start,
    experiment_stop,
    model_version_activate,
    model_version_rollback,
)
from registry.storage import artifact_store
from tests.test_embeddings_index import DIM, fake_encode
from tests.test_registry_support import make_ml_admin, make_staff

SF = (37.7749, -122.4194)
KM_PER_DEG_LAT = 111.2


@pytest.fixture(autouse=True)
def isolated(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    settings.ARTIFACT_STORAGE = "local"
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.ARTIFACT_CACHE_DIR = tmp_path / "artifact-cache"
    settings.INDEX_REFRESH_SECONDS = 0
    settings.REGISTRY_REFRESH_SECONDS = 0  # serving asks which version is active on every call
    settings.FEED_STORE_REFRESH_SECONDS = 0
    monkeypatch.setattr(encoder, "encode_texts", fake_encode)
    monkeypatch.setattr(indexing, "embedding_dim", lambda: DIM)
    monkeypatch.setattr("recommender.serving.health.ml_available", lambda: True)
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True  # profile hooks run inline in both modes
    index_reset_for_tests()
    feed_reset_for_tests()
    yield
    index_reset_for_tests()
    feed_reset_for_tests()
    celery_app.conf.task_always_eager = eager


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def served_label(tenant: Tenant) -> str | None:
    index = serving_index(tenant.pk)
    return index.version if index is not None else None


def version_of(result: IndexBuildResult) -> ModelVersion:
    return ModelVersion.objects.get(pk=result.version_id)


def stored_file(version: ModelVersion) -> Path:
    return Path(settings.ARTIFACT_ROOT) / version.artifact_uri.removeprefix("local://")


def men(make_profile: Callable[..., Profile], n: int, prefix: str = "man") -> list[Profile]:
    """Candidates every ``woman`` below is eligible for, and who are eligible for her."""
    return [
        make_profile(
            gender="man",
            seeking=["woman"],
            age=32,
            age_min=25,
            age_max=40,
            max_distance_km=50.0,
            lat=SF[0] + (1.0 + i * 0.3) / KM_PER_DEG_LAT,
            lon=SF[1],
            bio=f"{prefix} {i}: {uuid.uuid4().hex}",
            prompts=[],
        )
        for i in range(n)
    ]


def woman(make_profile: Callable[..., Profile]) -> Profile:
    user = make_profile(bio=f"woman {uuid.uuid4().hex}", prompts=[])
    embeddings_upsert(profile_ids=[user.pk])  # her own vector drives the ANN queries
    return user


# --- Registration -------------------------------------------------------------------------------


def test_build_registers_a_version_with_its_metrics_and_the_first_is_active(tenant, make_profile):
    men(make_profile, 30)
    result = index_build(tenant=tenant)
    v1 = version_of(result)
    assert (v1.model_type, v1.version, v1.status, v1.label) == ("index", 1, VersionStatus.ACTIVE, "index-v1")
    assert result.version_label == "index-v1" and v1.created_by == "task:build_index"
    assert v1.metrics == {
        "size": 30,
        "dim": DIM,
        "recall_at_10": result.recall_at_10,
        "build_seconds": pytest.approx(v1.metrics["build_seconds"]),
    }
    assert 0 < v1.metrics["build_seconds"] <= result.build_seconds and result.recall_at_10 >= 0.9
    assert v1.parameters == {
        "M": settings.INDEX_M,
        "ef_construction": settings.INDEX_EF_CONSTRUCTION,
        "ef_search": settings.INDEX_EF_SEARCH,
        "embedding_model": settings.EMBEDDING_MODEL,
    }
    latest = ProfileEmbedding.objects.latest("updated_at").updated_at
    assert v1.data_ref["active_profiles"] == 30 and v1.data_ref["indexed_embeddings"] == 30
    assert v1.data_ref["embedding_watermark"] == latest.isoformat() and v1.data_ref["build"] == result.path.name
    assert AuditLog.objects.filter(to_version=v1, action=AuditAction.AUTO_ACTIVATE).exists()
    # The artifact is the whole build directory, stored and verified by the registry.
    artifact_store().verify(v1)
    unpacked = artifact_store().fetch(v1)
    assert {p.name for p in result.path.iterdir()} == {p.name for p in unpacked.iterdir()}
    assert (unpacked / "index.bin").read_bytes() == (result.path / "index.bin").read_bytes()

    second = index_build(tenant=tenant, created_by="command:build_index")
    v2 = version_of(second)
    assert (v2.label, v2.status, v2.created_by) == ("index-v2", VersionStatus.READY, "command:build_index")
    assert second.path != result.path


def test_a_build_that_fails_registers_nothing_usable_and_publishes_nothing(tenant, make_profile, monkeypatch):
    men(make_profile, 5)
    first = index_build(tenant=tenant)

    def broken(*args: Any) -> float:
        raise RuntimeError("recall measurement exploded")

    monkeypatch.setattr(indexing, "_measure_recall", broken)
    with pytest.raises(RuntimeError, match="exploded"):
        index_build(tenant=tenant)
    failed = ModelVersion.objects.get(tenant=tenant, version=2)
    assert failed.status == VersionStatus.FAILED and "exploded" in failed.error and not failed.artifact_uri
    pointer = json.loads((first.path.parent / "current.json").read_text())
    assert pointer["path"] == first.path.name
    assert [p.name for p in first.path.parent.iterdir() if p.is_dir() and not p.name.startswith(".")] == [
        first.path.name
    ]
    assert served_label(tenant) == "index-v1"


# --- Serving the active version -----------------------------------------------------------------


def test_a_new_build_serves_only_once_activated_then_rollback_switches_back(tenant, make_profile, django_user_model):
    men(make_profile, 20)
    first = index_build(tenant=tenant)
    old = serving_index(tenant.pk)
    assert old.version == "index-v1" and old.version_id == first.version_id and old.size == 20

    later = men(make_profile, 5, prefix="later")
    second = index_build(tenant=tenant)
    v2 = version_of(second)
    assert v2.status == VersionStatus.READY
    # current.json points at the new build, but the registry decides what serves.
    assert json.loads((second.path.parent / "current.json").read_text())["path"] == second.path.name
    for _ in range(3):
        index = serving_index(tenant.pk)
        assert index is old and index.size == 25  # the newcomers arrive as deltas on the old build
    assert index_status(tenant.pk)["version"] == "index-v1"

    with pytest.raises(PermissionDenied):
        model_version_activate(version=v2, actor=make_staff(django_user_model), reason="try")
    model_version_activate(version=v2, actor=make_ml_admin(django_user_model), reason="fresher build")
    wait_for(lambda: served_label(tenant) == "index-v2")
    new = serving_index(tenant.pk)
    assert new is not old and new.version_id == v2.id and new.size == 25
    assert index_status(tenant.pk) | {"age_seconds": None, "built_at": None} == {
        "loaded": True,
        "version": "index-v2",
        "size": 25,
        "built_at": None,
        "age_seconds": None,
        "last_error": None,
    }

    admin = django_user_model.objects.create_superuser(username="root", password="x", email="r@example.com")
    model_version_rollback(tenant=tenant, model_type="index", actor=admin, reason="v2 hurts matches")
    wait_for(lambda: served_label(tenant) == "index-v1")
    back = serving_index(tenant.pk)
    # A fresh load of v1's artifact, caught up with what changed since it was built.
    assert back is not old and back.size == 25 and all(p.pk in back for p in later)


def test_the_new_version_loads_outside_the_request_path(tenant, make_profile, monkeypatch):
    men(make_profile, 10)
    index_build(tenant=tenant)
    v2 = version_of(index_build(tenant=tenant))
    assert serving_index(tenant.pk).version == "index-v1"
    gate, entered = threading.Event(), threading.Event()
    original = index_service.AnnIndex.load.__func__

    def slow_load(cls: Any, directory: Any) -> Any:
        if str(v2.id) in str(directory):
            entered.set()
            gate.wait(10)
        return original(cls, directory)

    monkeypatch.setattr(index_service.AnnIndex, "load", classmethod(slow_load))
    model_version_activate(version=v2, actor="system:test", reason="r")
    try:
        started = time.monotonic()
        assert serving_index(tenant.pk).version == "index-v1"  # starts the load, does not wait for it
        assert entered.wait(10)
        for _ in range(5):
            assert serving_index(tenant.pk).version == "index-v1"
        assert time.monotonic() - started < 5
    finally:
        gate.set()
    wait_for(lambda: served_label(tenant) == "index-v2")


def test_a_version_that_fails_to_load_keeps_the_old_index_and_is_reported(tenant, make_profile):
    men(make_profile, 10)
    index_build(tenant=tenant)
    v2 = version_of(index_build(tenant=tenant))
    assert serving_index(tenant.pk).version == "index-v1"
    model_version_activate(version=v2, actor="system:test", reason="r")
    stored_file(v2).write_bytes(b"damaged after activation")  # activation verified the bytes
    # index_status never loads anything: serving_index notices the activation and starts the load.
    wait_for(lambda: serving_index(tenant.pk) is not None and index_status(tenant.pk)["last_error"] is not None)
    status = index_status(tenant.pk)
    assert status["version"] == "index-v1" and status["loaded"]
    assert "index-v2" in status["last_error"] and "checksum mismatch" in status["last_error"]
    ids, _ = serving_index(tenant.pk).query(np.ones(DIM, np.float32), 3)
    assert ids.shape == (1, 3)

    v3 = version_of(index_build(tenant=tenant))
    model_version_activate(version=v3, actor="system:test", reason="r")
    wait_for(lambda: served_label(tenant) == "index-v3")
    assert index_status(tenant.pk)["last_error"] is None


def test_a_corrupted_index_artifact_cannot_be_activated(tenant, make_profile):
    men(make_profile, 5)
    index_build(tenant=tenant)
    v2 = version_of(index_build(tenant=tenant))
    stored_file(v2).write_bytes(b"junk")
    with pytest.raises(ActivationRefused, match="checksum mismatch"):
        model_version_activate(version=v2, actor="system:test", reason="r")
    v2.refresh_from_db()
    assert v2.status == VersionStatus.READY
    assert serving_index(tenant.pk).version == "index-v1"


def test_builds_from_before_the_registry_serve_from_current_json_until_a_version_exists(tenant, make_profile):
    men(make_profile, 8)
    legacy = index_build(tenant=tenant)
    # As if built before this change: no registry rows at all.
    AuditLog.objects.filter(tenant=tenant).delete()
    ModelVersion.objects.filter(tenant=tenant).delete()
    ModelSlot.objects.filter(tenant=tenant).delete()
    index_reset_for_tests()
    old = serving_index(tenant.pk)
    assert old.version == legacy.path.name and old.version_id is None and old.size == 8

    registered = index_build(tenant=tenant)
    assert version_of(registered).status == VersionStatus.ACTIVE  # the tenant's first version
    wait_for(lambda: served_label(tenant) == "index-v1")
    assert serving_index(tenant.pk).version_id == registered.version_id
    # From now on a newer build (and current.json pointing at it) is not served until activated.
    newer = index_build(tenant=tenant)
    assert json.loads((newer.path.parent / "current.json").read_text())["path"] == newer.path.name
    assert serving_index(tenant.pk).version == "index-v1"


# --- Experiments ----------------------------------------------------------------------------------


@pytest.fixture
def two_versions(tenant: Tenant, make_profile: Callable[..., Profile]) -> tuple[ModelVersion, ModelVersion]:
    men(make_profile, 20)
    v1 = version_of(index_build(tenant=tenant))
    men(make_profile, 10, prefix="later")
    v2 = version_of(index_build(tenant=tenant))
    assert (v1.status, v2.status) == (VersionStatus.ACTIVE, VersionStatus.READY)
    return v1, v2


def start_experiment(tenant: Tenant, v1: ModelVersion, v2: ModelVersion, admin: Any) -> Experiment:
    experiment = experiment_create(
        tenant=tenant,
        model_type="index",
        name="ann-rebuild",
        arms=[ArmSpec("control", v1, 50), ArmSpec("treatment", v2, 50)],
        actor=admin,
        salt="fixed-salt",
    )
    return experiment_start(experiment=experiment, actor=admin, reason="does the fresher index help?")


def users_by_arm(make_profile: Callable[..., Profile], experiment: Experiment, per_arm: int) -> dict[str, list]:
    """At least ``per_arm`` users in each arm (users are random; their arms are computed)."""
    groups: dict[str, list[Profile]] = {arm.name: [] for arm in experiment.arms.all()}
    for _ in range(200):
        if all(len(g) >= per_arm for g in groups.values()):
            break
        user = woman(make_profile)
        arm = experiment_assign(experiment, user.external_id).name
        if len(groups[arm]) < per_arm:
            groups[arm].append(user)
    assert all(len(g) >= per_arm for g in groups.values())
    return groups


@pytest.fixture
def queried_versions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The version label of every ServingIndex the feed's ANN stage queried."""
    seen: list[str] = []
    original = index_service.ServingIndex.query

    def spy(self: index_service.ServingIndex, *args: Any, **kwargs: Any) -> Any:
        seen.append(self.version)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(index_service.ServingIndex, "query", spy)
    return seen


def feed_once(tenant: Tenant, user: Profile, seen: list[str]) -> tuple[FeedResult, set[str]]:
    seen.clear()
    result = feed_for(tenant=tenant, user=user, count=5)
    return result, set(seen)


def test_an_index_experiment_serves_each_user_their_arms_version_and_tags_impressions(
    tenant, make_profile, django_user_model, two_versions, queried_versions
):
    v1, v2 = two_versions
    experiment = start_experiment(tenant, v1, v2, make_ml_admin(django_user_model))
    arms = {arm.name: arm for arm in experiment.arms.select_related("version")}
    groups = users_by_arm(make_profile, experiment, per_arm=3)

    for name, users in groups.items():
        arm = arms[name]
        for user in users:
            result, queried = feed_once(tenant, user, queried_versions)
            assert queried == {arm.version.label}, (name, queried)
            assert result.experiment_arm == arm.tag and result.fallback is None
            assert result.model_version == f"feed-v1+index:{arm.version.label}"
            rows = Impression.objects.filter(user=user)
            assert rows.count() == len(result.items) == 5
            assert set(rows.values_list("experiment_arm", "model_version")) == {(arm.tag, result.model_version)}
    # The control arm runs the active version: it is the active index, not a second copy.
    assert index_service.serving_index_version(tenant.pk, v1.label) is serving_index(tenant.pk)
    treatment = index_service.serving_index_version(tenant.pk, v2.label)
    assert treatment is not serving_index(tenant.pk) and treatment.version_id == v2.id

    # Stable per user: across feeds, and across a restart of the process's caches.
    user = groups["treatment"][0]
    index_reset_for_tests()
    feed_reset_for_tests()
    for _ in range(2):
        result, queried = feed_once(tenant, user, queried_versions)
        assert result.experiment_arm == arms["treatment"].tag and queried == {v2.label}

    # Stopped: everyone is back on the active version, impressions tagged with the variant.
    experiment_stop(experiment=experiment, actor="system:test", reason="enough data")
    result, queried = feed_once(tenant, user, queried_versions)
    assert queried == {v1.label} and result.experiment_arm is None
    assert result.model_version == f"feed-v1+index:{v1.label}"
    assert Impression.objects.filter(user=user, model_version=result.model_version).filter(
        experiment_arm="reciprocal"
    ).count() == len(result.items)


def test_an_arm_whose_version_cannot_load_gets_the_active_index_untagged(
    tenant, make_profile, django_user_model, two_versions, queried_versions
):
    v1, v2 = two_versions
    experiment = start_experiment(tenant, v1, v2, "system:test")
    stored_file(v2).write_bytes(b"junk")  # after the start, which verifies every arm's artifact
    user = users_by_arm(make_profile, experiment, per_arm=1)["treatment"][0]
    result, queried = feed_once(tenant, user, queried_versions)
    assert queried == {v1.label} and result.experiment_arm is None
    assert set(Impression.objects.filter(user=user).values_list("experiment_arm", flat=True)) == {"reciprocal"}
    error = index_status(tenant.pk)["last_error"]
    assert "index-v2 (experiment arm)" in error and "checksum mismatch" in error
    assert index_status(tenant.pk)["version"] == "index-v1"
