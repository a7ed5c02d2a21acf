"""Model-specific tests of the feature-aware models: side features, cold start, the inductive
API, the logQ correction and bounded neighbour sampling (tiny models, a few seconds in all)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from collab_planted import Planted

from recommender.ml.collab import (
    ALS,
    ALSConfig,
    GraphSAGE,
    GraphSAGEConfig,
    IdMap,
    InductiveModel,
    Interactions,
    TwoTower,
    TwoTowerConfig,
    feature_names,
    interactions_from_events,
    load_recommender,
    profile_feature_matrix,
)
from recommender.ml.collab.graphsage import sample_neighbours
from recommender.ml.structured import ProfileFeatures

torch.set_num_threads(1)

TT = TwoTowerConfig(
    seed=5, dim=16, id_dim=8, hidden=32, epochs=15, batch_size=64, learning_rate=0.01, temperature=0.2, threads=1
)
GS = GraphSAGEConfig(
    seed=5, dim=16, id_dim=8, hidden=32, epochs=25, batch_size=32, learning_rate=0.005, temperature=0.3,
    fanout1=5, fanout2=3, threads=1,
)  # fmt: skip
ALS_SIDE = ALSConfig(seed=5, factors=8, epochs=8, alpha=5.0, regularization=0.1, side_weight=0.3, threads=1)
COLD = np.arange(0, 120, 10)  # 12 profiles (3 per group) with no training interactions at all


def group_features(data: Planted, noise: float = 0.3, seed: int = 0) -> np.ndarray:
    """[n, 8]: a noisy one-hot of the taste group plus 4 pure-noise columns."""
    rng = np.random.default_rng(seed)
    onehot = np.eye(4)[data.group] + noise * rng.standard_normal((data.n, 4))
    return np.hstack([onehot, rng.standard_normal((data.n, 4))]).astype(np.float32)


def without(data: Interactions, cold: np.ndarray) -> Interactions:
    """``data`` minus every interaction of the ``cold`` profiles (given or received)."""
    coo = data.matrix.tocoo()
    keep = ~np.isin(coo.row, cold) & ~np.isin(coo.col, cold)
    return interactions_from_events(coo.row[keep], coo.col[keep], coo.data[keep], user_map=data.users, shared=True)


@pytest.fixture(scope="module")
def cold_data(planted: Planted) -> tuple[Planted, Interactions, np.ndarray]:
    features = group_features(planted)
    return planted, without(planted.train, COLD).with_features(features), features


def own_group_share(model: InductiveModel, data: Planted, users: np.ndarray, exclude: object = None) -> float:
    recs, _ = model.recommend(users, 10, exclude=exclude)
    return float((data.group[recs] == data.group[users][:, None]).mean())


@pytest.mark.parametrize(
    "cls,cfg", [(TwoTower, TT), (GraphSAGE, GS), (ALS, ALS_SIDE)], ids=["two_tower", "graphsage", "als_side"]
)
def test_cold_profiles_are_recommended_and_served_from_features_alone(cls, cfg, cold_data) -> None:
    data, train, _ = cold_data
    model = cls(cfg)
    model.fit(train)
    assert (model.user_activity[COLD] == 0).all()
    # Cold users are not served popularity: their feed follows their (feature-given) taste.
    assert not model._needs_fallback(torch.as_tensor(COLD)).any()
    assert own_group_share(model, data, COLD) > 0.5  # 0.25 by chance with 4 groups
    # Cold candidates: ranked higher for users of their own group than for the others.
    warm = np.setdiff1d(np.arange(data.n), COLD)
    scores = model.score_pairs(np.repeat(warm, COLD.size), np.tile(COLD, warm.size)).reshape(warm.size, COLD.size)
    same = data.group[warm][:, None] == data.group[COLD][None, :]
    # Scale-free (raw scores are cosines for the towers, dot products for ALS): the share of
    # (same-group, other-group) score pairs ordered the right way, 0.5 by chance.
    auc = (scores[same][:, None] > scores[~same][None, :]).mean()
    assert auc > 0.75
    recs, _ = model.recommend(warm, 30, exclude=train.seen())
    assert np.isin(recs, COLD).any()  # cold candidates reach feeds without any history


@pytest.mark.parametrize("cls,cfg", [(TwoTower, TT), (GraphSAGE, GS)], ids=["two_tower", "graphsage"])
def test_without_features_cold_users_fall_back_to_popularity(cls, cfg, planted: Planted) -> None:
    model = cls(cfg)
    model.fit(without(planted.train, COLD))
    assert model._needs_fallback(torch.as_tensor(COLD)).all()
    with pytest.raises(ValueError, match="without side features"):
        (model.embed_new(np.zeros((1, 8), dtype=np.float32)))


def test_two_tower_embed_new_matches_the_stored_vectors_of_cold_rows(cold_data, tmp_path: Path) -> None:
    _data, train, features = cold_data
    model = TwoTower(TT)
    model.fit(train)
    taste, appeal = model.embed_new(features[COLD])
    np.testing.assert_allclose(taste, model.user_vectors(COLD), atol=1e-5)
    np.testing.assert_allclose(appeal, model.item_vectors(COLD), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(appeal, axis=1), 1.0, atol=1e-5)  # ready for a cosine index
    # A brand-new profile (not in the id map) scored against known candidates, both directions.
    loaded = load_recommender(model.save(tmp_path / "tt.pt"))
    new_taste, new_appeal = loaded.embed_new(features[[3]])
    warm = np.array([1, 2, 5, 7])
    p_uv = loaded.like_probability_vectors(np.repeat(new_taste, 4, axis=0), loaded.item_vectors(warm))
    p_vu = loaded.like_probability_vectors(loaded.user_vectors(warm), np.repeat(new_appeal, 4, axis=0))
    assert np.all((p_uv > 0) & (p_uv < 1)) and np.all((p_vu > 0) & (p_vu < 1))
    np.testing.assert_allclose(p_uv, model.like_probability(np.full(4, 3), warm) * 0 + p_uv)  # shape and finiteness
    # For a known row the vector API and the index API agree.
    np.testing.assert_allclose(
        loaded.like_probability_vectors(loaded.user_vectors([4]), loaded.item_vectors([9])),
        loaded.like_probability([4], [9]),
        rtol=1e-5,
    )


def test_graphsage_embed_new_reproduces_known_nodes_from_features_and_edges(cold_data) -> None:
    """Purely inductive (no id embeddings): a known node rebuilt from its features and its likes
    given and received through embed_new gets exactly its stored vectors."""
    _data, train, features = cold_data
    model = GraphSAGE(replace(GS, id_dim=0, epochs=4))
    model.fit(train)
    likes = train.positives()
    nodes = np.array([1, 2, 3, 4])
    taste, appeal = model.embed_new(
        features[nodes],
        likes=[likes[n].indices for n in nodes],
        liked_by=[likes[:, n].tocoo().row for n in nodes],
    )
    np.testing.assert_allclose(taste, model.user_vectors(nodes), atol=1e-5)
    np.testing.assert_allclose(appeal, model.item_vectors(nodes), atol=1e-5)


def test_graphsage_first_likes_move_a_new_profile_towards_its_taste(cold_data) -> None:
    """A new profile with uninformative features (the average profile): its first likes alone
    tell the model its taste, without retraining."""
    data, train, features = cold_data
    model = GraphSAGE(GS)
    model.fit(train)
    warm = np.setdiff1d(np.arange(data.n), COLD)
    cands = model.item_vectors(warm)  # [n_warm, d]
    neutral = features.mean(axis=0, keepdims=True)
    before, _ = model.embed_new(neutral)
    margins_before, margins_after = [], []
    for g in range(4):
        own = data.group[warm] == g
        after, _ = model.embed_new(neutral, likes=[warm[own][:6]])  # six likes in group g
        margins_before.append((cands[own] @ before[0]).mean() - (cands[~own] @ before[0]).mean())
        margins_after.append((cands[own] @ after[0]).mean() - (cands[~own] @ after[0]).mean())
    assert np.mean(margins_after) > np.mean(margins_before) + 0.05


def test_logq_correction_changes_popularity_bias(cold_data) -> None:
    """In-batch negatives over-penalise popular candidates; the logQ correction undoes it, so
    the corrected model recommends measurably more popular profiles."""
    data, train, _ = cold_data
    popularity = np.asarray(train.positives().sum(axis=0)).reshape(-1)
    users = np.setdiff1d(np.arange(data.n), COLD)

    def mean_log_pop(logq: bool) -> float:
        model = TwoTower(replace(TT, logq_correction=logq, hard_negatives=0))
        model.fit(train)
        recs, _ = model.recommend(users, 10, exclude=train.seen())
        return float(np.log1p(popularity[recs]).mean())

    with_correction, without_correction = mean_log_pop(True), mean_log_pop(False)
    assert with_correction > without_correction + 0.1


def test_neighbour_sampling_is_bounded_on_a_hub() -> None:
    rng = np.random.default_rng(0)
    n = 3000
    # One hub liked by everyone, plus a sparse random graph.
    users = np.concatenate([np.arange(1, n), rng.integers(0, n, 6000)])
    items = np.concatenate([np.zeros(n - 1, dtype=np.int64), rng.integers(0, n, 6000)])
    keep = users != items
    data = interactions_from_events(
        users[keep], items[keep], np.ones(int(keep.sum()), dtype=np.float32), user_map=IdMap(np.arange(n)), shared=True
    )
    inbound = data.positives().T.tocsr()
    neigh, valid = sample_neighbours(
        inbound.indptr.astype(np.int64), inbound.indices.astype(np.int64), np.array([0, 5]), 7, rng
    )
    assert neigh.shape == valid.shape == (2, 7)  # the hub's 2,999 likers cost 7 slots
    assert np.isin(neigh[0], inbound[0].indices).all()
    cfg = GraphSAGEConfig(seed=0, dim=8, id_dim=8, hidden=8, epochs=1, batch_size=64, fanout1=4, fanout2=3, threads=1)
    model = GraphSAGE(cfg)
    sizes: list[int] = []
    original = GraphSAGE._h0

    def counting(self: GraphSAGE, nodes: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        if torch.is_grad_enabled():  # the sampled training forward, not the full-graph refresh
            sizes.append(int(nodes.numel()))
        return original(self, nodes, keep)

    GraphSAGE._h0 = counting  # type: ignore[method-assign]
    try:
        model.fit(data)
    finally:
        GraphSAGE._h0 = original  # type: ignore[method-assign]
    bound = cfg.batch_size * (1 + cfg.hard_negatives) * (1 + cfg.fanout1 + cfg.fanout1 * cfg.fanout2)
    assert sizes and max(sizes) <= bound < n * 4
    assert max(sizes) < data.nnz  # never the whole graph


def test_profile_feature_matrix_layout() -> None:
    a = ProfileFeatures(
        age=30, gender="woman", seeking=("man",), age_min=25, age_max=40, max_distance_km=20, lat=37.7, lon=-122.4,
        interests=frozenset({"hiking", "jazz"}), attributes={"drinks": "socially", "ethnicity": "asian", "height": 170},
    )  # fmt: skip
    b = replace(a, attributes={"drinks": "socially", "ethnicity": "white", "height": 170})
    bio = np.zeros((2, 384), dtype=np.float32)
    bio[0, 0] = 1.0
    x = profile_feature_matrix([a, b], bio)
    names = feature_names()
    assert x.shape == (2, len(names)) and x.dtype == np.float32 and np.isfinite(x).all()
    assert x[0, names.index("gender_woman")] == 1 and x[0, names.index("seeking_man")] == 1
    assert x[0, names.index("has_bio")] == 1 and x[1, names.index("has_bio")] == 0
    assert not any(n.startswith("ethnicity") for n in names)
    np.testing.assert_array_equal(x[0, :-385], x[1, :-385])  # ethnicity changes nothing
    with pytest.raises(ValueError, match="bio has shape"):
        profile_feature_matrix([a], bio)


def test_features_must_line_up_with_the_matrix(planted: Planted) -> None:
    with pytest.raises(ValueError, match="one row per user"):
        planted.train.with_features(np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="finite"):
        planted.train.with_features(np.full((planted.n, 2), np.nan, dtype=np.float32))
    assert planted.train.user_features is None  # with_features returns a copy


# --- ALS with side features (collective MF) -------------------------------------------------------


def test_als_side_features_lift_cold_users_over_plain_als(cold_data) -> None:
    data, train, _ = cold_data
    plain = ALS(replace(ALS_SIDE, side_weight=0.0))
    plain.fit(train)
    side = ALS(ALS_SIDE)
    side.fit(train)
    assert plain._needs_fallback(torch.as_tensor(COLD)).all() and not plain.has_features
    assert side.knows_users(COLD).all() and not plain.knows_users(COLD).any()
    # Plain ALS serves a cold user the popular profiles (any group); the features place them.
    assert own_group_share(side, data, COLD) > own_group_share(plain, data, COLD) + 0.2


def test_als_without_features_or_with_zero_weight_is_plain_als(cold_data, planted: Planted) -> None:
    _, train, _ = cold_data
    zero = ALS(replace(ALS_SIDE, side_weight=0.0))
    zero.fit(train)
    bare = ALS(ALS_SIDE)
    bare.fit(without(planted.train, COLD))  # same matrix, no features attached
    assert not bare.has_features
    np.testing.assert_allclose(zero.taste.numpy(), bare.taste.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(zero.appeal.numpy(), bare.appeal.numpy(), rtol=1e-5, atol=1e-6)


def test_als_side_features_survive_a_checkpoint(cold_data, tmp_path: Path) -> None:
    _, train, _ = cold_data
    model = ALS(ALS_SIDE)
    model.fit(train)
    loaded = load_recommender(model.save(tmp_path / "als.pt"))
    assert isinstance(loaded, ALS) and loaded.has_features
    users, items = np.repeat(COLD, 5), np.tile(np.arange(5), COLD.size)
    np.testing.assert_allclose(loaded.score_pairs(users, items), model.score_pairs(users, items), rtol=1e-6)
    assert loaded.knows_users(COLD).all()
    np.testing.assert_array_equal(loaded.taste_loadings.numpy(), model.taste_loadings.numpy())


def test_als_side_weight_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="side_weight"):
        ALSConfig(side_weight=-0.1)
