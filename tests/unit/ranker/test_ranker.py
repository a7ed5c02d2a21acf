"""The LightGBM LambdaMART ranker: features, training on query groups, files and the ONNX export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recommender.ml.ranker import (
    HOMOPHILY_ATTRIBUTES,
    RANKER_FEATURES,
    OnnxRanker,
    Ranker,
    RankerConfig,
    RankerError,
    feature_matrix,
    group_sizes,
    pair_features,
)
from recommender.ml.structured import CandidateBatch, ProfileFeatures

F = len(RANKER_FEATURES)


def synthetic(n_groups: int, size: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Groups whose labels follow two features (one with missing values) and noise."""
    rng = np.random.default_rng(seed)
    n = n_groups * size
    x = rng.standard_normal((n, F)).astype(np.float32)
    x[rng.random(n) < 0.2, RANKER_FEATURES.index("p_uv_als")] = np.nan
    signal = np.nan_to_num(x[:, RANKER_FEATURES.index("p_uv_als")]) + 0.7 * x[:, RANKER_FEATURES.index("liked_you")]
    y = np.digitize(signal + 0.5 * rng.standard_normal(n), [0.8, 1.8]).astype(np.int32)
    return x, y, np.full(n_groups, size)


def ndcg(scores: np.ndarray, y: np.ndarray, groups: np.ndarray, k: int = 10) -> float:
    out, start = [], 0
    for g in groups:
        s, rel = scores[start : start + g], y[start : start + g]
        start += g
        gains = (2.0 ** rel[np.argsort(-s)][:k] - 1) / np.log2(np.arange(2, min(k, g) + 2))
        ideal = (2.0 ** np.sort(rel)[::-1][:k] - 1) / np.log2(np.arange(2, min(k, g) + 2))
        if ideal.sum() > 0:
            out.append(gains.sum() / ideal.sum())
    return float(np.mean(out))


@pytest.fixture(scope="module")
def trained() -> tuple[Ranker, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    train, val, test = synthetic(150, seed=0), synthetic(40, seed=1), synthetic(60, seed=2)
    ranker = Ranker(RankerConfig(n_estimators=60, num_leaves=15, min_data_in_leaf=10, seed=1)).fit(
        *train, validation=val
    )
    return ranker, test


def test_ranker_learns_the_planted_signal(trained) -> None:
    ranker, (x, y, groups) = trained
    learnt = ndcg(ranker.predict(x), y, groups)
    random = ndcg(np.random.default_rng(0).random(y.size), y, groups)
    assert learnt > random + 0.2
    importance = ranker.feature_importance()
    assert max(importance, key=importance.get) in ("p_uv_als", "liked_you")
    assert 0 < ranker.metrics["best_iteration"] <= 60 and "val_ndcg@10" in ranker.metrics


def test_onnx_scores_match_lightgbm(trained, tmp_path: Path) -> None:
    ranker, (x, _, _) = trained
    x = x.copy()
    x[::7, RANKER_FEATURES.index("bio_similarity")] = np.nan  # missing values take the same branch
    ranker.save(tmp_path)
    ranker.export_onnx(tmp_path / "ranker.onnx")
    onnx = OnnxRanker.load(tmp_path)
    want, got = ranker.predict(x), onnx.predict(x)
    assert got.shape == want.shape == (x.shape[0],)
    assert np.max(np.abs(got - want)) < 1e-4
    assert np.std(want) > 0.1  # not a constant model matching trivially


def test_save_load_round_trip_without_pickle(trained, tmp_path: Path) -> None:
    ranker, (x, _, _) = trained
    ranker.save(tmp_path)
    meta = json.loads((tmp_path / "ranker.json").read_text())
    assert meta["features"] == list(RANKER_FEATURES) and meta["config"]["seed"] == 1
    assert (tmp_path / "ranker.txt").read_text().startswith("tree")
    np.testing.assert_allclose(Ranker.load(tmp_path).predict(x), ranker.predict(x))
    (tmp_path / "ranker.json").write_text("{}")
    with pytest.raises(RankerError, match="not a"):
        Ranker.load(tmp_path)


def test_deterministic_with_the_seed() -> None:
    data = synthetic(60, seed=3)
    a = Ranker(RankerConfig(n_estimators=20, seed=4)).fit(*data).predict(data[0])
    b = Ranker(RankerConfig(n_estimators=20, seed=4)).fit(*data).predict(data[0])
    np.testing.assert_array_equal(a, b)


def test_feature_matrix_orders_columns_and_marks_missing() -> None:
    x = feature_matrix({"liked_you": np.array([1, 0, 1]), "elo_user": 1500.0}, 3)
    assert x.shape == (3, F) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, RANKER_FEATURES.index("liked_you")], [1, 0, 1])
    assert (x[:, RANKER_FEATURES.index("elo_user")] == 1500).all()
    assert np.isnan(x[:, RANKER_FEATURES.index("p_uv_als")]).all()
    with pytest.raises(RankerError, match="unknown"):
        feature_matrix({"liked_yuo": np.zeros(3)}, 3)
    with pytest.raises(RankerError, match="shape"):
        feature_matrix({"liked_you": np.zeros(4)}, 3)


