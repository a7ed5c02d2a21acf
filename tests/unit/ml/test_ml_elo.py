"""Tests for recommender.ml.elo."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.ml.elo import EloConfig, elo_to_unit, elo_update, expected_score, rebuild_ratings

CFG = EloConfig()


def test_like_raises_pass_lowers() -> None:
    assert elo_update(1500, 1500, "like", CFG) == pytest.approx(1516.0)
    assert elo_update(1500, 1500, "pass", CFG) == pytest.approx(1484.0)


def test_like_from_high_rated_judge_counts_more() -> None:
    gain_high = elo_update(1500, 1800, "like", CFG) - 1500
    gain_low = elo_update(1500, 1200, "like", CFG) - 1500
    assert gain_high > gain_low > 0


def test_pass_from_high_rated_judge_costs_less() -> None:
    loss_high = 1500 - elo_update(1500, 1800, "pass", CFG)
    loss_low = 1500 - elo_update(1500, 1200, "pass", CFG)
    assert 0 < loss_high < loss_low


def test_superlike_counts_more_than_like() -> None:
    like = elo_update(1500, 1600, "like", CFG) - 1500
    superlike = elo_update(1500, 1600, "superlike", CFG) - 1500
    assert superlike == pytest.approx(1.5 * like)


def test_expected_score() -> None:
    assert expected_score(1500, 1500) == pytest.approx(0.5)
    assert expected_score(1900, 1500) == pytest.approx(10 / 11)


def test_unknown_action() -> None:
    with pytest.raises(ValueError, match="superlike"):
        elo_update(1500, 1500, "wink", CFG)


def test_rebuild_equals_incremental_replay_and_only_candidate_moves() -> None:
    swipes = [("a", "b", "like"), ("c", "b", "pass"), ("b", "a", "superlike"), ("a", "c", "like")]
    ratings = rebuild_ratings(swipes, CFG)
    manual = {"a": 1500.0, "b": 1500.0, "c": 1500.0}
    for u, v, action in swipes:
        manual[v] = elo_update(manual[v], manual[u], action, CFG)
    assert ratings == pytest.approx(manual)
    # only being swiped on moves a rating: "a" swiped twice, was swiped on once
    only_swipes = rebuild_ratings([("x", "y", "like"), ("x", "z", "pass")], CFG)
    assert only_swipes["x"] == CFG.initial


def test_rebuild_with_initial_ratings() -> None:
    ratings = rebuild_ratings([("judge", "v", "like")], CFG, initial={"judge": 1800.0, "other": 1234.0})
    assert ratings["v"] == pytest.approx(elo_update(1500, 1800, "like", CFG))
    assert ratings["other"] == 1234.0


def test_order_matters() -> None:
    # "b" is judged by "a"; a swipe on "a" before or after changes a's rating at that time
    first = rebuild_ratings([("c", "a", "like"), ("a", "b", "like")], CFG)
    second = rebuild_ratings([("a", "b", "like"), ("c", "a", "like")], CFG)
    assert first["a"] == pytest.approx(second["a"])
    assert first["b"] > second["b"]  # liked by a higher-rated judge


def test_elo_to_unit() -> None:
    unit = elo_to_unit(np.array([1100.0, 1500.0, 1900.0]), CFG)
    np.testing.assert_allclose(unit, [1 / 11, 0.5, 10 / 11])
    assert np.all(np.diff(elo_to_unit(np.linspace(0, 3000, 50))) > 0)
    assert np.all((unit > 0) & (unit < 1))
