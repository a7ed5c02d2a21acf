"""Bayesian personalised ranking (Rendle et al., UAI 2009) in PyTorch.

For a sampled triple (u, i, j) with u liking i, maximise ``log sigmoid(x_ui - x_uj)`` where
``x_ui = taste_u . appeal_i + bias_i``. Dating twists:

* the positive term is weighted by the like's weight (a superlike counts twice by default);
* passes are hard negatives sampled with priority: a share ``hard_negative_share`` of the
  negatives is drawn from the user's own passes (profiles they were shown and turned down),
  the rest uniformly from the catalogue (checked, once, not to be one of the user's likes).

Uniform negatives alone teach the model mostly "not the gender I seek"; the passes teach it
the finer taste inside the eligible pool, which is what the ranking is judged on.
Optimiser: sparse embeddings with SparseAdam (only the rows in a batch are touched).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from recommender.ml.collab.base import FactorModel, RecommenderConfig
from recommender.ml.collab.data import Interactions


@dataclass
class BPRConfig(RecommenderConfig):
    factors: int = 64
    learning_rate: float = 0.01
    regularization: float = 1e-4  # L2 on the rows in each batch
    batch_size: int = 4096
    hard_negative_share: float = 0.5  # of negatives drawn from the user's passes, when they have any
    samples_per_epoch: int = 0  # 0 = one per positive interaction
    epochs: int = 40
    init_scale: float = 0.1
    item_bias: bool = True


class BPR(FactorModel):
    name = "bpr"
    config_class = BPRConfig
    config: BPRConfig
    # searched by recommender.ml.collab.tuning (the defaults first)
    search_space: ClassVar[dict[str, list[Any]]] = {
        "regularization": [1e-4, 1e-3, 1e-2],
        "learning_rate": [0.01, 0.003, 0.03],
        "factors": [64, 32, 128],
    }

    def _setup(self, data: Interactions) -> None:
        cfg = self.config
        g = torch.Generator().manual_seed(cfg.seed)
        self._rng = np.random.default_rng(cfg.seed)
        n_users, n_items = data.shape
        self._taste = torch.nn.Embedding(n_users, cfg.factors, sparse=True)
        self._appeal = torch.nn.Embedding(n_items, cfg.factors, sparse=True)
        self._bias = torch.nn.Embedding(n_items, 1, sparse=True)
        with torch.no_grad():
            self._taste.weight.copy_(torch.randn(n_users, cfg.factors, generator=g) * cfg.init_scale)
            self._appeal.weight.copy_(torch.randn(n_items, cfg.factors, generator=g) * cfg.init_scale)
            self._bias.weight.zero_()
        params = [self._taste.weight, self._appeal.weight] + ([self._bias.weight] if cfg.item_bias else [])
        self._optimizer = torch.optim.SparseAdam(params, lr=cfg.learning_rate)
        pos = data.positives().tocoo()
        self._pos_users = pos.row.astype(np.int64)
        self._pos_items = pos.col.astype(np.int64)
        self._pos_weights = pos.data.astype(np.float32)
        # Sorted keys u * n_items + i of the likes: a vectorised membership test for negatives.
        self._pos_keys = np.sort(self._pos_users * n_items + self._pos_items)
        neg = data.negatives().tocsr()
        self._neg_indptr = neg.indptr.astype(np.int64)
        self._neg_items = neg.indices.astype(np.int64)
        self._sync()

    def _sync(self) -> None:
        """Expose the embedding weights as the FactorModel tensors (shared storage, no copy)."""
        self.taste = self._taste.weight.detach()
        self.appeal = self._appeal.weight.detach()
        self.bias = self._bias.weight.detach().reshape(-1)

    def _negatives(self, users: np.ndarray, n_items: int) -> np.ndarray:
        rng = self._rng
        neg = rng.integers(0, n_items, size=users.size)
        # One resampling round for uniform negatives that hit a like (rare on sparse data).
        hit = _contains(self._pos_keys, users * n_items + neg)
        neg[hit] = rng.integers(0, n_items, size=int(hit.sum()))
        n_pass = self._neg_indptr[users + 1] - self._neg_indptr[users]
        hard = (n_pass > 0) & (rng.random(users.size) < self.config.hard_negative_share)
        if hard.any():
            pick = (rng.random(int(hard.sum())) * n_pass[hard]).astype(np.int64)
            neg[hard] = self._neg_items[self._neg_indptr[users[hard]] + pick]
        return neg

    def _epoch(self, data: Interactions, epoch: int) -> float:
        cfg = self.config
        n_pos = self._pos_users.size
        if n_pos == 0:
            return 0.0
        n_items = data.shape[1]
        samples = cfg.samples_per_epoch or n_pos
        order = self._rng.integers(0, n_pos, size=samples)
        total, count = 0.0, 0
        for s in range(0, samples, cfg.batch_size):
            idx = order[s : s + cfg.batch_size]
            u_np = self._pos_users[idx]
            j_np = self._negatives(u_np, n_items)
            u = torch.from_numpy(u_np)
            i = torch.from_numpy(self._pos_items[idx])
            j = torch.from_numpy(j_np)
            w = torch.from_numpy(self._pos_weights[idx])
            tu, ai, aj = self._taste(u), self._appeal(i), self._appeal(j)  # [b, f] each
            bi, bj = self._bias(i).squeeze(-1), self._bias(j).squeeze(-1)  # [b]
            diff = (tu * (ai - aj)).sum(dim=1) + bi - bj  # [b]
            loss = -(w * F.logsigmoid(diff)).sum() / w.sum()
            reg = cfg.regularization * (tu.pow(2).sum() + ai.pow(2).sum() + aj.pow(2).sum()) / u.numel()
            self._optimizer.zero_grad(set_to_none=True)
            (loss + reg).backward()
            self._optimizer.step()
            total += loss.item() * u.numel()
            count += u.numel()
        self._sync()
        return total / count

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        super()._load_state(state)
        if hasattr(self, "_taste"):  # restoring the best epoch mid-fit: keep training tensors in step
            with torch.no_grad():
                self._taste.weight.copy_(self.taste)
                self._appeal.weight.copy_(self.appeal)
                self._bias.weight.copy_(self.bias.unsqueeze(-1))
            self._sync()


def _contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    if sorted_keys.size == 0:
        return np.zeros(keys.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.size - 1)
    return sorted_keys[pos] == keys
