"""The ceilings of ``bench.online_eval``: the simulator's true and observable match probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from bench.online_eval import SimulatorOracle
from recommender.simulation import SimConfig, SwipeSimulator, build_population, load_sample


@pytest.fixture(scope="module")
def simulator() -> SwipeSimulator:
    return SwipeSimulator(build_population(load_sample()[:300], seed=3), seed=3)


def _eligible(sim: SwipeSimulator, u: int) -> np.ndarray:
    return sim.eligible_candidates(u)[:40]


def test_true_probabilities_are_the_simulators_and_the_match_is_their_product(simulator: SwipeSimulator) -> None:
    oracle = SimulatorOracle(simulator)
    u = 5
    vs = _eligible(simulator, u)
    assert np.array_equal(oracle.like_probabilities(u, vs, observable=False), simulator.like_probabilities(u, vs))
    back = np.array([simulator.like_probability(int(v), u) for v in vs])
    assert np.allclose(oracle.match_probabilities(u, vs, observable=False), simulator.like_probabilities(u, vs) * back)


def test_observable_is_the_true_probability_averaged_over_the_pair_chemistry(simulator: SwipeSimulator) -> None:
    oracle = SimulatorOracle(simulator)
    u = 11
    vs = _eligible(simulator, u)
    # Another hash key redraws every pair's chemistry (and dice) but no per-profile trait: the
    # intercepts, attractiveness, weights and tastes are drawn from their own seeded streams.
    key = simulator._key
    draws = []
    try:
        for k in range(400):
            simulator._key = key ^ (k * 0x9E3779B97F4A7C15 & (1 << 64) - 1)
            draws.append(simulator.like_probabilities(u, vs))
    finally:
        simulator._key = key
    expected = np.mean(draws, axis=0)
    observable = oracle.like_probabilities(u, vs, observable=True)
    assert np.abs(observable - expected).max() < 0.03
    # and it does not depend on the pair's own draw: the same for any key
    simulator._key = key ^ 12345
    try:
        assert np.allclose(oracle.like_probabilities(u, vs, observable=True), observable)
    finally:
        simulator._key = key


def test_without_chemistry_observable_equals_true() -> None:
    sim = SwipeSimulator(build_population(load_sample()[:200], seed=4), seed=4, config=SimConfig(pair_noise_sd=0.0))
    oracle = SimulatorOracle(sim)
    u = 3
    vs = _eligible(sim, u)
    assert np.allclose(oracle.match_probabilities(u, vs, True), oracle.match_probabilities(u, vs, False), atol=1e-9)
