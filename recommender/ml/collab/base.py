"""The one interface every collaborative recommender implements, and its checkpoints.

A recommender works on dense indices (rows = users, columns = items; for dating both are
profiles over one shared id map, see :mod:`.data`). Subclasses implement five hooks
(``_setup``, ``_epoch``, ``_state``/``_load_state`` and ``_score_rows``/``_score_pairs``); the base
class owns everything that must behave the same for every model:

* ``fit`` runs the epochs with a tqdm bar and early stopping on a validation callback (the best
  epoch's weights are restored), then calibrates scores to like probabilities (Platt scaling on
  the training swipes: likes against passes);
* ``score_pairs`` / ``like_probability`` / ``reciprocal_scores`` (dating: fuse both directions);
* ``recommend`` scores users in batches against every item, never returning an excluded item;
* users without training interactions fall back to item popularity (a model knows nothing
  else about them), in scoring and in recommending alike, unless the model can place them
  from side features (``_needs_fallback``: the two-tower and GraphSAGE models with features);
* ``save`` writes one torch checkpoint holding the config dataclass, the tensors and the
  calibration; :func:`.catalog.load_recommender` restores any model from it (``weights_only`` loading:
  a checkpoint cannot run code).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from tqdm import tqdm

from recommender.ml.collab.data import Interactions
from recommender.ml.fusion import fuse

CHECKPOINT_FORMAT = "patra.collab/1"


@dataclass
class RecommenderConfig:
    """Settings shared by every model; subclasses add their own fields."""

    seed: int = 0
    epochs: int = 10
    patience: int = 3  # epochs without a validation gain before stopping
    min_delta: float = 1e-4  # a gain smaller than this does not count
    calibration_samples: int = 200_000  # pairs per class for Platt scaling
    # torch intra-op threads while fitting (0 = leave torch's setting). On a busy 2-core box,
    # OpenMP threads spinning against other processes made training 10x slower than 1 thread.
    threads: int = 0


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    validation: float | None


class Recommender(ABC):
    """Base class: subclasses set ``name`` and ``config_class`` and implement the hooks."""

    name: ClassVar[str]
    config_class: ClassVar[type[RecommenderConfig]] = RecommenderConfig

    def __init__(self, config: RecommenderConfig | None = None) -> None:
        self.config = config if config is not None else self.config_class()
        if not isinstance(self.config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}")
        self.n_users = 0
        self.n_items = 0
        self.shared = False
        self.calibration = (1.0, 0.0)  # like probability = sigmoid(a * score + b)
        self.popularity = torch.zeros(0)  # [n_items] summed positive weight received
        self.user_activity = torch.zeros(0, dtype=torch.int64)  # [n_users] train interactions
        self.history: list[EpochRecord] = []
        self.best_epoch: int | None = None
        self.fitted = False

    # --- hooks -----------------------------------------------------------------------------

    @abstractmethod
    def _setup(self, data: Interactions) -> None:
        """Allocate and seed the parameters for ``data``'s shape."""

    @abstractmethod
    def _epoch(self, data: Interactions, epoch: int) -> float:
        """One pass over the data; returns the training loss (nan if the model has none)."""

    @abstractmethod
    def _state(self) -> dict[str, torch.Tensor]:
        """The learnt tensors (what a checkpoint stores)."""

    @abstractmethod
    def _load_state(self, state: dict[str, torch.Tensor]) -> None: ...

    @abstractmethod
    def _score_rows(self, users: torch.Tensor) -> torch.Tensor:
        """Raw scores of ``users`` against every item, [len(users), n_items] float32."""

    @abstractmethod
    def _score_pairs(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Raw scores of aligned (user, item) pairs, [n] float32."""

    # --- training --------------------------------------------------------------------------

    def fit(
        self,
        data: Interactions,
        *,
        validate: Any = None,
        progress: bool = False,
    ) -> list[EpochRecord]:
        """Train on ``data``. ``validate(model) -> float`` (higher is better, e.g. NDCG@10 on
        a validation split) is called after each epoch; training stops after ``patience``
        epochs without a gain and the best epoch's weights are kept."""
        cfg = self.config
        self.n_users, self.n_items = data.shape
        self.shared = data.shared
        pos = data.positives()
        self.popularity = torch.from_numpy(np.asarray(pos.sum(axis=0)).reshape(-1).astype(np.float32))
        self.user_activity = torch.from_numpy(data.user_activity().astype(np.int64))
        self.history = []
        previous_threads = torch.get_num_threads()
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        try:
            self._fit(data, validate, progress)
        finally:
            torch.set_num_threads(previous_threads)
        return self.history

    def _fit(self, data: Interactions, validate: Any, progress: bool) -> None:
        cfg = self.config
        self._setup(data)
        self.fitted = True  # parameters exist: the validation callback may score from here on
        best, best_state, bad = -math.inf, None, 0
        bar = tqdm(range(cfg.epochs), desc=f"train {self.name}", unit="epoch", disable=not progress, leave=False)
        for epoch in bar:
            loss = float(self._epoch(data, epoch))
            score = float(validate(self)) if validate is not None else None
            self.history.append(EpochRecord(epoch=epoch, loss=loss, validation=score))
            bar.set_postfix(loss=f"{loss:.4g}", val=f"{score:.4f}" if score is not None else "-")
            if score is None:
                continue
            if score > best + cfg.min_delta:
                best, bad, self.best_epoch = score, 0, epoch
                best_state = {k: v.detach().clone() for k, v in self._state().items()}
            else:
                bad += 1
                if bad >= cfg.patience:
                    break
        bar.close()
        if best_state is not None:
            self._load_state(best_state)
        else:
            self.best_epoch = len(self.history) - 1
        self._calibrate(data)

    def _calibrate(self, data: Interactions) -> None:
        """Platt scaling: fit (a, b) so that sigmoid(a * score + b) predicts a like.

        Passes are the negatives (the like rate among profiles actually shown is what the
        feed needs); without any pass, random pairs stand in for them.
        """
        rng = np.random.default_rng(self.config.seed + 7919)
        n = self.config.calibration_samples

        def sample(m: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
            coo = m.tocoo()
            take = rng.choice(coo.nnz, size=min(n, coo.nnz), replace=False) if coo.nnz > n else slice(None)
            return coo.row[take].astype(np.int64), coo.col[take].astype(np.int64)

        pu, pi = sample(data.positives())
        if pu.size == 0 or self.n_items == 0:
            self.calibration = (1.0, 0.0)
            return
        neg = data.negatives()
        if neg.nnz:
            nu, ni = sample(neg)
        else:
            nu = rng.choice(pu, size=pu.size)
            ni = rng.integers(0, self.n_items, size=pu.size)
        users = np.concatenate([pu, nu])
        items = np.concatenate([pi, ni])
        y = np.concatenate([np.ones(pu.size), np.zeros(nu.size)])
        s = self.score_pairs(users, items).astype(np.float64)
        self.calibration = platt_fit(s, y)

    # --- scoring ---------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError(f"{self.name} is not fitted")

    def _needs_fallback(self, users: torch.Tensor) -> torch.Tensor:
        """[len(users)] bool: users the model knows nothing about, served by popularity. By
        default those without training interactions; a model that can score a user from side
        features (two-tower, GraphSAGE) narrows this down."""
        return self.user_activity[users] == 0

    def knows_users(self, users: np.ndarray | list[int]) -> np.ndarray:
        """[len(users)] bool: users the model scores itself (not by the popularity fallback)."""
        self._check_fitted()
        return ~self._needs_fallback(torch.as_tensor(np.asarray(users, dtype=np.int64))).numpy()

    def _popularity_score(self) -> torch.Tensor:
        return torch.log1p(self.popularity.clamp_min(0.0))  # [n_items]

    def score_pairs(self, users: np.ndarray | list[int], items: np.ndarray | list[int]) -> np.ndarray:
        """Raw scores of aligned pairs, [n] float32 (higher = more likely to like)."""
        self._check_fitted()
        u = torch.as_tensor(np.asarray(users, dtype=np.int64))
        i = torch.as_tensor(np.asarray(items, dtype=np.int64))
        if u.shape != i.shape:
            raise ValueError("users and items must have the same length")
        with torch.no_grad():
            out = self._score_pairs(u, i).float()
            cold = self._needs_fallback(u)
            if cold.any():
                out[cold] = self._popularity_score()[i[cold]]
        return out.numpy()

    def pair_log_odds(self, users: np.ndarray | list[int], items: np.ndarray | list[int]) -> np.ndarray:
        """(n,) calibrated log-odds that ``users[k]`` likes ``items[k]``, float64; NaN where the
        model cannot say: an index of -1 (a profile it never saw) or a user it knows nothing
        about (its popularity fallback ranks items but is not a probability). Models that can
        answer for anyone (``lmf``) override this."""
        u = np.asarray(users, dtype=np.int64)
        i = np.asarray(items, dtype=np.int64)
        out = np.full(len(u), np.nan)
        ok = (u >= 0) & (i >= 0)
        ok[ok] = self.knows_users(u[ok])
        if ok.any():
            p = np.clip(self.like_probability(u[ok], i[ok]), 1e-6, 1 - 1e-6)
            out[ok] = np.log(p / (1 - p))
        return out

    def like_probability(self, users: np.ndarray | list[int], items: np.ndarray | list[int]) -> np.ndarray:
        """Calibrated P(user likes item), [n] float64 in [0, 1]."""
        a, b = self.calibration
        z = a * self.score_pairs(users, items).astype(np.float64) + b
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))

    def reciprocal_scores(self, user: int, candidates: np.ndarray | list[int], method: str = "harmonic") -> np.ndarray:
        """Fused score of ``user`` with each candidate: both P(u likes v) and P(v likes u) come
        from the model (taste of one side times appeal of the other), then
        :func:`recommender.ml.fusion.fuse`. Needs users and items on one shared id map."""
        if not self.shared:
            raise ValueError("reciprocal scores need users and items to share one id map (dating data)")
        cands = np.asarray(candidates, dtype=np.int64)
        u = np.full(cands.shape, int(user), dtype=np.int64)
        return fuse(self.like_probability(u, cands), self.like_probability(cands, u), method)

    def recommend(
        self,
        users: np.ndarray | list[int],
        k: int = 10,
        *,
        exclude: sp.csr_matrix | None = None,
        candidates: np.ndarray | None = None,
        batch_size: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items per user: (items [n, k] int64, scores [n, k] float32), best first.

        ``exclude`` is a CSR [n_users, n_items] whose non-zeros are never returned (train
        interactions); ``candidates`` limits the catalogue. With a shared id map a profile is
        never recommended to itself. Slots beyond the available items are -1 / -inf. Users are
        scored in batches so memory stays at batch_size x n_items floats.
        """
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64)
        k = int(k)
        if batch_size is None:
            batch_size = max(1, min(4096, 8_000_000 // max(1, self.n_items)))
        allowed = None
        if candidates is not None:
            allowed = torch.zeros(self.n_items, dtype=torch.bool)
            allowed[torch.as_tensor(np.asarray(candidates, dtype=np.int64))] = True
        ex = exclude.tocsr() if exclude is not None else None
        pop = self._popularity_score()
        out_items = np.full((users.size, k), -1, dtype=np.int64)
        out_scores = np.full((users.size, k), -np.inf, dtype=np.float32)
        kk = min(k, self.n_items)
        if kk == 0:
            return out_items, out_scores
        with torch.no_grad():
            for start in range(0, users.size, batch_size):
                batch = users[start : start + batch_size]
                ub = torch.as_tensor(batch)
                scores = self._score_rows(ub).float()  # [b, n_items]
                cold = self._needs_fallback(ub)
                if cold.any():
                    scores[cold] = pop
                if allowed is not None:
                    scores[:, ~allowed] = -torch.inf
                if ex is not None:
                    sub = ex[batch]
                    rows = np.repeat(np.arange(batch.size), np.diff(sub.indptr))
                    scores[torch.as_tensor(rows), torch.as_tensor(sub.indices.astype(np.int64))] = -torch.inf
                if self.shared:
                    scores[torch.arange(batch.size), ub] = -torch.inf
                top_scores, top_items = torch.topk(scores, kk, dim=1)  # sorted, best first
                top_items[torch.isneginf(top_scores)] = -1
                out_items[start : start + batch.size, :kk] = top_items.numpy()
                out_scores[start : start + batch.size, :kk] = top_scores.numpy()
        return out_items, out_scores

    # --- checkpoints -----------------------------------------------------------------------

    def save(self, path: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
        """One file: format, model name, config dataclass, tensors, calibration, history and
        ``extra`` (JSON-like: id maps, data references)."""
        self._check_fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        checkpoint = {
            "format": CHECKPOINT_FORMAT,
            "model": self.name,
            "config": asdict(self.config),
            "state": {
                **{k: v.detach().contiguous() for k, v in self._state().items()},
                "_popularity": self.popularity,
                "_user_activity": self.user_activity,
            },
            "meta": {
                "n_users": self.n_users,
                "n_items": self.n_items,
                "shared": self.shared,
                "calibration": list(self.calibration),
                "best_epoch": self.best_epoch,
                "history": [asdict(r) for r in self.history],
            },
            "extra": extra or {},
        }
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(checkpoint, tmp)
        tmp.replace(path)  # never a half-written checkpoint under the final name
        return path


def platt_fit(scores: np.ndarray, labels: np.ndarray, iterations: int = 50, l2: float = 1e-6) -> tuple[float, float]:
    """(a, b) minimising the logistic loss of sigmoid(a * s + b) against labels (Newton)."""
    mean, std = float(scores.mean()), float(scores.std())
    if not np.isfinite(std) or std < 1e-12:
        rate = float(np.clip(labels.mean(), 1e-6, 1 - 1e-6))
        return 0.0, math.log(rate / (1 - rate))
    x = np.stack([(scores - mean) / std, np.ones_like(scores)], axis=1)  # [n, 2]
    w = np.zeros(2)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -50, 50)))
        grad = x.T @ (p - labels) / len(labels) + l2 * w
        hess = (x * (p * (1 - p))[:, None]).T @ x / len(labels) + l2 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    a = w[0] / std
    return float(a), float(w[1] - a * mean)


def config_from_dict(config_class: type[RecommenderConfig], values: dict[str, Any]) -> RecommenderConfig:
    """A config dataclass from a dict, refusing unknown keys (a typo must not pass silently)."""
    known = {f.name for f in fields(config_class)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown {config_class.__name__} fields: {sorted(unknown)}; known: {sorted(known)}")
    return config_class(**values)


class FeatureScaling:
    """Side-feature standardisation shared by the models that read features (ALS's collective-MF
    term, two-tower, GraphSAGE): mean and standard deviation of the training rows, stored in the
    checkpoint so new profiles are scaled the same way.

    feat_mean / feat_std: [f] (f = 0: the model was fitted without features).
    """

    feat_mean: torch.Tensor = torch.zeros(0)
    feat_std: torch.Tensor = torch.ones(0)

    def _fit_feature_scaling(self, data: Interactions, *, use: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised [n_users, f] and [n_items, f] features of ``data``; [n, 0] without any
        (or when ``use`` is false)."""
        if not use or data.user_features is None or data.item_features is None:
            self.feat_mean, self.feat_std = torch.zeros(0), torch.ones(0)
            return torch.zeros(data.shape[0], 0), torch.zeros(data.shape[1], 0)
        uf = torch.from_numpy(np.asarray(data.user_features, dtype=np.float32))
        itf = torch.from_numpy(np.asarray(data.item_features, dtype=np.float32))
        both = uf if data.shared else torch.cat([uf, itf])
        self.feat_mean = both.mean(dim=0)
        self.feat_std = both.std(dim=0).clamp_min(1e-3)  # constant columns stay 0 after scaling
        return self._standardise(uf), self._standardise(itf)

    def _standardise(self, features: torch.Tensor | np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(features, dtype=np.float32))
        if x.ndim != 2 or x.shape[1] != self.feat_mean.numel():
            raise ValueError(f"features must be [n, {self.feat_mean.numel()}], got {tuple(x.shape)}")
        return (x - self.feat_mean) / self.feat_std

    @property
    def has_features(self) -> bool:
        return self.feat_mean.numel() > 0

    def _scaling_state(self) -> dict[str, torch.Tensor]:
        return {"feat_mean": self.feat_mean, "feat_std": self.feat_std}

    def _load_scaling_state(self, state: dict[str, torch.Tensor]) -> None:
        # absent from checkpoints of models fitted without features (and from older ALS ones)
        self.feat_mean = state.get("feat_mean", torch.zeros(0)).float().clone()
        self.feat_std = state.get("feat_std", torch.ones(0)).float().clone()


class FactorModel(Recommender):
    """A model scoring ``taste[u] . appeal[i] + bias[i]``.

    taste:  [n_users, factors] what user u likes;
    appeal: [n_items, factors] who likes item i;
    bias:   [n_items] (zeros when the model has none).
    For dating, P(u likes v) = sigmoid(a * taste_u . appeal_v + b) and P(v likes u) likewise
    from taste_v and appeal_u: one model gives both directions of the pair.
    """

    taste: torch.Tensor
    appeal: torch.Tensor
    bias: torch.Tensor

    def _state(self) -> dict[str, torch.Tensor]:
        return {"taste": self.taste, "appeal": self.appeal, "bias": self.bias}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.taste = state["taste"].float().clone()
        self.appeal = state["appeal"].float().clone()
        self.bias = state["bias"].float().clone()

    def _score_rows(self, users: torch.Tensor) -> torch.Tensor:
        return self.taste[users] @ self.appeal.T + self.bias  # [b, n_items]

    def _score_pairs(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (self.taste[users] * self.appeal[items]).sum(dim=1) + self.bias[items]  # [n]
