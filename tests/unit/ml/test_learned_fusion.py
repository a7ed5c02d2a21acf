"""The learned per-tenant fusion (``recommender.ml.learned_fusion``) and its use in the feed's scoring."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from recommender.feed.scoring import PairSignals, SignalWeights, score_pairs
from recommender.ml.learned_fusion import FEATURES, LearnedFusion, PairInputs, design_matrix, fit_learned_fusion
from recommender.ml.structured import CandidateBatch, ProfileFeatures


def inputs(rng: np.random.Generator, n: int, collab: np.ndarray) -> PairInputs:
    return PairInputs(
        collab_logit=collab,
        swiper_like_rate=rng.uniform(0.05, 0.9, n),
        candidate_elo=rng.normal(1500, 100, n),
        similarity=np.where(rng.random(n) < 0.2, np.nan, rng.uniform(-1, 1, n)),
        age_fit=np.where(rng.random(n) < 0.5, np.nan, rng.uniform(0, 1, n)),
        distance=rng.uniform(0, 1, n),
        interests=rng.uniform(0, 1, n),
        lifestyle=rng.uniform(0, 1, n),
        swiper_age=rng.integers(20, 50, n).astype(float),
        candidate_age=rng.integers(20, 50, n).astype(float),
    )


def auc(s: np.ndarray, y: np.ndarray) -> float:
    ranks = s.argsort().argsort() + 1.0
    pos = y.sum()
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * (~y).sum()))


def test_design_matrix_flags_missing_values() -> None:
    x = design_matrix(inputs(np.random.default_rng(0), 50, np.full(50, np.nan)))
    assert x.shape == (50, len(FEATURES)) and np.isfinite(x).all()
    col = {name: x[:, i] for i, name in enumerate(FEATURES)}
    assert (col["collab_missing"] == 1).all() and (col["collab_logit"] == 0).all()
    assert set(np.unique(col["age_fit_missing"])) == {0.0, 1.0}


def test_learns_a_signal_the_model_lacks_and_recalibrates_the_model() -> None:
    """The model's log-odds are over-confident (3x the truth) and blind to bio similarity, which
    matters: the fusion recalibrates the one and picks up the other."""
    rng = np.random.default_rng(1)
    n = 4000
    truth = rng.normal(0, 1, n)
    data = inputs(rng, n, 3.0 * truth)
    sim = np.nan_to_num(data.similarity)
    y = rng.random(n) < 1 / (1 + np.exp(-(truth + 1.5 * sim)))
    x = design_matrix(data)
    model = fit_learned_fusion(x[:3000], y[:3000])
    assert model is not None
    assert model.weights()["similarity"] > 0.5
    assert -0.85 < model.weights()["collab_logit"] < -0.4  # the slope on the model's log-odds ~1/3
    assert auc(model.logit(x[3000:]), y[3000:]) > auc(data.collab_logit[3000:], y[3000:]) + 0.03
    assert model.info["cv_log_loss"] < model.info["cv_log_loss_model_alone"]


def test_noise_signals_get_no_weight() -> None:
    """When only the model carries information, the corrections shrink to ~0 and the fused
    ranking is the model's."""
    rng = np.random.default_rng(2)
    n = 600
    truth = rng.normal(0, 1.5, n)
    data = inputs(rng, n, truth)
    y = rng.random(n) < 1 / (1 + np.exp(-truth))
    model = fit_learned_fusion(design_matrix(data), y)
    assert model is not None
    others = [abs(w) for name, w in model.weights().items() if name not in ("collab_logit", "collab_missing")]
    assert max(others) < 0.1
    fused = model.logit(design_matrix(data))
    assert np.corrcoef(fused, truth)[0, 1] > 0.99


def test_too_little_data_fits_nothing_and_round_trips() -> None:
    rng = np.random.default_rng(3)
    data = inputs(rng, 30, rng.normal(0, 1, 30))
    assert fit_learned_fusion(design_matrix(data), rng.random(30) < 0.5) is None
    assert fit_learned_fusion(design_matrix(data), np.ones(30, dtype=bool)) is None
    big = inputs(rng, 300, rng.normal(0, 1, 300))
    model = fit_learned_fusion(design_matrix(big), rng.random(300) < 0.4)
    assert model is not None
    again = LearnedFusion.from_dict(json.loads(json.dumps(model.to_dict())))
    np.testing.assert_allclose(again.logit(design_matrix(big)), model.logit(design_matrix(big)))
    with pytest.raises(ValueError):
        LearnedFusion.from_dict({**model.to_dict(), "features": ["x"]})


def profile(age: int, gender: str, seeking: str) -> ProfileFeatures:
    return ProfileFeatures(
        age=age, gender=gender, seeking=(seeking,), age_min=18, age_max=120, max_distance_km=50.0, lat=48.85, lon=2.35
    )


def test_scoring_uses_the_fusion_for_both_directions() -> None:
    """With a learned fusion, P(v likes u) is the same function of the reversed pair: v's like
    rate and the model's v->u log-odds, u's Elo."""
    user = profile(30, "woman", "man")
    cands = CandidateBatch.from_features([profile(31, "man", "woman"), profile(32, "man", "woman")])
    coef = np.zeros(len(FEATURES))
    coef[FEATURES.index("swiper_like_logit")] = 1.0
    model = LearnedFusion(mean=np.zeros(len(FEATURES)), scale=np.ones(len(FEATURES)), coef=coef, intercept=0.0, l2=1.0)
    signals = PairSignals(
        similarity=np.full(2, np.nan),
        interaction=np.full(2, np.nan),
        elo_candidate=np.array([1500.0, 1500.0]),
        elo_user=1500.0,
        liked_user=np.zeros(2, dtype=bool),
        collab_uv=np.array([0.0, 0.0]),
        collab_vu=np.array([2.0, -2.0]),
        like_rate_user=0.5,
        like_rate_candidate=np.array([0.5, 0.5]),
    )
    weights = SignalWeights(similarity=0.35, structured=0.35, elo=0.15, interaction=0.15, collaborative=2.0)
    scored = score_pairs(user, cands, signals, weights, "harmonic", learned=model)
    np.testing.assert_allclose(scored.score_uv, [0.5, 0.5])  # offset 0 + logit(0.5) = 0
    np.testing.assert_allclose(scored.score_vu, 1 / (1 + np.exp(-np.array([2.0, -2.0]))))
    pickier = replace(signals, like_rate_candidate=np.array([0.5, 0.1]), collab_vu=np.array([0.0, 0.0]))
    scored = score_pairs(user, cands, pickier, weights, "harmonic", learned=model)
    assert scored.score_vu[0] == pytest.approx(0.5) and scored.score_vu[1] == pytest.approx(0.1)
    prior = score_pairs(user, cands, signals, weights, "harmonic")  # without it, the hand weights
    assert not np.allclose(prior.score_vu, scored.score_vu)
