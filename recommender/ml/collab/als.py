"""Alternating least squares for implicit feedback (Hu, Koren & Volinsky, ICDM 2008).

Every (user, item) cell has a preference p and a confidence c; the loss is
``sum_ui c_ui (p_ui - x_u . y_i)^2 + reg (|X|^2 + |Y|^2)`` over *all* cells. Unobserved cells
have p = 0, c = 1. A like or superlike gives p = 1, c = 1 + alpha * weight. A pass is negative
evidence, not missing data: p = 0 as for an unseen pair, but with raised confidence
c = 1 + alpha * pass_confidence * |weight|, so the model is pushed harder towards 0 there.

Each half-step solves every row's normal equations
``(Y^T Y + Y^T (C_u - I) Y + reg I) x_u = Y^T C_u p_u``. ``Y^T Y`` is shared by all rows (the
paper's trick), so no row ever costs O(n_items). Two solvers: ``cholesky`` forms each A_u and
solves exactly (O(nnz_u f^2 + f^3) per row); ``cg`` (default, as in the implicit library, after
Takacs et al. 2011) runs a few conjugate-gradient steps warm-started at the previous factors
and never forms A_u (O(nnz_u f) per step). Rows are processed in batches of similar length
padded to a common width, so the per-row work becomes a few batched matmuls in torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from recommender.ml.collab.base import FactorModel, RecommenderConfig
from recommender.ml.collab.data import Interactions


@dataclass
class ALSConfig(RecommenderConfig):
    factors: int = 64
    regularization: float = 0.1
    alpha: float = 10.0  # confidence = 1 + alpha * |weight|
    pass_confidence: float = 1.0  # extra multiplier on a pass's confidence (0 = treat as unseen)
    epochs: int = 15
    init_scale: float = 0.01
    solver: str = "cg"  # "cg": a few conjugate-gradient steps (Takacs et al. 2011); "cholesky": exact
    cg_steps: int = 3  # warm-started from the previous epoch, so a few steps suffice
    batch_elements: int = 4_000_000  # cap on gathered floats (rows x width x factors) per solve batch

    def __post_init__(self) -> None:
        if self.solver not in ("cg", "cholesky"):
            raise ValueError(f"solver must be 'cg' or 'cholesky', not {self.solver!r}")


@dataclass
class _Side:
    """One direction of the problem in CSR form (rows are solved, columns are fixed)."""

    indptr: np.ndarray
    indices: torch.Tensor  # [nnz] int64
    conf: torch.Tensor  # [nnz] c - 1
    rhs: torch.Tensor  # [nnz] c * p


def _cholesky(gram: torch.Tensor, y: torch.Tensor, conf: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact solve: build A_u = gram + Y_u^T diag(c_u - 1) Y_u per row, O(nnz f^2 + f^3) per row."""
    a = gram + torch.bmm((y * conf.unsqueeze(-1)).transpose(1, 2), y)  # [B, f, f]
    chol, info = torch.linalg.cholesky_ex(a)
    if bool((info > 0).any()):  # float32 round-off on an ill-conditioned row: fall back to LU
        return torch.linalg.solve(a, b)
    return torch.cholesky_solve(b.unsqueeze(-1), chol).squeeze(-1)


def _conjugate_gradient(
    gram: torch.Tensor, y: torch.Tensor, conf: torch.Tensor, b: torch.Tensor, x: torch.Tensor, steps: int
) -> torch.Tensor:
    """A few CG steps on A_u x = b_u for a batch of rows, never forming A_u (O(nnz f) a step):
    A_u p = gram p + Y_u^T (conf_u * (Y_u p)). Warm-started at the previous factors ``x``."""

    def apply(v: torch.Tensor) -> torch.Tensor:  # [B, f] -> [B, f]
        yv = torch.bmm(y, v.unsqueeze(-1)).squeeze(-1)  # [B, L]
        return v @ gram + torch.bmm((conf * yv).unsqueeze(1), y).squeeze(1)

    x = x.clone()
    r = b - apply(x)
    p = r.clone()
    rs = (r * r).sum(dim=1)  # [B]
    for _ in range(steps):
        ap = apply(p)
        denom = (p * ap).sum(dim=1)
        alpha = torch.where(denom > 0, rs / denom.clamp_min(1e-30), torch.zeros_like(rs))
        x += alpha.unsqueeze(-1) * p
        r -= alpha.unsqueeze(-1) * ap
        rs_new = (r * r).sum(dim=1)
        beta = torch.where(rs > 0, rs_new / rs.clamp_min(1e-30), torch.zeros_like(rs))
        p = r + beta.unsqueeze(-1) * p
        rs = rs_new
    return x


