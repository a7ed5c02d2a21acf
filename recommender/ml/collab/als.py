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

Side features (``side_weight`` > 0 and ``Interactions`` carrying features): collective matrix
factorisation (Singh & Gordon, KDD 2008). Each profile's standardised feature row must also be
reconstructed from its factors, ``side_weight * (|F_u - Z x_u|^2 + |G_i - W y_i|^2)`` with
loadings Z (taste side) and W (appeal side), so profiles that look alike get nearby factors. This
adds ``side_weight * Z^T Z`` to the shared Gram matrix and ``side_weight * Z^T F_u`` to each row's
right-hand side, so an epoch costs two small dense matmuls more; the loadings are ridge
solutions given the factors. A profile with no interactions (a cold user or candidate) gets its
factors from its features alone instead of falling back to popularity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from recommender.ml.collab.base import FactorModel, FeatureScaling, RecommenderConfig
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
    # Weight of the side-feature reconstruction (collective MF, see the module docs); 0 = ignore
    # features. Only used when the training Interactions carry side features (the train
    # pipeline attaches profile attributes; interaction files alone have none). 0.03 was chosen
    # on validation in bench.collab.
    side_weight: float = 0.03

    def __post_init__(self) -> None:
        if self.solver not in ("cg", "cholesky"):
            raise ValueError(f"solver must be 'cg' or 'cholesky', not {self.solver!r}")
        if self.side_weight < 0:
            raise ValueError("side_weight must be >= 0")


@dataclass
class _Batch:
    """Rows of similar length, padded to the widest: the unit of one batched solve."""

    rows: torch.Tensor  # [B] int64 row indices
    cols: torch.Tensor  # [B, L] int64 column of each entry (0 on padding)
    conf: torch.Tensor  # [B, L] c - 1 (0 on padding)
    rhs: torch.Tensor  # [B, L] c * p (0 on padding)


@dataclass
class _Side:
    """One direction of the problem (rows are solved, columns are fixed). The sparsity pattern
    never changes between epochs, so the padded batches are laid out once, at setup."""

    batches: list[_Batch]
    empty_rows: torch.Tensor  # [E] rows without any entry
    rows: torch.Tensor  # [nnz] row of each entry (CSR order), for the loss
    cols: torch.Tensor  # [nnz]
    conf: torch.Tensor  # [nnz]
    rhs: torch.Tensor  # [nnz]


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