def test_group_sizes_need_contiguous_groups() -> None:
    np.testing.assert_array_equal(group_sizes(np.array([5, 5, 2, 2, 2, 9])), [2, 3, 1])
    with pytest.raises(RankerError, match="contiguous"):
        group_sizes(np.array([1, 2, 1]))


def test_pair_features_are_the_structured_and_demographic_columns() -> None:
    user = ProfileFeatures(age=30, gender="man", seeking=("woman",), age_min=25, age_max=35, max_distance_km=50,
                           lat=37.77, lon=-122.42)  # fmt: skip
    a = ProfileFeatures(age=28, gender="woman", seeking=("man",), age_min=27, age_max=40, max_distance_km=30,
                        lat=37.80, lon=-122.27)  # fmt: skip
    b = ProfileFeatures(age=33, gender="woman", seeking=("woman",), age_min=30, age_max=36, max_distance_km=30,
                        lat=37.77, lon=-122.42)  # fmt: skip
    cols = pair_features(user, CandidateBatch.from_features([a, b]))
    np.testing.assert_array_equal(cols["gender_match"], [1, 0])
    np.testing.assert_array_equal(cols["age_gap"], [-2, 3])
    np.testing.assert_array_equal(cols["age_band_margin"], [3, 0])  # a: 28 - 25 (and 30 - 27); b: 30 - 30
    assert cols["distance_km"][0] > 10 and cols["distance_km"][1] < 0.1
    x = feature_matrix(cols, 2)
    assert np.isfinite(x[:, RANKER_FEATURES.index("structured")]).all()


def test_pair_features_compare_lifestyle_attributes_one_by_one() -> None:
    base = {"age": 30, "age_min": 25, "age_max": 40, "max_distance_km": 50.0, "lat": 37.77, "lon": -122.42}
    mine = {"smokes": "no", "religion": "atheism", "ethnicity": "asian", "drinks": "socially"}
    theirs = {"smokes": "no", "religion": "christianity", "ethnicity": "asian", "drinks": "rarely"}
    user = ProfileFeatures(gender="man", seeking=("woman",), **base, attributes=mine)
    a = ProfileFeatures(gender="woman", seeking=("man",), **base, attributes=theirs)
    b = ProfileFeatures(gender="woman", seeking=("man",), **base, attributes={"smokes": "yes"})
    cols = pair_features(user, CandidateBatch.from_features([a, b]))
    np.testing.assert_array_equal(cols["same_smokes"], [1, 0])
    np.testing.assert_array_equal(cols["same_religion"][:1], [0])
    np.testing.assert_array_equal(cols["same_drinks"][:1], [1])  # "rarely" is one step from "socially"
    assert np.isnan(cols["same_religion"][1]) and np.isnan(cols["same_pets"]).all()  # blank: unknown, not a mismatch
    assert "same_ethnicity" not in cols and "same_ethnicity" not in RANKER_FEATURES  # no racial filtering
    assert "same_height" not in RANKER_FEATURES
    assert {f"same_{a}" for a in HOMOPHILY_ATTRIBUTES} <= set(RANKER_FEATURES)