def _side(m: sp.csr_matrix, alpha: float, pass_confidence: float) -> _Side:
    w = m.data.astype(np.float32)
    positive = w > 0
    extra = np.where(positive, alpha * w, alpha * pass_confidence * np.abs(w)).astype(np.float32)
    rhs = np.where(positive, 1.0 + extra, 0.0).astype(np.float32)
    return _Side(
        indptr=m.indptr.astype(np.int64),
        indices=torch.from_numpy(m.indices.astype(np.int64)),
        conf=torch.from_numpy(extra),
        rhs=torch.from_numpy(rhs),
    )


class ALS(FactorModel):
    name = "als"
    config_class = ALSConfig
    config: ALSConfig

    def _setup(self, data: Interactions) -> None:
        cfg = self.config
        g = torch.Generator().manual_seed(cfg.seed)
        n_users, n_items = data.shape
        self.taste = torch.randn(n_users, cfg.factors, generator=g) * cfg.init_scale  # [U, f]
        self.appeal = torch.randn(n_items, cfg.factors, generator=g) * cfg.init_scale  # [I, f]
        self.bias = torch.zeros(n_items)
        m = data.matrix.tocsr()
        self._users_side = _side(m, cfg.alpha, cfg.pass_confidence)
        self._items_side = _side(m.T.tocsr(), cfg.alpha, cfg.pass_confidence)

    def _epoch(self, data: Interactions, epoch: int) -> float:
        self.taste = self._solve(self._users_side, self.appeal, self.taste)
        self.appeal = self._solve(self._items_side, self.taste, self.appeal)
        return self._observed_loss()

    def _solve(self, side: _Side, fixed: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        """Least-squares solution of every row given the fixed factors, [n_rows, f]."""
        cfg = self.config
        f = fixed.shape[1]
        n_rows = side.indptr.size - 1
        eye = torch.eye(f)
        gram = fixed.T @ fixed + cfg.regularization * eye  # [f, f], the YtY trick
        out = torch.zeros(n_rows, f)
        lengths = np.diff(side.indptr)
        rows = np.flatnonzero(lengths)  # rows without data solve to exactly 0 (b = 0)
        order = rows[np.argsort(lengths[rows], kind="stable")]
        start = 0
        while start < order.size:
            # Rows sorted by length: a batch's widest row is its last, so padding stays small.
            stop = min(order.size, start + max(1, cfg.batch_elements // (int(lengths[order[start]]) * f)))
            while stop - start > 1 and (stop - start) * int(lengths[order[stop - 1]]) * f > cfg.batch_elements:
                stop = start + max(1, cfg.batch_elements // (int(lengths[order[stop - 1]]) * f))
            batch = order[start:stop]
            width = int(lengths[batch[-1]])
            offsets = np.arange(width)
            mask_np = offsets[None, :] < lengths[batch][:, None]  # [B, L]
            pos = torch.from_numpy(np.where(mask_np, side.indptr[batch][:, None] + offsets[None, :], 0))
            mask = torch.from_numpy(mask_np).float()
            y = fixed[side.indices[pos]]  # [B, L, f]
            conf = side.conf[pos] * mask  # [B, L] c - 1, 0 on padding
            b = torch.bmm((side.rhs[pos] * mask).unsqueeze(1), y).squeeze(1)  # [B, f] Y^T C p
            if cfg.solver == "cholesky":
                x = _cholesky(gram, y, conf, b)
            else:
                x = _conjugate_gradient(gram, y, conf, b, current[torch.from_numpy(batch)], cfg.cg_steps)
            out[torch.from_numpy(batch)] = x
            start = stop
        return out

    def _observed_loss(self) -> float:
        """Confidence-weighted squared error on the observed cells, per observed cell (the
        unobserved cells' share is left out: it costs a dense pass and only tracks the norm)."""
        side = self._users_side
        n = side.indices.numel()
        if n == 0:
            return 0.0
        rows = torch.from_numpy(np.repeat(np.arange(side.indptr.size - 1), np.diff(side.indptr)))
        total = 0.0
        for s in range(0, n, 1_000_000):
            r, c = rows[s : s + 1_000_000], side.indices[s : s + 1_000_000]
            pred = (self.taste[r] * self.appeal[c]).sum(dim=1)
            pref = (side.rhs[s : s + 1_000_000] > 0).float()
            total += float(((1.0 + side.conf[s : s + 1_000_000]) * (pref - pred) ** 2).sum())
        return total / n
