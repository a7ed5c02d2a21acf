"""The LightGBM ranker as the feed's final scorer, chosen by the active version or an experiment
(issue: deep models; the feed can use the ranker as final scorer)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.management import call_command
from django.db.models import Count, Q

from accounts.models import Tenant
from recommender.feed.pipeline import FeedResult, feed_for
from recommender.ml.fusion import fuse
from recommender.ml.ranker import RANKER_FEATURES, Ranker, RankerConfig, feature_matrix
from recommender.models import Impression, Profile, Swipe
from recommender.serving.ranker import ranker_wait
from registry.experiments import experiment_assign
from registry.models import ModelType, ModelVersion
from registry.services import ArmSpec, experiment_create, experiment_start, model_version_register

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("isolated_ml_state")]

# Plausible ranges of the features the synthetic rankers learn from (the rest stay missing).
RANGES = {"cand_age": (18.0, 70.0), "cand_swipes_given": (0.0, 60.0), "elo_candidate": (1300.0, 1700.0)}


def ranker_preferring(feature: str, folder: Path, *, descending: bool = True, seed: int = 0) -> Path:
    """A real LightGBM ranker trained on synthetic groups in which the candidates with the highest
    (or lowest) ``feature`` were the ones liked; written to ``folder``."""
    rng = np.random.default_rng(seed)
    n_groups, size = 300, 20
    lo, hi = RANGES[feature]
    # Each group spans a narrow window somewhere in the range, so the trees learn the order
    # everywhere (with groups spanning the whole range they would only learn the top end).
    width = (hi - lo) / 8
    centres = rng.uniform(lo + width, hi - width, n_groups)
    values = (centres[:, None] + rng.uniform(-width, width, (n_groups, size))).reshape(-1)
    noise = {k: rng.uniform(*RANGES[k], n_groups * size) for k in RANGES if k != feature}
    x = feature_matrix({feature: values, **noise}, n_groups * size)
    key = values if descending else -values
    ranks = np.argsort(np.argsort(-key.reshape(n_groups, size), axis=1), axis=1)  # 0 = best in its group
    y = np.where(ranks == 0, 2, np.where(ranks < 4, 1, 0)).reshape(-1)
    config = RankerConfig(n_estimators=100, num_leaves=15, min_data_in_leaf=5, early_stopping_rounds=10, threads=1)
    Ranker(config).fit(x, y, np.full(n_groups, size)).save(folder)
    return folder


def register_ranker(tenant: Tenant, folder: Path) -> ModelVersion:
    return model_version_register(
        tenant=tenant, model_type=ModelType.RANKER, artifact_path=folder, created_by="test:ranker"
    )


@pytest.fixture
def demo(tenant: Tenant, settings: Any) -> Tenant:
    settings.ML_ENABLED = False  # no MiniLM needed for loading: the structured pre-filter supplies candidates
    call_command("load_demo", "--limit", "500", "--swipes", "4000", "--no-users", verbosity=0)
    settings.ML_ENABLED = True
    settings.ML_EXPLORATION_SHARE = 0.0
    return tenant


def swipers(tenant: Tenant, n: int) -> list[Profile]:
    users = Profile.objects.filter(tenant=tenant, status="active").order_by("pk")
    return [u for u in users if u.swipes_made.exists()][:n]  # type: ignore[attr-defined]


def ages(result: FeedResult) -> np.ndarray:
    by_pk = dict(Profile.objects.filter(pk__in=[i.profile_id for i in result.items]).values_list("pk", "age"))
    return np.asarray([by_pk[i.profile_id] for i in result.items], dtype=float)


def concordant_pairs(scores: np.ndarray, values: np.ndarray) -> tuple[int, int]:
    """(pairs of one feed whose ``values`` differ, of those the ones ``scores`` order the same way)."""
    i, j = np.triu_indices(len(values), k=1)
    differ = values[i] != values[j]
    agree = np.sign(scores[i] - scores[j]) == np.sign(values[i] - values[j])
    return int(differ.sum()), int((agree & differ).sum())


def concordance(feeds: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Over every feed's pairs whose values differ, the share ordered the same way by the scores
    (1: the same order, 0: reversed, about 0.5: unrelated)."""
    counts = np.asarray([concordant_pairs(s, v) for s, v in feeds]).reshape(-1, 2).sum(axis=0)
    return float(counts[1] / counts[0]) if counts[0] else float("nan")


