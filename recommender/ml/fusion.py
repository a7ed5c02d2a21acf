"""Reciprocal fusion of two one-way preferences into one pair score.

``p_uv = P(u likes v)`` and ``p_vu = P(v likes u)``, both in [0, 1]. A dating
recommendation is only useful if *both* sides are interested, so the fused
score should be high only when both are. The alternatives, all vectorised and
broadcasting like numpy:

``harmonic`` (default)
    ``2pq / (p + q)``, 0 when both are 0. RECON (Pizzato et al., 2010) uses it:
    dominated by the smaller side, so a one-sided crush ranks low, but unlike
    ``min`` it still rewards the larger side. Good general default.
``geometric``
    ``sqrt(pq)``. Between harmonic and arithmetic; a bit more forgiving of
    imbalance. Useful when the two estimates have different calibration.
``arithmetic``
    ``(p + q) / 2``. Not reciprocal at all: one enthusiastic side is enough. Only
    as a baseline, or when one side's estimate is unreliable.
``min``
    ``min(p, q)``. The strictest: only the less interested side counts; ignores
    the other side entirely, so ties are frequent.
``product``
    ``pq``: the probability of a match when the two decisions are independent and
    the inputs are calibrated probabilities. Use it when scores must be read as
    match probabilities (e.g. expected matches); it is smaller than the others.

Ordering for any inputs: ``product <= min <= harmonic <= geometric <= arithmetic``.
"""

from __future__ import annotations

import numpy as np

FUSION_METHODS: tuple[str, ...] = ("harmonic", "geometric", "arithmetic", "min", "product")


def _check_unit(name: str, x: np.ndarray) -> None:
    # NaN fails both comparisons, so it is caught here too
    if not np.all((x >= 0.0) & (x <= 1.0)):
        raise ValueError(f"{name} must be in [0, 1] (and not NaN)")


def _harmonic(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    total = p + q
    return np.divide(2.0 * p * q, total, out=np.zeros(np.broadcast(p, q).shape), where=total > 0)


def fuse(p_uv: np.ndarray | float, p_vu: np.ndarray | float, method: str = "harmonic") -> np.ndarray:
    """Fused reciprocal score in [0, 1], shape of the broadcast inputs."""
    p = np.asarray(p_uv, dtype=np.float64)
    q = np.asarray(p_vu, dtype=np.float64)
    _check_unit("p_uv", p)
    _check_unit("p_vu", q)
    if method == "harmonic":
        return _harmonic(p, q)
    if method == "geometric":
        return np.sqrt(p * q)
    if method == "arithmetic":
        return (p + q) / 2.0
    if method == "min":
        return np.minimum(p, q)
    if method == "product":
        return p * q
    raise ValueError(f"unknown fusion method {method!r}; expected one of {FUSION_METHODS}")
