"""The one test suite every recommender passes (parametrised over the model classes)."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from collab_planted import Planted, planted_dating

from recommender.ml.collab import (
    ALS,
    BPR,
    ALSConfig,
    BPRConfig,
    GraphSAGE,
    GraphSAGEConfig,
    LMFConfig,
    LogisticMF,
    Popularity,
    PopularityConfig,
    Recommender,
    RecommenderConfig,
    TwoTower,
    TwoTowerConfig,
    evaluate_model,
    load_recommender,
    read_checkpoint,
)
from recommender.ml.collab.metrics import ranking_metrics

# Small but real settings: each fit takes a fraction of a second on the planted data.
CONFIGS: dict[type[Recommender], RecommenderConfig] = {
    Popularity: PopularityConfig(seed=3),
    ALS: ALSConfig(seed=3, factors=8, epochs=8, alpha=5.0, regularization=0.1, threads=1),
    BPR: BPRConfig(seed=3, factors=8, epochs=25, learning_rate=0.05, batch_size=64, threads=1),
    LogisticMF: LMFConfig(seed=3, factors=8, epochs=30, batch_size=256, learning_rate=0.05, threads=1),
    TwoTower: TwoTowerConfig(
        seed=3, dim=16, id_dim=16, hidden=32, epochs=12, batch_size=64, learning_rate=0.01, temperature=0.2, threads=1
    ),
    GraphSAGE: GraphSAGEConfig(
        seed=3,
        dim=16,
        id_dim=16,
        hidden=32,
        epochs=8,
        batch_size=64,
        learning_rate=0.005,
        temperature=0.3,
        fanout1=5,
        fanout2=3,
        threads=1,
    ),
}
MODELS = list(CONFIGS)


def fitted(cls: type[Recommender], data: Planted, **overrides: object) -> Recommender:
    model = cls(replace(CONFIGS[cls], **overrides))
    model.fit(data.train)
    return model


def random_ndcg(data: Planted, k: int, seed: int = 0) -> float:
    """NDCG@k of a uniformly random ranking of the unseen items, averaged over 20 draws."""
    rng = np.random.default_rng(seed)
    relevant = data.heldout.positives()
    users = np.flatnonzero(np.diff(relevant.indptr))
    seen = data.train.seen().tolil()
    values = []
    for _ in range(20):
        recs = np.stack([rng.permutation(np.setdiff1d(np.arange(data.n), [*seen.rows[u], u]))[:k] for u in users])
        values.append(ranking_metrics(recs, relevant[users], k)[f"ndcg@{k}"])
    return float(np.mean(values))


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.name)
def test_beats_random_on_planted_structure(cls: type[Recommender], planted: Planted) -> None:
    model = fitted(cls, planted)
    ours = evaluate_model(model, planted.train, planted.heldout, 10)["ndcg@10"]
    assert ours > 1.3 * random_ndcg(planted, 10)


@pytest.mark.parametrize("cls", [ALS, BPR], ids=lambda c: c.name)
def test_factor_models_learn_the_groups(cls: type[Recommender], planted: Planted) -> None:
    """Beyond popularity: the planted taste groups must show in the recommendations."""

    def same_group_share(model: Recommender) -> float:
        recs, _ = model.recommend(np.arange(planted.n), 10, exclude=planted.train.seen())
        return float((planted.group[recs] == planted.group[:, None]).mean())

    model, baseline = fitted(cls, planted), fitted(Popularity, planted)
    # 0.25 by chance with 4 groups; popularity, blind to taste, stays near it
    assert same_group_share(model) > same_group_share(baseline) + 0.1
    assert (
        evaluate_model(model, planted.train, planted.heldout, 10)["ndcg@10"]
        > evaluate_model(baseline, planted.train, planted.heldout, 10)["ndcg@10"]
    )


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.name)
def test_never_recommends_excluded_items_or_self(cls: type[Recommender], planted: Planted) -> None:
    model = fitted(cls, planted)
    seen = planted.train.seen()
    users = np.arange(planted.n)
    recs, scores = model.recommend(users, 15, exclude=seen)
    assert recs.shape == (planted.n, 15)
    assert (recs >= 0).all() and np.isfinite(scores).all()
    assert not np.asarray(seen[np.repeat(users, 15), recs.reshape(-1)]).any()
    assert not (recs == users[:, None]).any()
    assert all(len(set(row)) == 15 for row in recs.tolist())
    assert (np.diff(scores, axis=1) <= 0).all()  # best first


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.name)
def test_pads_when_fewer_items_than_k_remain(cls: type[Recommender], planted: Planted) -> None:
    model = fitted(cls, planted)
    everything_but_two = sp.csr_matrix(np.ones((1, planted.n)))
    everything_but_two[0, [5, 6]] = 0
    everything_but_two.eliminate_zeros()
    recs, scores = model.recommend([0], 5, exclude=everything_but_two)
    assert sorted(recs[0, :2].tolist()) == [5, 6]
    assert (recs[0, 2:] == -1).all() and np.isneginf(scores[0, 2:]).all()


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.name)
def test_candidates_limit_the_catalogue(cls: type[Recommender], planted: Planted) -> None:
    model = fitted(cls, planted)
    pool = np.array([3, 7, 11, 19, 23, 42])
    recs, _ = model.recommend([1, 2], 4, candidates=pool)
    assert set(recs.reshape(-1).tolist()) <= set(pool.tolist())


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.name)
def test_deterministic_with_the_seed(cls: type[Recommender], planted: Planted) -> None:
    users, items = np.arange(planted.n), np.roll(np.arange(planted.n), 7)
    a = fitted(cls, planted).score_pairs(users, items)
    b = fitted(cls, planted).score_pairs(users, items)
    np.testing.assert_array_equal(a, b)
    if cls is not Popularity:  # popularity has nothing random: a seed cannot change it
        c = fitted(cls, planted, seed=4).score_pairs(users, items)
        assert not np.array_equal(a, c)


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.name)
def test_save_load_round_trip(cls: type[Recommender], planted: Planted, tmp_path: Path) -> None:
    model = fitted(cls, planted)
    path = model.save(tmp_path / "model.pt", extra={"ids": ["a", "b"]})
    loaded = load_recommender(path)
    assert type(loaded) is cls and loaded.config == model.config
    users, items = np.repeat(np.arange(planted.n), 3), np.tile([1, 50, 99], planted.n)
    np.testing.assert_array_equal(loaded.score_pairs(users, items), model.score_pairs(users, items))
    np.testing.assert_array_equal(loaded.like_probability(users, items), model.like_probability(users, items))
    seen = planted.train.seen()
    got, want = loaded.recommend(users[:30], 10, exclude=seen), model.recommend(users[:30], 10, exclude=seen)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert loaded.extra == {"ids": ["a", "b"]}
    assert loaded.best_epoch == model.best_epoch and len(loaded.history) == len(model.history)


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.name)
def test_config_is_stored_in_the_checkpoint(cls: type[Recommender], planted: Planted, tmp_path: Path) -> None:
    model = fitted(cls, planted, seed=11, patience=5)
    checkpoint = read_checkpoint(model.save(tmp_path / "m.pt"))
    assert checkpoint["model"] == cls.name
    assert checkpoint["config"] == asdict(model.config)
    assert checkpoint["config"]["seed"] == 11 and checkpoint["config"]["patience"] == 5


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.name)
def test_users_and_items_without_interactions(cls: type[Recommender]) -> None:
    data = planted_dating(seed=1, n=60)
    # Profiles 60..63 exist in the id map but never swiped nor were swiped on.
    from recommender.ml.collab import IdMap, interactions_from_events

    coo = data.train.matrix.tocoo()
    ids = IdMap(np.arange(64))
    train = interactions_from_events(coo.row, coo.col, coo.data, user_map=ids, shared=True)
    model = cls(CONFIGS[cls])
    model.fit(train)
    cold_users = np.array([60, 61, 62, 63])
    recs, scores = model.recommend(cold_users, 10, exclude=train.seen())
    assert (recs >= 0).all() and np.isfinite(scores).all()
    # a cold user is served the popularity ranking
    popular = np.argsort(-np.asarray(train.positives().sum(axis=0)).reshape(-1), kind="stable")
    top = set(popular[popular != 60][:10].tolist())
    assert len(top & set(recs[0].tolist())) >= 8
    pairs = model.score_pairs(np.array([0, 60, 61]), np.array([62, 1, 63]))
    assert np.isfinite(pairs).all()
    probs = model.reciprocal_scores(61, np.array([0, 1, 62]))
    assert np.all((probs >= 0) & (probs <= 1))


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.name)
def test_reciprocal_scores_use_both_directions(cls: type[Recommender], planted: Planted) -> None:
    model = fitted(cls, planted)
    cands = np.array([5, 9, 33, 70])
    fused = model.reciprocal_scores(2, cands, method="harmonic")
    p_uv = model.like_probability(np.full(4, 2), cands)
    p_vu = model.like_probability(cands, np.full(4, 2))
    np.testing.assert_allclose(fused, 2 * p_uv * p_vu / (p_uv + p_vu))
    # harmonic fusion is symmetric: u's score for v equals v's score for u
    for v in cands:
        np.testing.assert_allclose(model.reciprocal_scores(v, [2]), model.reciprocal_scores(2, [v]))
    assert np.all(model.reciprocal_scores(2, cands, method="product") <= fused + 1e-12)


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.name)
def test_like_probability_is_calibrated_direction(cls: type[Recommender], planted: Planted) -> None:
    """Calibrated on likes against passes: observed likes get a higher mean probability."""
    model = fitted(cls, planted)
    pos, neg = planted.train.positives().tocoo(), planted.train.negatives().tocoo()
    p_pos = model.like_probability(pos.row, pos.col)
    p_neg = model.like_probability(neg.row, neg.col)
    assert p_pos.mean() > p_neg.mean()
    assert 0.0 < p_neg.mean() < p_pos.mean() < 1.0


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.name)
def test_early_stopping_keeps_the_best_epoch(cls: type[Recommender], planted: Planted) -> None:
    scripted = iter([0.1, 0.5, 0.2, 0.3, 0.1, 0.9, 0.9])
    snapshots: list[np.ndarray] = []
    users, items = np.arange(planted.n), np.roll(np.arange(planted.n), 3)

    def validate(model: Recommender) -> float:
        snapshots.append(model._score_pairs(*map(__import__("torch").as_tensor, (users, items))).numpy().copy())
        return next(scripted)

    model = cls(replace(CONFIGS[cls], epochs=7, patience=3))
    history = model.fit(planted.train, validate=validate)
    assert len(history) == 5  # epochs 2, 3, 4 brought no gain over epoch 1
    assert model.best_epoch == 1
    np.testing.assert_allclose(model._score_pairs(*map(__import__("torch").as_tensor, (users, items))), snapshots[1])


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.name)
def test_unknown_config_fields_are_refused(cls: type[Recommender]) -> None:
    from recommender.ml.collab import config_from_dict

    with pytest.raises(ValueError, match="unknown"):
        config_from_dict(cls.config_class, {"seed": 1, "factorz": 3})
    with pytest.raises(TypeError):
        cls(RecommenderConfig() if cls.config_class is not RecommenderConfig else None)  # type: ignore[arg-type]


def test_reciprocal_needs_a_shared_id_map() -> None:
    from recommender.ml.collab import interactions_from_events

    data = interactions_from_events(["u1", "u1", "u2"], ["i1", "i2", "i1"], np.ones(3))
    model = Popularity()
    model.fit(data)
    with pytest.raises(ValueError, match="share one id map"):
        model.reciprocal_scores(0, [0, 1])


def test_als_pass_is_negative_evidence(planted: Planted) -> None:
    """With passes counted (raised confidence at preference 0), passed profiles score lower
    than when passes are treated as unseen."""
    neg = planted.train.negatives().tocoo()
    with_pass = fitted(ALS, planted, pass_confidence=4.0).score_pairs(neg.row, neg.col)
    without = fitted(ALS, planted, pass_confidence=0.0).score_pairs(neg.row, neg.col)
    assert with_pass.mean() < without.mean()


def test_als_cg_close_to_exact_solve(planted: Planted) -> None:
    exact = fitted(ALS, planted, solver="cholesky", epochs=6)
    cg = fitted(ALS, planted, solver="cg", cg_steps=8, epochs=6)
    users, items = np.arange(planted.n), np.roll(np.arange(planted.n), 5)
    np.testing.assert_allclose(cg.score_pairs(users, items), exact.score_pairs(users, items), atol=2e-2)


def test_bpr_samples_passes_as_hard_negatives(planted: Planted) -> None:
    model = BPR(replace(CONFIGS[BPR], hard_negative_share=1.0))
    model.fit(planted.train)
    users = np.repeat(np.arange(planted.n), 5)
    negatives = model._negatives(users, planted.n)
    passes = planted.train.negatives()
    has_pass = np.diff(passes.indptr)[users] > 0
    assert np.asarray(passes[users[has_pass], negatives[has_pass]]).all()
