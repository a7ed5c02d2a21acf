"""The logistic model of P(like | shown) (``lmf``): what the reciprocal feed takes from it."""

from __future__ import annotations

import numpy as np
import torch
from collab_planted import Planted

from recommender.ml.collab import IdMap, LMFConfig, LogisticMF, interactions_from_events, validation_like_auc

FAST = LMFConfig(seed=3, factors=8, epochs=30, batch_size=256, learning_rate=0.05, threads=1)


def selective_swipes(seed: int = 0, n: int = 80) -> tuple[object, np.ndarray, np.ndarray]:
    """Everyone swipes on 40 random others; profile i likes with its own rate ``rate[i]`` times
    the candidate's appeal: a known selectivity and appeal per profile."""
    rng = np.random.default_rng(seed)
    rate = rng.uniform(0.05, 0.9, size=n)
    appeal = rng.uniform(0.3, 1.0, size=n)
    users, items, weights = [], [], []
    for u in range(n):
        cands = rng.choice(np.delete(np.arange(n), u), size=40, replace=False)
        liked = rng.random(40) < rate[u] * appeal[cands]
        users += [u] * 40
        items += cands.tolist()
        weights += np.where(liked, 1.0, -0.5).tolist()
    data = interactions_from_events(np.asarray(users), np.asarray(items), np.asarray(weights),
                                    user_map=IdMap(np.arange(n)), shared=True)  # fmt: skip
    return data, rate, appeal


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = a.argsort().argsort(), b.argsort().argsort()
    return float(np.corrcoef(ra, rb)[0, 1])


def test_biases_recover_selectivity_and_appeal() -> None:
    data, rate, appeal = selective_swipes()
    model = LogisticMF(FAST)
    model.fit(data)  # type: ignore[arg-type]
    assert _spearman(model.user_bias.numpy(), rate) > 0.8  # who likes easily
    assert _spearman(model.bias.numpy(), appeal) > 0.5  # who gets liked


def test_pair_logits_give_both_directions_and_cold_profiles() -> None:
    data, rate, _ = selective_swipes()
    model = LogisticMF(FAST)
    model.fit(data)  # type: ignore[arg-type]
    easy, picky = int(rate.argmax()), int(rate.argmin())
    target = np.array([0, 0])
    # P(v likes u) for two candidates v: the easy-going one is far likelier to like back
    p_back = model.pair_logits(np.array([easy, picky]), target)
    assert p_back[0] > p_back[1] + 1.0
    # an unseen profile (-1) has average selectivity and appeal: finite, between the extremes
    cold = model.pair_logits(np.array([-1]), np.array([0]))[0]
    assert p_back[1] < cold < p_back[0]
    assert np.isfinite(model.pair_logits(np.array([easy]), np.array([-1]))).all()


def test_like_auc_validation_drives_early_stopping(planted: Planted) -> None:
    validate = validation_like_auc(planted.heldout)
    model = LogisticMF(FAST)
    model.fit(planted.train, validate=validate)
    best = max(r.validation or 0.0 for r in model.history)
    assert validate(model) == best > 0.6  # the best epoch's weights are the ones kept
    # a model scoring at random sits at chance on the same validation
    noise = LogisticMF(FAST)
    noise.fit(planted.train)
    noise.user_bias.zero_()
    noise.bias.zero_()
    noise.taste.copy_(torch.randn(noise.taste.shape, generator=torch.Generator().manual_seed(0)))
    assert abs(validate(noise) - 0.5) < 0.1
