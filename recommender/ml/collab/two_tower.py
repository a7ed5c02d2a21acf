"""A two-tower retrieval model in PyTorch: a swiper tower and a candidate tower.

Each tower maps a profile to a unit vector from (a) an id embedding and (b) its side features
(profile attributes and the 384-d bio embedding, :mod:`.features`), through a small MLP:

    taste_u  = normalise(MLP_s([id_s(u) * known_u, x_u]))   # u as a swiper,    [dim]
    appeal_v = normalise(MLP_c([id_c(v) * known_v, x_v]))   # v as a candidate, [dim]
    score(u, v) = taste_u . appeal_v (cosine)

Training: every like (u, v) is a positive; the other likes' candidates in the batch are the
negatives (in-batch sampled softmax at temperature ``temperature``), with

* the **logQ correction** (Yi et al., RecSys 2019): in-batch negatives are drawn in proportion to
  how often a candidate is liked, so popular candidates are over-penalised; subtracting
  ``log q(v)`` (q = v's share of the likes) from each logit makes the softmax estimate the
  full-catalogue one;
* **passes as hard negatives**: ``hard_negatives`` of the swiper's own passes are extra columns
  of that row's softmax (profiles they saw and turned down: the finest taste signal there is);
* **id dropout**: each example's id embeddings are zeroed with probability ``id_dropout``, so the
  feature path learns to stand alone. At inference a profile without training interactions has
  a zero id part: new profiles are recommendable from their features alone (``embed_new``).

Superlikes weigh twice in the loss (their interaction weight). Without side features the towers
are plain id embeddings and users without history fall back to popularity, as for ALS/BPR.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from recommender.ml.collab.base import RecommenderConfig
from recommender.ml.collab.data import Interactions
from recommender.ml.collab.deep import InductiveModel, mlp, unit


@dataclass
class TwoTowerConfig(RecommenderConfig):
    dim: int = 64  # output vector size
    id_dim: int = 32  # id embedding size per tower (0 = features only, fully inductive)
    hidden: int = 128  # MLP hidden width
    temperature: float = 0.1
    learning_rate: float = 0.003
    weight_decay: float = 1e-6
    batch_size: int = 512
    epochs: int = 30
    logq_correction: bool = True
    hard_negatives: int = 1  # passes per example added as extra negatives (0 = none)
    id_dropout: float = 0.3


class TwoTower(InductiveModel):
    name = "two_tower"
    config_class = TwoTowerConfig
    config: TwoTowerConfig

    # --- modules ---------------------------------------------------------------------------------

    def _build(self, n_users: int, n_items: int, n_feat: int) -> None:
        cfg = self.config
        if cfg.id_dim <= 0 and n_feat == 0:
            raise ValueError("two_tower needs id embeddings (id_dim > 0) or side features")
        self._user_ids = torch.nn.Embedding(n_users, max(cfg.id_dim, 0))  # [n_users, id_dim]
        self._item_ids = torch.nn.Embedding(n_items, max(cfg.id_dim, 0))  # [n_items, id_dim]
        with torch.no_grad():
            self._user_ids.weight.normal_(0.0, 0.1, generator=self._gen)
            self._item_ids.weight.normal_(0.0, 0.1, generator=self._gen)
        self._user_tower = mlp(max(cfg.id_dim, 0) + n_feat, cfg.hidden, cfg.dim)
        self._item_tower = mlp(max(cfg.id_dim, 0) + n_feat, cfg.hidden, cfg.dim)

    def _modules(self) -> dict[str, torch.nn.Module]:
        return {
            "user_ids": self._user_ids,
            "item_ids": self._item_ids,
            "user_tower": self._user_tower,
            "item_tower": self._item_tower,
        }

    def _setup(self, data: Interactions) -> None:
        cfg = self.config
        self._gen = torch.Generator().manual_seed(cfg.seed)
        self._rng = np.random.default_rng(cfg.seed)
        self._uf, self._if = self._init_features(data)  # [n_users, f], [n_items, f] standardised
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed)  # Linear layers initialise from the global generator
            self._build(*data.shape, self._uf.shape[1])
        params = [p for m in self._modules().values() for p in m.parameters()]
        self._optimizer = torch.optim.Adam(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        self.user_known = torch.from_numpy(data.user_activity() > 0)  # [n_users]
        self.item_known = torch.from_numpy(np.diff(data.matrix.tocsc().indptr) > 0)  # [n_items]
        pos = data.positives().tocoo()
        self._pos_u = pos.row.astype(np.int64)
        self._pos_i = pos.col.astype(np.int64)
        self._pos_w = pos.data.astype(np.float32)
        counts = np.bincount(self._pos_i, minlength=data.shape[1]).astype(np.float64)
        self._log_q = torch.from_numpy(np.log(np.maximum(counts, 1.0) / max(counts.sum(), 1.0)).astype(np.float32))
        neg = data.negatives().tocsr()
        self._neg_indptr = neg.indptr.astype(np.int64)
        self._neg_items = neg.indices.astype(np.int64)
        self._refresh()

    # --- towers ----------------------------------------------------------------------------------

    def _tower(
        self, side: str, rows: torch.Tensor, features: torch.Tensor, id_keep: torch.Tensor | None
    ) -> torch.Tensor:
        """Unit vectors [len(rows), dim] of ``rows`` on one side; ``id_keep`` [len(rows)] zeroes
        id embeddings (cold rows, id dropout), None keeps them all."""
        ids, tower = (self._user_ids, self._user_tower) if side == "user" else (self._item_ids, self._item_tower)
        parts = []
        if ids.embedding_dim > 0:
            e = ids(rows)  # [b, id_dim]
            parts.append(e if id_keep is None else e * id_keep.unsqueeze(1).float())
        if features.shape[1] > 0:
            parts.append(features)  # [b, f]
        return unit(tower(torch.cat(parts, dim=1)))  # [b, dim]

    def _refresh(self) -> None:
        """Recompute the stored taste/appeal vectors of every row (eval mode, cold ids zeroed)."""
        with torch.no_grad():
            self.taste = self._encode("user", self._uf, self.user_known)
            self.appeal = self._encode("item", self._if, self.item_known)
            self.bias = torch.zeros(self.appeal.shape[0])

    def _encode(self, side: str, features: torch.Tensor, known: torch.Tensor, batch: int = 8192) -> torch.Tensor:
        n = known.numel()
        out = [
            self._tower(side, torch.arange(s, min(n, s + batch)), features[s : s + batch], known[s : s + batch])
            for s in range(0, n, batch)
        ]
        return torch.cat(out) if out else torch.zeros(0, self.config.dim)

    # --- training --------------------------------------------------------------------------------

    def _hard_negatives(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[b, h] pass items of each user (sampled with replacement) and [b, h] validity."""
        h = self.config.hard_negatives
        n_pass = self._neg_indptr[users + 1] - self._neg_indptr[users]  # [b]
        pick = (self._rng.random((users.size, h)) * np.maximum(n_pass, 1)[:, None]).astype(np.int64)
        items = self._neg_items[np.minimum(self._neg_indptr[users][:, None] + pick, max(self._neg_items.size - 1, 0))]
        valid = np.broadcast_to((n_pass > 0)[:, None], items.shape)
        return items, valid

    def _epoch(self, data: Interactions, epoch: int) -> float:
        cfg = self.config
        n_pos = self._pos_u.size
        if n_pos == 0:
            return 0.0
        for m in self._modules().values():
            m.train()
        order = self._rng.permutation(n_pos)
        drop = cfg.id_dropout if self.has_features else 0.0
        total, weight = 0.0, 0.0
        for s in range(0, n_pos, cfg.batch_size):
            idx = order[s : s + cfg.batch_size]
            b = idx.size
            u_np, i_np = self._pos_u[idx], self._pos_i[idx]
            u, i = torch.from_numpy(u_np), torch.from_numpy(i_np)
            w = torch.from_numpy(self._pos_w[idx])  # [b]
            keep_u = torch.rand(b, generator=self._gen) >= drop
            keep_i = torch.rand(b, generator=self._gen) >= drop
            tu = self._tower("user", u, self._uf[u], keep_u)  # [b, dim]
            ai = self._tower("item", i, self._if[i], keep_i)  # [b, dim]
            logits = tu @ ai.T / cfg.temperature  # [b, b]: row = swiper, column = candidate
            if cfg.logq_correction:
                logits = logits - self._log_q[i].unsqueeze(0)
            # A candidate liked by two swipers of the batch is not a negative of either.
            same = (i.unsqueeze(0) == i.unsqueeze(1)) & ~torch.eye(b, dtype=torch.bool)
            logits = logits.masked_fill(same, -torch.inf)
            if cfg.hard_negatives > 0 and self._neg_items.size:
                h_np, valid = self._hard_negatives(u_np)  # [b, h]
                h = torch.from_numpy(h_np)
                ah = self._tower("item", h.reshape(-1), self._if[h.reshape(-1)], None).reshape(b, -1, cfg.dim)
                hard = (tu.unsqueeze(1) * ah).sum(-1) / cfg.temperature  # [b, h]
                logits = torch.cat([logits, hard.masked_fill(~torch.from_numpy(valid.copy()), -torch.inf)], dim=1)
            loss_each = F.cross_entropy(logits, torch.arange(b), reduction="none")  # [b]
            loss = (w * loss_each).sum() / w.sum()
            self._optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self._optimizer.step()
            total += float(loss.item()) * float(w.sum())
            weight += float(w.sum())
        for m in self._modules().values():
            m.eval()
        self._refresh()
        return total / weight

    # --- state -----------------------------------------------------------------------------------

    def _state(self) -> dict[str, torch.Tensor]:
        return {**super()._state(), "user_known": self.user_known, "item_known": self.item_known}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        super()._load_state(state)
        self.user_known = state["user_known"].bool().clone()
        self.item_known = state["item_known"].bool().clone()
        self._load_modules(
            state,
            built=hasattr(self, "_user_tower"),
            build=lambda: self._build(self.n_users, self.n_items, self.feat_mean.numel()),
        )

    # --- inductive -------------------------------------------------------------------------------

    def embed_new(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(taste, appeal) [m, dim] unit vectors of profiles the model never saw, from their side
        features alone ([m, f], the :func:`.features.profile_feature_matrix` layout): no history,
        no retraining. Score them with :meth:`like_probability_vectors`."""
        self._check_fitted()
        if not self.has_features:
            raise ValueError("this two_tower model was trained without side features")
        x = self._standardise(features)
        cold = torch.zeros(x.shape[0], dtype=torch.bool)
        rows = torch.zeros(x.shape[0], dtype=torch.int64)  # any row: its id part is zeroed
        with torch.no_grad():
            taste = self._tower("user", rows, x, cold)
            appeal = self._tower("item", rows, x, cold)
        return taste.numpy(), appeal.numpy()
