"""Training that adapts to the data (``recommender.ml.collab.tuning``): the schedule and the search."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from collab_planted import Planted

from recommender.ml.collab import ALS, ALSConfig, BPRConfig, LMFConfig, LogisticMF, validation_like_auc
from recommender.ml.collab.tuning import MIN_STEPS, MIN_STEPS_PER_EPOCH, search, training_schedule


def test_schedule_gives_a_small_tenant_enough_optimiser_steps() -> None:
    """6,696 swipes with the default minibatch of 8,192 were one step an epoch; the schedule
    makes epochs of many steps and a budget of at least MIN_STEPS in all."""
    s = training_schedule(LMFConfig, 6_696, {})
    steps = math.ceil(6_696 / s["batch_size"])
    assert steps >= MIN_STEPS_PER_EPOCH
    assert steps * s["epochs"] >= MIN_STEPS
    assert s["patience"] >= max(LMFConfig().patience, s["epochs"] // 10)


def test_schedule_leaves_large_data_and_given_fields_alone() -> None:
    big = training_schedule(LMFConfig, 10_000_000, {})
    assert big["batch_size"] == LMFConfig().batch_size
    assert big["epochs"] == LMFConfig().epochs
    given = training_schedule(BPRConfig, 5_000, {"batch_size": 4096, "epochs": 7})
    assert "batch_size" not in given and "epochs" not in given
    assert training_schedule(ALSConfig, 5_000, {}) == {"patience": ALSConfig().patience}  # full-batch: epochs kept


def test_search_starts_from_the_default_and_never_ends_worse(planted: Planted) -> None:
    base = LMFConfig(seed=1, factors=4, epochs=8, batch_size=256, threads=1, bias_regularization=5.0)
    validate = validation_like_auc(planted.heldout)
    result = search(LogisticMF, base, planted.train, validate, max_trials=6)
    assert result.trials[0].params == {name: getattr(base, name) for name in LogisticMF.search_space}
    assert 1 < len(result.trials) <= 6
    best = max(t.validation for t in result.trials)
    assert best >= result.trials[0].validation
    assert validate(result.model) == best  # the best model is returned, its best epoch restored
    assert result.config.epochs == next(t.epochs for t in result.trials if t.validation == best)
    # the summary records every trial (what the version's metrics keep)
    summary = result.summary()
    assert summary["tried"] == len(result.trials) and summary["best"]["validation"] == best


def test_search_moves_one_field_at_a_time_and_respects_fixed_fields(planted: Planted) -> None:
    base = ALSConfig(seed=0, factors=8, epochs=4, threads=1)
    validate = validation_like_auc(planted.heldout)
    result = search(ALS, base, planted.train, validate, fixed={"factors", "alpha"}, max_trials=20)
    assert {t.params["regularization"] for t in result.trials} == set(ALS.search_space["regularization"])
    assert all(set(t.params) == {"regularization"} for t in result.trials)
    assert result.config.factors == 8 and result.config.alpha == base.alpha


def test_one_trial_is_the_default_alone(planted: Planted) -> None:
    base = LMFConfig(seed=1, factors=4, epochs=3, batch_size=256, threads=1)
    result = search(LogisticMF, base, planted.train, validation_like_auc(planted.heldout), max_trials=1)
    assert len(result.trials) == 1
    assert replace(result.config, epochs=base.epochs) == base


def test_search_is_deterministic(planted: Planted) -> None:
    base = LMFConfig(seed=2, factors=4, epochs=4, batch_size=256, threads=1)
    validate = validation_like_auc(planted.heldout)
    runs = [search(LogisticMF, base, planted.train, validate, max_trials=4) for _ in range(2)]
    assert [t.params for t in runs[0].trials] == [t.params for t in runs[1].trials]
    np.testing.assert_allclose([t.validation for t in runs[0].trials], [t.validation for t in runs[1].trials])
