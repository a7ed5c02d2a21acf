"""SwipeSimulator: determinism, consistency, the naive-feed history and the model's effects."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from recommender.simulation import SimConfig, SimProfile, SwipeSimulator, mutual_likes
from recommender.simulation.simulator import GENDER_CODES

START = datetime(2024, 3, 1, tzinfo=UTC)
# The session-scoped ``history`` fixture (conftest.py) is a TimedHistory: batches, seconds, seed,
# swipes, start, days. Typed loosely here so this module does not import conftest.
TimedHistory = Any


def _like_rates_by_gender(history: TimedHistory, population: list[SimProfile]) -> dict[str, float]:
    shown: Counter[str] = Counter()
    liked: Counter[str] = Counter()
    for batch in history.batches:
        gender = population[batch.user].gender
        shown[gender] += len(batch.actions)
        liked[gender] += sum(a != "pass" for a in batch.actions)
    return {g: liked[g] / shown[g] for g in shown}


def test_same_seed_same_history(population: list[SimProfile]) -> None:
    def run(seed: int) -> list:
        sim = SwipeSimulator(population, seed=seed)
        return list(sim.simulate_history(3_000, START, 7))

    first, second = run(11), run(11)
    assert first == second
    assert run(12) != first


def test_would_like_agrees_with_decide_and_respond(simulator: SwipeSimulator) -> None:
    rng = np.random.default_rng(0)
    for u in rng.integers(0, simulator.n, 20).tolist():
        vs = rng.integers(0, simulator.n, 50).tolist()
        actions = simulator.respond(u, vs)
        assert actions == simulator.respond(u, vs)  # asking twice gives the same answer
        for v, action in zip(vs, actions, strict=True):
            assert simulator.decide(u, v) == action
            assert simulator.would_like(u, v) == (action != "pass")


def test_decisions_follow_the_probabilities(simulator: SwipeSimulator) -> None:
    """The hidden per-pair uniforms make the like frequency match the stated probabilities."""
    expected, observed = 0.0, 0
    for u in range(0, simulator.n, 10):
        vs = simulator.eligible_candidates(u)
        expected += float(simulator.like_probabilities(u, vs).sum())
        observed += sum(a != "pass" for a in simulator.respond(u, vs))
    assert observed == pytest.approx(expected, rel=0.03)
    assert simulator.like_probability(3, 5) == pytest.approx(float(simulator.like_probabilities(3, [5])[0]))
    assert simulator.like_probability(3, 3) == 0.0


def test_history_shape_and_exposure_rules(history: TimedHistory, simulator: SwipeSimulator) -> None:
    batches = history.batches
    assert sum(len(b.candidates) for b in batches) == history.swipes
    seen: set[tuple[int, int]] = set()
    event_ids: set[str] = set()
    previous = history.start - timedelta(seconds=1)
    for b in batches:
        n = len(b.candidates)
        assert n > 0 and len(b.actions) == len(b.durations) == len(b.event_ids) == n
        assert b.positions == list(range(n))
        assert b.user not in b.candidates
        assert b.timestamp.tzinfo is not None and b.timestamp.utcoffset() == timedelta(0)
        assert previous < b.timestamp < history.start + timedelta(days=history.days)
        previous = b.timestamp
        for v in b.candidates:
            assert (b.user, v) not in seen  # never the same candidate twice to the same user
            seen.add((b.user, v))
        event_ids.update(b.event_ids)
        eligible = set(simulator.eligible_candidates(b.user).tolist())
        assert set(b.candidates) <= eligible
    assert len(event_ids) == history.swipes
    assert len({b.session_id for b in batches}) == len(batches)


def test_history_matches_the_simulator(history: TimedHistory, simulator: SwipeSimulator) -> None:
    for b in history.batches[:200]:
        assert simulator.respond(b.user, b.candidates) == b.actions
        assert simulator.durations_ms(b.user, b.candidates, b.actions) == b.durations


def test_simulated_history_has_the_requested_size(history: TimedHistory) -> None:
    assert sum(len(b.candidates) for b in history.batches) == 100_000


def test_gender_compatibility_is_respected(simulator: SwipeSimulator) -> None:
    rng = np.random.default_rng(1)
    probabilities = []
    for u in rng.integers(0, simulator.n, 200).tolist():
        vs = np.arange(simulator.n)
        incompatible = vs[~simulator.seeks[u, simulator.gender[vs]]]
        probabilities.append(simulator.like_probabilities(u, incompatible))
        liked = sum(a != "pass" for a in simulator.respond(u, incompatible))
        assert liked <= 0.01 * len(incompatible) + 2
    assert np.concatenate(probabilities).max() <= SimConfig().incompatible_like_rate


def test_women_like_less_than_men(history: TimedHistory, population: list[SimProfile]) -> None:
    rates = _like_rates_by_gender(history, population)
    assert 0.40 <= rates["man"] <= 0.65
    assert 0.05 <= rates["woman"] <= 0.18
    assert rates["woman"] < rates["man"] / 2.5


def test_likes_concentrate_on_attractive_profiles(history: TimedHistory) -> None:
    received: Counter[int] = Counter()
    for b in history.batches:
        received.update(v for v, a in zip(b.candidates, b.actions, strict=True) if a != "pass")
    counts = np.sort(np.array(list(received.values())))[::-1]
    top_decile = counts[: len(received) // 10].sum() / counts.sum()
    assert top_decile > 0.35


def test_activity_is_heavy_tailed(history: TimedHistory) -> None:
    swipes = Counter[int]()
    for b in history.batches:
        swipes[b.user] += len(b.candidates)
    counts = np.sort(np.array(list(swipes.values())))[::-1]
    assert counts[: len(counts) // 10].sum() / counts.sum() > 0.3


def test_probability_falls_off_outside_the_age_band(simulator: SwipeSimulator) -> None:
    inside, far_outside = [], []
    vs = np.arange(simulator.n)
    for u in range(0, simulator.n, 5):
        compatible = simulator.seeks[u, simulator.gender[vs]] & (vs != u)
        p = simulator.like_probabilities(u, vs)
        age = simulator.age
        in_band = compatible & (age >= simulator.age_min[u]) & (age <= simulator.age_max[u])
        out = compatible & ((age < simulator.age_min[u] - 5) | (age > simulator.age_max[u] + 5))
        inside.append(p[in_band])
        far_outside.append(p[out])
    assert np.concatenate(far_outside).mean() < 0.4 * np.concatenate(inside).mean()


def test_superlikes_are_rare_strong_likes(history: TimedHistory, simulator: SwipeSimulator) -> None:
    actions = Counter(a for b in history.batches for a in b.actions)
    share = actions["superlike"] / (actions["like"] + actions["superlike"])
    assert 0.005 < share < 0.10
    superliked = [
        (b.user, v) for b in history.batches for v, a in zip(b.candidates, b.actions, strict=True) if a == "superlike"
    ]
    liked = [(b.user, v) for b in history.batches for v, a in zip(b.candidates, b.actions, strict=True) if a == "like"]
    mean_p = lambda pairs: np.mean([simulator.like_probability(u, v) for u, v in pairs[:500]])  # noqa: E731
    assert mean_p(superliked) > mean_p(liked)


def test_durations_are_longer_for_likes(history: TimedHistory, simulator: SwipeSimulator) -> None:
    by_action: dict[str, list[int]] = {"like": [], "pass": []}
    for b in history.batches:
        for a, d in zip(b.actions, b.durations, strict=True):
            if a in by_action:
                by_action[a].append(d)
    assert np.median(by_action["like"]) > 1.5 * np.median(by_action["pass"])
    assert all(d > 0 for ds in by_action.values() for d in ds)
    assert simulator.duration_ms(1, 2, "like") == simulator.duration_ms(1, 2, "like")


def test_mutual_likes_are_reciprocal(history: TimedHistory) -> None:
    liked = {(b.user, v) for b in history.batches for v, a in zip(b.candidates, b.actions, strict=True) if a != "pass"}
    matches = mutual_likes(history.batches)
    assert matches
    for a, b in matches:
        assert a < b and (a, b) in liked and (b, a) in liked


def test_progress_reports_swipes_so_far(population: list[SimProfile]) -> None:
    calls: list[int] = []
    sim = SwipeSimulator(population[:500], seed=7)
    batches = list(sim.simulate_history(2_000, START.replace(tzinfo=None), 3, progress=calls.append))
    assert calls == sorted(calls) and calls[-1] == 2_000
    assert batches[0].timestamp.tzinfo is UTC


def test_bio_vectors_are_used(population: list[SimProfile]) -> None:
    small = population[:300]
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((len(small), 16))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    sim = SwipeSimulator(small, seed=1, bio_vectors=vectors)
    base = SwipeSimulator(small, seed=1)
    assert not np.allclose(sim.like_probabilities(0, np.arange(300)), base.like_probabilities(0, np.arange(300)))
    with pytest.raises(ValueError, match="bio_vectors"):
        SwipeSimulator(small, seed=1, bio_vectors=vectors[:10])


def test_bio_similarity_raises_like_probability(population: list[SimProfile]) -> None:
    """With only the bio term switched on, the most similar bios are liked more."""
    config = SimConfig(
        attractiveness_weight=0.0, pair_noise_sd=0.0, age_slope=0.0, homophily={}, distance_slope=0.0,
        beyond_distance_slope=0.0, bio_weight=1.0,
    )  # fmt: skip
    sim = SwipeSimulator(population[:800], seed=2, config=config)
    vs = np.arange(800)
    u = next(i for i, p in enumerate(population[:800]) if p.gender == "man" and p.seeking == ["woman"])
    women = vs[sim.gender == GENDER_CODES["woman"]]
    sims = sim.bio_embeddings[women] @ sim.taste[u]
    p = sim.like_probabilities(u, women)
    assert np.corrcoef(sims, p)[0, 1] > 0.9