def test_the_active_ranker_orders_the_feed(demo: Tenant, tmp_path: Path) -> None:
    version = register_ranker(demo, ranker_preferring("cand_age", tmp_path / "older"))
    assert version.status == "active"  # the first version of the slot is activated
    assert ranker_wait(demo.pk) is not None
    checked: list[tuple[np.ndarray, np.ndarray]] = []
    for user in swipers(demo, 8):
        ranked = feed_for(tenant=demo, user=user, count=15, log_impressions=False)
        if not ranked.items:
            continue  # nobody eligible: nothing to rank
        fused = feed_for(tenant=demo, user=user, count=15, log_impressions=False, use_ranker=False)
        assert "+ranker:" + version.label in ranked.model_version and "+ranker" not in fused.model_version
        assert all("ranker" not in i.components for i in fused.items)
        # the ranker's P(user likes v) takes the user's side of the reciprocal fusion
        p_uv = np.asarray([i.components["ranker"] for i in ranked.items])
        p_vu = np.asarray([i.components["p_candidate_likes"] for i in ranked.items])
        assert ((p_uv > 0) & (p_uv < 1)).all()
        scores = [i.score for i in ranked.items]
        assert scores == sorted(scores, reverse=True)
        assert scores == pytest.approx(fuse(p_uv, p_vu, "harmonic"), rel=1e-12)  # full-precision components
        checked.append((p_uv, ages(ranked)))
    # the ranker learnt "older first"
    assert sum(len(v) for _, v in checked) >= 30 and concordance(checked) > 0.8


def test_the_ranker_reads_the_swipe_counters_the_feed_serves(demo: Tenant, tmp_path: Path) -> None:
    register_ranker(demo, ranker_preferring("cand_swipes_given", tmp_path / "active"))
    ranker_wait(demo.pk)
    checked: list[tuple[np.ndarray, np.ndarray]] = []
    for user in swipers(demo, 8):
        result = feed_for(tenant=demo, user=user, count=15, log_impressions=False)
        pks = [i.profile_id for i in result.items]
        given = dict(
            Profile.objects.filter(pk__in=pks)
            .annotate(n=Count("swipes_made", filter=Q(swipes_made__tenant=demo)))
            .values_list("pk", "n")
        )
        p_uv = np.asarray([i.components["ranker"] for i in result.items])
        checked.append((p_uv, np.asarray([given[pk] for pk in pks], float)))
    # a candidate who swiped more ranks higher: the store's counters equal the swipe table
    assert sum(len(v) for _, v in checked) >= 30 and concordance(checked) > 0.8
    assert Swipe.objects.filter(tenant=demo).count() > 0


def test_a_ranker_experiment_serves_each_arm_its_version(demo: Tenant, tmp_path: Path) -> None:
    older = register_ranker(demo, ranker_preferring("cand_age", tmp_path / "older"))
    younger = register_ranker(demo, ranker_preferring("cand_age", tmp_path / "younger", descending=False))
    experiment = experiment_create(
        tenant=demo,
        model_type=ModelType.RANKER,
        name="ranker-age",
        arms=[ArmSpec("control", older, 50), ArmSpec("treatment", younger, 50)],
        actor="system:test",
        salt="fixed-salt",
    )
    experiment = experiment_start(experiment=experiment, actor="system:test", reason="which order matches more?")
    feeds: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"control": [], "treatment": []}
    for user in swipers(demo, 24):
        arm = experiment_assign(experiment, user.external_id)
        before = set(Impression.objects.filter(tenant=demo, user=user).values_list("pk", flat=True))
        result = feed_for(tenant=demo, user=user, count=12)
        if not result.items:
            continue  # nobody eligible: nothing ranked, nothing logged
        assert result.experiment_arm == arm.tag and "+ranker:" + arm.version.label in result.model_version
        logged = Impression.objects.filter(tenant=demo, user=user).exclude(pk__in=before)
        assert logged.count() == len(result.items)
        assert set(logged.values_list("experiment_arm", flat=True)) <= {arm.tag}
        assert set(logged.values_list("model_version", flat=True)) <= {result.model_version}
        feeds[arm.name].append((np.asarray([i.components["ranker"] for i in result.items]), ages(result)))
    assert all(sum(len(v) for _, v in f) >= 20 for f in feeds.values())
    assert concordance(feeds["control"]) > 0.75  # older first
    assert concordance(feeds["treatment"]) < 0.25  # younger first


def test_without_a_servable_ranker_the_fusion_ranks(demo: Tenant, tmp_path: Path, settings: Any) -> None:
    folder = ranker_preferring("cand_age", tmp_path / "broken")
    (folder / "ranker.txt").write_text("not a LightGBM model\n")
    register_ranker(demo, folder)
    assert ranker_wait(demo.pk) is None  # the load failed; nothing is served
    user = swipers(demo, 1)[0]
    result = feed_for(tenant=demo, user=user, count=10, log_impressions=False)
    assert result.items and "+ranker" not in result.model_version
    assert all("ranker" not in i.components for i in result.items)
    # ML off: no ranker either, even with a good active version
    register_ranker(demo, ranker_preferring("cand_age", tmp_path / "good"))
    settings.ML_ENABLED = False
    off = feed_for(tenant=demo, user=user, count=10, log_impressions=False)
    assert "+ranker" not in off.model_version


def test_ranker_features_follow_the_loaded_rankers_own_list(tmp_path: Path) -> None:
    ranker = Ranker.load(ranker_preferring("cand_age", tmp_path / "r"))
    ranker.features = ("cand_age", "elo_candidate")  # an older ranker trained on fewer columns
    x = ranker.matrix({"cand_age": np.array([20.0, 60.0]), "liked_you": np.array([1.0, 0.0])}, 2)
    assert x.shape == (2, 2) and x[:, 0].tolist() == [20.0, 60.0] and np.isnan(x[:, 1]).all()
    assert len(RANKER_FEATURES) == len(set(RANKER_FEATURES))


