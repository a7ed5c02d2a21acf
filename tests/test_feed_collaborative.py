"""The active collaborative model as a feed signal and candidate source (issue: training and
evaluation; the feed uses the trained model)."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.models import Tenant
from recommender.feed.features import profile_features
from recommender.feed.pipeline import feed_for
from recommender.feed.store import candidate_store
from recommender.ml.collab import load_recommender
from recommender.models import Profile
from recommender.serving.collaborative import collaborative_wait, serving_collaborative
from recommender.training.extract import export_hash
from recommender.training.train import collaborative_train
from registry.models import ModelType, ModelVersion
from registry.services import model_version_deactivate
from registry.storage import artifact_store

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("isolated_ml_state")]

FAST_LMF = {"factors": 8, "epochs": 6, "threads": 1, "batch_size": 1024}


def _train_lmf(tenant: Tenant, tmp_path: Path, *, learn_fusion: bool = False) -> ModelVersion:
    """The tenant's first lmf version, active. Without the learned fusion by default: most tests
    here are about the hand-weighted pool of the model and the signals (the cold-start prior)."""
    events, splits = tmp_path / "events", tmp_path / "splits"
    start = (timezone.now() - timedelta(days=60)).date().isoformat()
    call_command("extract_events", "--output", str(events), "--start-date", start, "--tenant", tenant.slug, verbosity=0)
    call_command("build_datasets", "--input", str(events), "--output", str(splits), "--split-ratio", "0.8,0.1,0.1")
    config = tmp_path / "lmf.json"
    config.write_text(json.dumps(FAST_LMF))
    result = collaborative_train(
        model="lmf", data_dir=splits, config_path=config, tenant_slug=tenant.slug, refit_all=True,
        search_trials=2, learn_fusion=learn_fusion,
    )  # fmt: skip
    # the served model was refitted on every split: it knows the most recent swipes too
    pairs = set()
    for split in ("train", "validation", "test"):
        table = pq.read_table(splits / f"{split}.parquet", columns=["user", "candidate"])
        pairs |= set(zip(table.column("user").to_pylist(), table.column("candidate").to_pylist(), strict=True))
    assert result.metrics["refit_all"]["interactions"] == len(pairs) > result.metrics["train_interactions"]
    version = ModelVersion.objects.get(pk=result.version_id)
    assert version.model_type == ModelType.COLLABORATIVE and version.status == "active"  # the first is activated
    return version


@pytest.fixture
def demo(tenant: Tenant, settings: Any) -> Tenant:
    settings.ML_ENABLED = False  # no MiniLM needed: the structured pre-filter supplies candidates
    call_command("load_demo", "--limit", "600", "--swipes", "5000", "--no-users", verbosity=0)
    return tenant


def _active_swipers(tenant: Tenant, n: int) -> list[Profile]:
    users = Profile.objects.filter(tenant=tenant, status="active").order_by("pk")
    return [u for u in users if u.swipes_made.exists()][:n]  # type: ignore[attr-defined]


def test_feed_pools_the_collaborative_estimates_of_both_directions(demo: Tenant, tmp_path: Path, settings: Any) -> None:
    version = _train_lmf(demo, tmp_path)
    settings.ML_ENABLED = True
    settings.ML_COLLABORATIVE_WEIGHT = 2.0
    cf = collaborative_wait(demo.pk)
    assert cf is not None and cf.version == version.label and cf.model_name == "lmf"
    # the same model, loaded independently, with rows found by the export pseudonyms
    model = load_recommender(artifact_store().fetch(version) / "model.pt")
    ids = np.asarray(model.extra["ids"])  # type: ignore[attr-defined]
    row = {h: i for i, h in enumerate(ids.tolist())}
    checked = 0
    for user in _active_swipers(demo, 10):
        result = feed_for(tenant=demo, user=user, count=10, log_impressions=False)
        assert "+cf:" + version.label in result.model_version
        u = row.get(export_hash(user.external_id), -1)
        for item in result.items:
            v = row.get(export_hash(item.external_id), -1)
            expected_uv = 1 / (1 + np.exp(-model.pair_logits(np.array([u]), np.array([v]))[0]))  # type: ignore[attr-defined]
            expected_vu = 1 / (1 + np.exp(-model.pair_logits(np.array([v]), np.array([u]))[0]))  # type: ignore[attr-defined]
            assert item.components["collaborative_user_likes"] == pytest.approx(expected_uv, abs=1e-3)
            assert item.components["collaborative_candidate_likes"] == pytest.approx(expected_vu, abs=1e-3)
            checked += 1
    assert checked >= 30


def test_with_a_dominant_model_weight_the_order_follows_the_model(demo: Tenant, tmp_path: Path, settings: Any) -> None:
    _train_lmf(demo, tmp_path)
    settings.ML_ENABLED = True
    settings.ML_COLLABORATIVE_WEIGHT = 1e6  # the signals' share of the pool becomes negligible
    settings.ML_EXPLORATION_SHARE = 0.0
    collaborative_wait(demo.pk)
    ordered = 0
    for user in _active_swipers(demo, 10):
        items = feed_for(tenant=demo, user=user, count=10, log_impressions=False).items
        fused = [
            2 * a * b / (a + b) if not c["liked_you"] else None
            for c in (i.components for i in items)
            for a, b in [(c["collaborative_user_likes"], c["collaborative_candidate_likes"])]
        ]
        ranked = [f for f in fused if f is not None]
        # the order follows the model's fused probabilities to within 1e-3 between neighbours (the
        # components are full-precision now: this is the pool's slack, not a rounding allowance)
        assert all(a >= b - 1e-3 for a, b in itertools.pairwise(ranked))
        ordered += len(ranked) >= 5
    assert ordered >= 3  # users whose feeds had enough model-ranked items to check an order


def test_the_model_proposes_prefiltered_profiles_in_its_own_order(demo: Tenant, tmp_path: Path) -> None:
    _train_lmf(demo, tmp_path)
    serving = collaborative_wait(demo.pk)
    assert serving is not None
    # On PostgreSQL the loader thread maps the tenant's profiles at load, but it cannot see this
    # test's uncommitted rows: map them from here, as it does in a serving process.
    serving.map_tenant()
    snap = candidate_store(demo.pk).snapshot()
    checked = 0
    for user in _active_swipers(demo, 10):
        features = profile_features(user)
        everyone = serving.reciprocal_candidates(user.pk, 100_000)  # the model's order over all columns
        plausible = everyone[snap.prefilter_pks(features, everyone)]
        got = serving.reciprocal_candidates(
            user.pk,
            20,
            eligible=lambda pks, f=features: snap.prefilter_pks(f, pks),  # type: ignore[misc]
        )
        assert len(got) == min(20, len(plausible))
        assert got.tolist() == plausible[:20].tolist()
        checked += len(plausible) >= 20
    assert checked >= 3  # users with a full list of plausible proposals (narrow preferences have fewer)


def test_without_the_model_the_feed_says_so_and_still_serves(demo: Tenant, tmp_path: Path, settings: Any) -> None:
    _train_lmf(demo, tmp_path)
    settings.ML_ENABLED = True
    collaborative_wait(demo.pk)
    user = max(_active_swipers(demo, 10), key=lambda u: len(feed_for(tenant=demo, user=u, log_impressions=False).items))
    off = feed_for(tenant=demo, user=user, count=10, log_impressions=False, use_collaborative=False)
    assert off.items and "+cf:" not in off.model_version
    assert all(i.components["collaborative_user_likes"] is None for i in off.items)
    # deactivating the version takes it out of serving without a restart
    model_version_deactivate(tenant=demo, model_type=ModelType.COLLABORATIVE, actor="system:test", reason="test")
    collaborative_wait(demo.pk)
    assert serving_collaborative(demo.pk) is None
    after = feed_for(tenant=demo, user=user, count=10, log_impressions=False)
    assert after.items and "+cf:" not in after.model_version


def test_profiles_created_after_training_are_cold_not_errors(
    demo: Tenant, tmp_path: Path, settings: Any, make_profile: Any
) -> None:
    _train_lmf(demo, tmp_path)
    settings.ML_ENABLED = True
    cf = collaborative_wait(demo.pk)
    assert cf is not None
    newcomer = make_profile(gender="woman", seeking=["man"])
    assert cf.rows(np.asarray([newcomer.pk]))[0] == -1
    items = feed_for(tenant=demo, user=newcomer, count=10, log_impressions=False).items
    assert items
    # a cold user still gets the model's view of each candidate's side (their selectivity)
    assert all(i.components["collaborative_candidate_likes"] is not None for i in items)


def test_a_learned_fusion_takes_over_from_the_hand_set_weights(demo: Tenant, tmp_path: Path, settings: Any) -> None:
    """A version trained with its learned fusion: the feed's two directions come from it, so the
    hand-set pool weight no longer moves them; the version's metrics compare it on test."""
    version = _train_lmf(demo, tmp_path, learn_fusion=True)
    assert version.metrics["learned_fusion"]["test_like_auc"]["learned_fusion"] is not None
    settings.ML_ENABLED = True
    settings.ML_EXPLORATION_SHARE = 0.0
    serving = collaborative_wait(demo.pk)
    assert serving is not None and serving.fusion is not None
    user = _active_swipers(demo, 1)[0]
    answers = []
    for weight in (0.5, 50.0):
        settings.ML_COLLABORATIVE_WEIGHT = weight
        items = feed_for(tenant=demo, user=user, count=10, log_impressions=False).items
        answers.append({i.profile_id: i.components["p_user_likes"] for i in items})
    assert answers[0] == answers[1] and len(answers[0]) == 10