def _side(m: sp.csr_matrix, alpha: float, pass_confidence: float, factors: int, batch_elements: int) -> _Side:
    w = m.data.astype(np.float32)
    positive = w > 0
    extra = np.where(positive, alpha * w, alpha * pass_confidence * np.abs(w)).astype(np.float32)
    rhs = np.where(positive, 1.0 + extra, 0.0).astype(np.float32)
    # An entry with c = 1 and p = 0 (a pass at pass_confidence 0) is exactly an unobserved cell,
    # already counted by the shared Gram matrix: leaving it out changes no solution and saves
    # most of the work when passes dominate.
    keep = (extra != 0) | (rhs != 0)
    lengths = np.bincount(np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))[keep], minlength=m.shape[0])
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    indices, extra, rhs = m.indices[keep], extra[keep], rhs[keep]
    rows = np.flatnonzero(lengths)
    order = rows[np.argsort(lengths[rows], kind="stable")]
    batches: list[_Batch] = []
    start = 0
    while start < order.size:
        # Rows sorted by length: a batch's widest row is its last, so padding stays small.
        stop = min(order.size, start + max(1, batch_elements // (int(lengths[order[start]]) * factors)))
        while stop - start > 1 and (stop - start) * int(lengths[order[stop - 1]]) * factors > batch_elements:
            stop = start + max(1, batch_elements // (int(lengths[order[stop - 1]]) * factors))
        batch = order[start:stop]
        offsets = np.arange(int(lengths[batch[-1]]))
        mask = offsets[None, :] < lengths[batch][:, None]  # [B, L]
        pos = np.where(mask, indptr[batch][:, None] + offsets[None, :], 0)
        batches.append(
            _Batch(
                rows=torch.from_numpy(batch.astype(np.int64)),
                cols=torch.from_numpy(np.where(mask, indices[pos], 0).astype(np.int64)),
                conf=torch.from_numpy(np.where(mask, extra[pos], 0.0).astype(np.float32)),
                rhs=torch.from_numpy(np.where(mask, rhs[pos], 0.0).astype(np.float32)),
            )
        )
        start = stop
    return _Side(
        batches=batches,
        empty_rows=torch.from_numpy(np.flatnonzero(lengths == 0).astype(np.int64)),
        rows=torch.from_numpy(np.repeat(np.arange(lengths.size), lengths).astype(np.int64)),
        cols=torch.from_numpy(indices.astype(np.int64)),
        conf=torch.from_numpy(extra),
        rhs=torch.from_numpy(rhs),
    )


class ALS(FeatureScaling, FactorModel):
    name = "als"
    config_class = ALSConfig
    config: ALSConfig
    # searched by recommender.ml.collab.tuning (the defaults first). Strong regularisation with a
    # low confidence is what won on MovieLens-100K (docs/benchmarks.md, "Small tenants").
    search_space: ClassVar[dict[str, list[Any]]] = {
        "regularization": [0.1, 1.0, 10.0, 30.0, 100.0, 300.0],
        "alpha": [10.0, 1.0, 3.0, 30.0],
        "factors": [64, 32, 128],
    }

    def __init__(self, config: ALSConfig | None = None) -> None:
        super().__init__(config)
        # Side-feature part (collective MF); empty when the model was fitted without features.
        self.taste_loadings = torch.zeros(0, 0)  # Z: [f, factors], features ~ Z taste
        self.appeal_loadings = torch.zeros(0, 0)  # W: [f, factors], features ~ W appeal

    def _setup(self, data: Interactions) -> None:
        cfg = self.config
        g = torch.Generator().manual_seed(cfg.seed)
        n_users, n_items = data.shape
        self.taste = torch.randn(n_users, cfg.factors, generator=g) * cfg.init_scale  # [U, f]
        self.appeal = torch.randn(n_items, cfg.factors, generator=g) * cfg.init_scale  # [I, f]
        self.bias = torch.zeros(n_items)
        m = data.matrix.tocsr()
        layout = (cfg.alpha, cfg.pass_confidence, cfg.factors, cfg.batch_elements)
        self._users_side = _side(m, *layout)
        self._items_side = _side(m.T.tocsr(), *layout)
        self._user_feats, self._item_feats = self._init_features(data)

    def _init_features(self, data: Interactions) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised [n_users, f] and [n_items, f] features (f = 0 when not used) and zero
        loadings for them."""
        uf, itf = self._fit_feature_scaling(data, use=self.config.side_weight > 0)
        self.taste_loadings = torch.zeros(uf.shape[1], self.config.factors)
        self.appeal_loadings = torch.zeros(uf.shape[1], self.config.factors)
        return uf, itf

    def _epoch(self, data: Interactions, epoch: int) -> float:
        self.taste = self._half_step(self._users_side, self.appeal, self.taste, self._user_feats, self.taste_loadings)
        if self.has_features:
            self.taste_loadings = self._loadings(self._user_feats, self.taste)
        self.appeal = self._half_step(self._items_side, self.taste, self.appeal, self._item_feats, self.appeal_loadings)
        if self.has_features:
            self.appeal_loadings = self._loadings(self._item_feats, self.appeal)
        return self._observed_loss()

    def _half_step(
        self, side: _Side, fixed: torch.Tensor, current: torch.Tensor, feats: torch.Tensor, loadings: torch.Tensor
    ) -> torch.Tensor:
        """Solve one side's rows; with side features their reconstruction term joins the system."""
        if not self.has_features:
            return self._solve(side, fixed, current)
        beta = self.config.side_weight
        return self._solve(side, fixed, current, beta * loadings.T @ loadings, beta * feats @ loadings)

    def _loadings(self, feats: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
        """Ridge solution of feats ~ factors @ L^T: L = feats^T X (X^T X + reg/beta I)^-1, [f, k]."""
        cfg = self.config
        a = factors.T @ factors + (cfg.regularization / cfg.side_weight) * torch.eye(cfg.factors)  # [k, k]
        return torch.linalg.solve(a, (feats.T @ factors).T).T  # [f, k]

    def _solve(
        self,
        side: _Side,
        fixed: torch.Tensor,
        current: torch.Tensor,
        extra_gram: torch.Tensor | None = None,
        extra_rhs: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Least-squares solution of every row given the fixed factors, [n_rows, f].

        ``extra_gram`` [f, f] and ``extra_rhs`` [n_rows, f] add the side-feature terms; with them
        a row without interactions is solved from its features alone (one shared system)."""
        cfg = self.config
        f = fixed.shape[1]
        gram = fixed.T @ fixed + cfg.regularization * torch.eye(f)  # [f, f], the YtY trick
        if extra_gram is not None:
            gram = gram + extra_gram
        out = torch.zeros(current.shape[0], f)
        if extra_rhs is not None and side.empty_rows.numel():
            out[side.empty_rows] = torch.linalg.solve(gram, extra_rhs[side.empty_rows].T).T
        # Without side features, rows without data solve to exactly 0 (b = 0).
        for batch in side.batches:
            y = fixed[batch.cols]  # [B, L, f]
            b = torch.bmm(batch.rhs.unsqueeze(1), y).squeeze(1)  # [B, f] Y^T C p
            if extra_rhs is not None:
                b = b + extra_rhs[batch.rows]
            if cfg.solver == "cholesky":
                x = _cholesky(gram, y, batch.conf, b)
            else:
                x = _conjugate_gradient(gram, y, batch.conf, b, current[batch.rows], cfg.cg_steps)
            out[batch.rows] = x
        return out

    def _needs_fallback(self, users: torch.Tensor) -> torch.Tensor:
        # With side features every profile has factors of its own, history or not.
        if self.has_features:
            return torch.zeros(users.shape, dtype=torch.bool)
        return super()._needs_fallback(users)

    def _state(self) -> dict[str, torch.Tensor]:
        return {
            **super()._state(),
            **self._scaling_state(),
            "taste_loadings": self.taste_loadings,
            "appeal_loadings": self.appeal_loadings,
        }

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        super()._load_state(state)
        # Checkpoints from before side features have none of these keys: a plain ALS.
        k = self.taste.shape[1]
        self._load_scaling_state(state)
        self.taste_loadings = state.get("taste_loadings", torch.zeros(0, k)).float().clone()
        self.appeal_loadings = state.get("appeal_loadings", torch.zeros(0, k)).float().clone()

    def _observed_loss(self, sample: int = 20_000) -> float:
        """Confidence-weighted squared error per observed cell, estimated on a fixed sample of
        at most ``sample`` cells (it is only reported, so it should not cost a full pass; the
        unobserved cells' share is left out: it costs a dense pass and only tracks the norm)."""
        side = self._users_side
        n = side.cols.numel()
        if n == 0:
            return 0.0
        if n > sample:
            take = torch.from_numpy(np.random.default_rng(self.config.seed).choice(n, sample, replace=False))
            r, c, conf, rhs = side.rows[take], side.cols[take], side.conf[take], side.rhs[take]
        else:
            r, c, conf, rhs = side.rows, side.cols, side.conf, side.rhs
        pred = (self.taste[r] * self.appeal[c]).sum(dim=1)
        return float(((1.0 + conf) * ((rhs > 0).float() - pred) ** 2).mean())
