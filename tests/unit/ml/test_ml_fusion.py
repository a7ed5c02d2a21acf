"""Tests for recommender.ml.fusion."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.ml.fusion import FUSION_METHODS, fuse


def test_exact_values() -> None:
    p, q = 0.8, 0.2
    assert fuse(p, q, "harmonic") == pytest.approx(2 * 0.16 / 1.0)
    assert fuse(p, q, "geometric") == pytest.approx(0.4)
    assert fuse(p, q, "arithmetic") == pytest.approx(0.5)
    assert fuse(p, q, "min") == pytest.approx(0.2)
    assert fuse(p, q, "product") == pytest.approx(0.16)
    assert fuse(p, q) == fuse(p, q, "harmonic")


def test_harmonic_zero_when_both_zero() -> None:
    out = fuse(np.array([0.0, 0.0, 1.0]), np.array([0.0, 0.5, 1.0]))
    np.testing.assert_allclose(out, [0.0, 0.0, 1.0])
    assert not np.any(np.isnan(out))


@pytest.fixture
def grid() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.random(1000), [0.0, 1.0, 0.0, 1.0]])
    q = np.concatenate([rng.random(1000), [0.0, 1.0, 1.0, 0.0]])
    return p, q


@pytest.mark.parametrize("method", FUSION_METHODS)
def test_symmetric_and_bounded(method: str, grid: tuple[np.ndarray, np.ndarray]) -> None:
    p, q = grid
    out = fuse(p, q, method)
    assert out.shape == p.shape
    np.testing.assert_allclose(out, fuse(q, p, method))
    assert np.all((out >= 0) & (out <= 1))


def test_mean_ordering(grid: tuple[np.ndarray, np.ndarray]) -> None:
    p, q = grid
    eps = 1e-12
    product, minimum, harmonic, geometric, arithmetic = (
        fuse(p, q, m) for m in ("product", "min", "harmonic", "geometric", "arithmetic")
    )
    assert np.all(product <= minimum + eps)
    assert np.all(minimum <= harmonic + eps)
    assert np.all(harmonic <= geometric + eps)
    assert np.all(geometric <= arithmetic + eps)


def test_broadcasts() -> None:
    assert fuse(np.full((3, 4), 0.5), 0.5).shape == (3, 4)


def test_unknown_method_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"harmonic.*product"):
        fuse(0.5, 0.5, "median")


@pytest.mark.parametrize("bad", [-0.1, 1.1, float("nan")])
def test_rejects_out_of_range(bad: float) -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fuse(bad, 0.5)
