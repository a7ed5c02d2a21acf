"""Tests for recommender.ml.interaction."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.ml.interaction import (
    InteractionConfig,
    interaction_adjustment,
    liked_you_boost,
    taste_vector,
    top_k_mean_similarity,
)

D = 32


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def around(center: np.ndarray, n: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    return unit(center + noise * rng.normal(size=(n, D)))  # (n, D)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.fixture
def axes(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    a, b = unit(rng.normal(size=(2, D)))
    return a, b


def test_no_history_gives_zeros(rng: np.random.Generator) -> None:
    cands = unit(rng.normal(size=(10, D)))
    empty = np.empty((0, D), np.float32)
    out = interaction_adjustment(cands, empty, None, empty)
    assert out.shape == (10,)
    assert out.dtype == np.float32
    assert not out.any()


def test_similar_to_liked_up_similar_to_passed_down(
    rng: np.random.Generator, axes: tuple[np.ndarray, np.ndarray]
) -> None:
    liked_dir, passed_dir = axes
    liked = around(liked_dir, 20, 0.1, rng)
    passed = around(passed_dir, 20, 0.1, rng)
    cands = np.stack([unit(liked_dir), unit(passed_dir)])
    out = interaction_adjustment(cands, liked, None, passed)
    assert out[0] > 0.5
    assert out[1] < -0.5
    assert np.all((out >= -1) & (out <= 1))


def test_superlikes_weigh_more(rng: np.random.Generator, axes: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = axes
    cands = np.stack([a, b])
    # one like near a, one superlike near b: b should come out ahead
    out = interaction_adjustment(cands, a[None], b[None], None, InteractionConfig(top_k=1))
    assert out[1] > out[0]


def test_one_outlier_does_not_dominate(rng: np.random.Generator, axes: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = axes
    liked = np.concatenate([around(a, 19, 0.05, rng), b[None]])  # 19 near a, one outlier at b
    out = interaction_adjustment(np.stack([a, b]), liked, None, None, InteractionConfig(top_k=5))
    assert out[0] > out[1] + 0.3


def test_top_k_mean_similarity_exact() -> None:
    cand = np.eye(3, dtype=np.float32)[:1]  # (1, 3)
    group = np.array([[1, 0, 0], [0.6, 0.8, 0], [0, 1, 0]], dtype=np.float32)
    assert top_k_mean_similarity(cand, group, 2)[0] == pytest.approx(0.8)
    assert top_k_mean_similarity(cand, group, 10)[0] == pytest.approx(1.6 / 3)


def test_max_history_keeps_newest(axes: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = axes
    liked = np.stack([a] * 5 + [b] * 3)  # oldest likes at a, newest at b
    out = interaction_adjustment(np.stack([a, b]), liked, None, None, InteractionConfig(max_history=3, top_k=3))
    assert out[1] == pytest.approx(1.0, abs=1e-5)
    assert out[0] < out[1]


def test_liked_you_boost() -> None:
    out = liked_you_boost(np.array([True, False, True]), 0.2)
    np.testing.assert_allclose(out, [0.2, 0.0, 0.2])
    assert out.dtype == np.float32


def test_taste_vector(rng: np.random.Generator, axes: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = axes
    liked = around(a, 10, 0.2, rng)
    passed = around(b, 10, 0.2, rng)
    q = taste_vector(liked, None, passed)
    assert q is not None
    assert q.shape == (D,)
    assert np.linalg.norm(q) == pytest.approx(1.0, abs=1e-5)
    assert float(q @ a) > 0.8
    # pushing away from passes: less similar to b than the plain like centroid is
    plain = taste_vector(liked, None, None)
    assert plain is not None
    assert float(q @ b) < float(plain @ b)


def test_taste_vector_superlike_pulls_harder(axes: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = axes
    q = taste_vector(a[None], b[None], None)
    assert q is not None
    assert float(q @ b) > float(q @ a)


def test_taste_vector_none_without_likes(rng: np.random.Generator) -> None:
    assert taste_vector(None, None, unit(rng.normal(size=(4, D)))) is None
    assert taste_vector(np.empty((0, D)), np.empty((0, D)), None) is None
