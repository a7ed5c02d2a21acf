"""Logistic matrix factorisation with both-side biases, for swipes (likes against passes).

Johnson, "Logistic Matrix Factorization for Implicit Feedback Data" (NIPS 2014 workshop) models
P(u likes i) = sigmoid(taste_u . appeal_i + bias_u + bias_i). Dating swipes are *explicit*
(every swipe is a like or a pass on a profile the user was shown), so the loss here is plain
logistic regression on the swipes that happened, not on sampled unobserved pairs: a profile
nobody was shown says nothing about whether they would be liked.

Why this model for the reciprocal feed: its two biases are the two numbers that decide most of
a match.

* ``user_bias[u]`` is u's *selectivity*: someone who likes one profile in ten has a low one,
  whoever the candidate is. P(v likes u) for a candidate v needs exactly this about v.
* ``bias[i]`` (the item bias) is i's *appeal*, judged against each judge's own selectivity (a
  pass from a picky judge costs less than one from someone who likes everybody).
* ``taste . appeal`` is the personal part on top.

Both directions of a pair come from one model: P(u likes v) = sigmoid(taste_u . appeal_v +
user_bias_u + bias_v) and P(v likes u) from taste_v, appeal_u and the swapped biases. Rows and
columns share one id map for dating data, so a profile's ``user_bias`` and ``bias`` sit at the
same index. A profile without training swipes has zero parameters: its selectivity is the
tenant's average (``global_bias``), its appeal average.

Training: minibatch Adam over the swipes, weight ``|event weight|`` per swipe (a superlike is
stronger evidence than a like), L2 on every parameter touched in the batch. Fixed seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from recommender.ml.collab.base import EpochRecord, FactorModel, RecommenderConfig
from recommender.ml.collab.data import Interactions


@dataclass
class LMFConfig(RecommenderConfig):
    factors: int = 16
    learning_rate: float = 0.05
    regularization: float = 2.0  # L2 on the factors in a batch, per swipe
    bias_regularization: float = 0.05  # L2 on the two biases, per swipe
    batch_size: int = 8192
    epochs: int = 60
    patience: int = 5
    init_scale: float = 0.01


class LogisticMF(FactorModel):
    name = "lmf"
    config_class = LMFConfig
    config: LMFConfig
    # early stopping on the AUC of likes against passes (``evaluation.validation_like_auc``):
    # catalogue NDCG measures exposure, which this model does not learn
    validation_metric: ClassVar[str] = "like_auc"

    user_bias: torch.Tensor  # [n_users]
    global_bias: torch.Tensor  # [1]
    # numpy copies for serving (taste, appeal, user_bias, bias padded with a zero row, global)
    _arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float] | None = None

    def _setup(self, data: Interactions) -> None:
        cfg = self.config
        g = torch.Generator().manual_seed(cfg.seed)
        self._rng = np.random.default_rng(cfg.seed)
        n_users, n_items = data.shape
        self.taste = (torch.randn(n_users, cfg.factors, generator=g) * cfg.init_scale).requires_grad_()
        self.appeal = (torch.randn(n_items, cfg.factors, generator=g) * cfg.init_scale).requires_grad_()
        self.user_bias = torch.zeros(n_users, requires_grad=True)
        self.bias = torch.zeros(n_items, requires_grad=True)
        coo = data.matrix.tocoo()
        self._users = coo.row.astype(np.int64)
        self._items = coo.col.astype(np.int64)
        self._labels = (coo.data > 0).astype(np.float32)  # like/superlike 1, pass 0
        self._weights = np.abs(coo.data).astype(np.float32)
        like_rate = float(self._labels.mean()) if self._labels.size else 0.5
        like_rate = min(max(like_rate, 1e-3), 1 - 1e-3)
        self.global_bias = torch.tensor([np.log(like_rate / (1 - like_rate))], dtype=torch.float32, requires_grad=True)
        self._optimizer = torch.optim.Adam(
            [self.taste, self.appeal, self.user_bias, self.bias, self.global_bias], lr=cfg.learning_rate
        )

    def _epoch(self, data: Interactions, epoch: int) -> float:
        cfg = self.config
        n = self._users.size
        if n == 0:
            return 0.0
        order = self._rng.permutation(n)
        total = 0.0
        for s in range(0, n, cfg.batch_size):
            idx = order[s : s + cfg.batch_size]
            u = torch.from_numpy(self._users[idx])
            i = torch.from_numpy(self._items[idx])
            y = torch.from_numpy(self._labels[idx])
            w = torch.from_numpy(self._weights[idx])
            tu, ai = self.taste[u], self.appeal[i]  # [b, f]
            bu, bi = self.user_bias[u], self.bias[i]  # [b]
            logits = (tu * ai).sum(dim=1) + bu + bi + self.global_bias  # [b]
            loss = (w * F.binary_cross_entropy_with_logits(logits, y, reduction="none")).sum() / w.sum()
            reg = (cfg.regularization * (tu.pow(2).sum() + ai.pow(2).sum())) / idx.size
            reg = reg + cfg.bias_regularization * (bu.pow(2).sum() + bi.pow(2).sum()) / idx.size
            self._optimizer.zero_grad(set_to_none=True)
            (loss + reg).backward()
            self._optimizer.step()
            total += loss.item() * idx.size
        self._arrays = None  # parameters moved: the serving arrays are stale
        return total / n

    def fit(self, data: Interactions, *, validate: Any = None, progress: bool = False) -> list[EpochRecord]:
        history = super().fit(data, validate=validate, progress=progress)
        # Training is over: keep plain tensors (no autograd graph, no optimiser state).
        for name in ("taste", "appeal", "bias", "user_bias", "global_bias"):
            setattr(self, name, getattr(self, name).detach().clone())
        del self._optimizer
        self._arrays = None
        return history

    # --- state ---------------------------------------------------------------------------------

    def _state(self) -> dict[str, torch.Tensor]:
        return {
            "taste": self.taste.detach(),
            "appeal": self.appeal.detach(),
            "bias": self.bias.detach(),
            "user_bias": self.user_bias.detach(),
            "global_bias": self.global_bias.detach(),
        }

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self._arrays = None
        training = hasattr(self, "_optimizer")  # restoring the best epoch mid-fit
        with torch.no_grad():
            for name in ("taste", "appeal", "bias", "user_bias", "global_bias"):
                value = state[name].float()
                if training:
                    getattr(self, name).copy_(value)
                else:
                    setattr(self, name, value.clone())

    # --- scoring -------------------------------------------------------------------------------

    def _score_rows(self, users: torch.Tensor) -> torch.Tensor:
        taste, appeal = self.taste.detach(), self.appeal.detach()
        rows = taste[users] @ appeal.T + self.bias.detach()  # [b, n_items]
        return rows + (self.user_bias.detach()[users] + self.global_bias.detach()).unsqueeze(1)

    def _score_pairs(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self._logits(users, items)

    def _logits(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Raw logits of aligned pairs, [n]; index -1 (a profile the model never saw) has zero
        parameters, i.e. the average selectivity or appeal."""
        known_u, known_i = users >= 0, items >= 0
        u, i = users.clamp_min(0), items.clamp_min(0)
        taste = self.taste.detach()[u] * known_u.unsqueeze(1)  # [n, f]
        appeal = self.appeal.detach()[i] * known_i.unsqueeze(1)  # [n, f]
        bu = self.user_bias.detach()[u] * known_u
        bi = self.bias.detach()[i] * known_i
        return (taste * appeal).sum(dim=1) + bu + bi + self.global_bias.detach()

    def pair_logits(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Calibrated log-odds that ``users[k]`` likes ``items[k]``, [n] float64.

        Unlike :meth:`score_pairs`, a user without training swipes is not replaced by item
        popularity: their selectivity is taken as average (zero bias) and the candidate's appeal
        still counts, which is what P(v likes u) needs for a candidate v who has not swiped yet.
        Indices may be -1 for profiles the model never saw. numpy on cached arrays: this runs
        in every feed request, where torch's per-call overhead would dominate.
        """
        taste, appeal, user_bias, bias, base = self._serving_arrays()
        u = np.asarray(users, dtype=np.int64)
        i = np.asarray(items, dtype=np.int64)
        # row -1 (unseen) reads the zero row appended at the end of each array
        z = np.einsum("nf,nf->n", taste[u], appeal[i]) + user_bias[u] + bias[i]  # [n]
        a, b = self.calibration
        return a * (z.astype(np.float64) + base) + b

    def logits_for_user(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """(log-odds row likes each column [n_items], each column's profile likes row [n_items]),
        calibrated; ``row`` may be -1 (unseen). Two matrix-vector products."""
        taste, appeal, user_bias, bias, base = self._serving_arrays()
        n = self.n_items
        # einsum, not ``@``: a BLAS matrix-vector product wakes its thread pool, which on a busy
        # 2-core server measured 5-10x slower than this single-threaded loop
        uv = np.einsum("nf,f->n", appeal[:n], taste[row]) + bias[:n] + user_bias[row]  # [n_items]
        vu = np.einsum("nf,f->n", taste[:n], appeal[row]) + user_bias[:n] + bias[row]  # [n_items]
        a, b = self.calibration
        return a * (uv.astype(np.float64) + base) + b, a * (vu.astype(np.float64) + base) + b

    def _serving_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
        self._check_fitted()
        cached = getattr(self, "_arrays", None)
        if cached is None or cached[0].shape[0] != self.n_users + 1:

            def padded(t: torch.Tensor) -> np.ndarray:
                x = t.detach().float().numpy()
                return np.concatenate([x, np.zeros((1, *x.shape[1:]), dtype=x.dtype)])  # row -1 = zeros

            cached = (
                padded(self.taste),
                padded(self.appeal),
                padded(self.user_bias),
                padded(self.bias),
                float(self.global_bias.detach().reshape(-1)[0]),
            )
            self._arrays = cached
        return cached