def test_a_ranker_without_calibration_orders_the_feed_by_its_raw_score(demo: Tenant, tmp_path: Path) -> None:
    folder = ranker_preferring("cand_age", tmp_path / "old-format")
    meta = json.loads((folder / "ranker.json").read_text())
    meta.pop("calibration")  # as saved before rankers were calibrated
    (folder / "ranker.json").write_text(json.dumps(meta))
    register_ranker(demo, folder)
    assert ranker_wait(demo.pk) is not None
    served = 0
    for user in swipers(demo, 6):
        result = feed_for(tenant=demo, user=user, count=10, log_impressions=False)
        scores = [i.score for i in result.items]
        assert scores == [i.components["ranker"] for i in result.items]
        assert scores == sorted(scores, reverse=True)
        served += len(scores)
    assert served > 0


def test_the_ranker_calibration_is_a_like_probability(tmp_path: Path) -> None:
    ranker = Ranker.load(ranker_preferring("cand_age", tmp_path / "r"))
    assert ranker.calibration is not None and ranker.calibration[0] > 0  # higher score, likelier like
    x = ranker.matrix({"cand_age": np.linspace(20, 65, 50)}, 50)
    p = ranker.like_probability(x)
    assert p is not None and ((p > 0) & (p < 1)).all()
    # 4 of every 20 synthetic candidates were liked: the mean probability is near 0.2
    assert 0.1 < float(p.mean()) < 0.4


class _LogOdds:
    """A stand-in collaborative model: P(a likes b) = sigmoid(z[a, b])."""

    def __init__(self, z: np.ndarray) -> None:
        self.z = z

    def like_probability(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.z[users, items]))


def test_the_feed_serves_every_feature_training_computes() -> None:
    """No train/serve skew: for the same pair and history, the feed's columns (ranker_columns)
    equal the training columns (context_features), column by column, missing ones included; only
    the models the feed does not pool (one collaborative model per feed) may differ."""
    import scipy.sparse as sp

    from recommender.ml.ranker import RankerContext, context_features
    from recommender.ml.structured import CandidateBatch, ProfileFeatures
    from recommender.serving.ranker import RankerInputs, ranker_columns

    rng = np.random.default_rng(0)
    n = 12
    attrs = [{"smokes": "no", "religion": "atheism"}, {"smokes": "yes"}, {}, {"drinks": "socially", "pets": "cats"}]
    genders = ("woman", "man")
    profiles = [
        ProfileFeatures(age=int(rng.integers(22, 45)), gender=genders[i % 2], seeking=(genders[1 - i % 2],),
                        age_min=21, age_max=45, max_distance_km=float(rng.integers(10, 80)),
                        lat=37.7 + rng.normal(0, 0.2), lon=-122.4 + rng.normal(0, 0.2), interests=frozenset({"hiking"}),
                        attributes=attrs[i % len(attrs)])
        for i in range(n)
    ]  # fmt: skip
    batch = CandidateBatch.from_features(profiles)
    bio = rng.normal(size=(n, 8))
    bio /= np.linalg.norm(bio, axis=1, keepdims=True)
    bio[3] = 0.0  # no bio: similarity unknown
    z = rng.normal(size=(n, n))  # the model's log-odds
    likes = sp.csr_matrix((np.ones(3), ([4, 5, 6], [0, 0, 1])), shape=(n, n))
    given, liked = rng.integers(0, 50, n).astype(float), rng.integers(0, 10, n).astype(float)
    elo = rng.normal(1500, 80, n)
    ctx = RankerContext(profiles=profiles, batch=batch, bio=bio, elo=elo, swipes_given=given, likes_given=liked,
                        likes_received=np.zeros(n), likes=likes, models={"als": _LogOdds(z)})  # fmt: skip
    user, cands = 0, np.arange(1, n)
    trained = context_features(ctx, user, cands)
    has_bio = np.abs(bio[cands]).sum(axis=1) > 0
    liked_you = np.asarray(likes[cands, user].todense()).ravel() > 0
    inputs = RankerInputs(
        user=profiles[user], cands=batch.take(cands), similarity=np.where(has_bio, bio[cands] @ bio[user], np.nan),
        collab_model="als", collab_uv=z[user, cands], collab_vu=z[cands, user], elo_user=float(elo[user]),
        elo_candidate=elo[cands], user_swipes=float(given[user]), user_likes=float(liked[user]),
        cand_swipes=given[cands], cand_likes=liked[cands], liked_you=liked_you,
    )  # fmt: skip
    served = feature_matrix(ranker_columns(inputs), cands.size)
    assert trained.shape == served.shape == (cands.size, len(RANKER_FEATURES))
    for j, name in enumerate(RANKER_FEATURES):
        np.testing.assert_allclose(served[:, j], trained[:, j], rtol=1e-5, atol=1e-5, err_msg=name)
    assert np.isfinite(trained[:, RANKER_FEATURES.index("same_smokes")]).any()
    assert np.isfinite(trained[:, RANKER_FEATURES.index("p_uv_als")]).all()
