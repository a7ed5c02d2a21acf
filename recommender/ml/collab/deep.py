"""What the feature-aware models (two-tower, GraphSAGE) share: side-feature handling, small MLPs,
checkpointable module state and the inductive (cold-start) API.

Vectors: both models end in L2-normalised "taste" (the profile as a swiper) and "appeal" (the
profile as a candidate) vectors; the raw score of (u, v) is the cosine ``taste_u . appeal_v``, so
P(u likes v) and P(v likes u) both come from one model (taste of one side, appeal of the other),
and appeal vectors go straight into a cosine HNSW index (:mod:`recommender.ml.ann`).

Inductive API (what serving calls for a profile the model never saw, without retraining):

* :meth:`InductiveModel.user_vectors` / :meth:`item_vectors`: stored vectors of known rows;
* ``embed_new(features, ...)`` (per model): (taste, appeal) of new profiles from their side
  features (and, for GraphSAGE, their first likes given and received);
* :meth:`InductiveModel.like_probability_vectors`: calibrated P(like) of aligned vector pairs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from recommender.ml.collab.base import FactorModel, FeatureScaling
from recommender.ml.collab.data import Interactions


def mlp(n_in: int, hidden: int, n_out: int) -> torch.nn.Sequential:
    """Linear -> ReLU -> Linear."""
    return torch.nn.Sequential(torch.nn.Linear(n_in, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, n_out))


def unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1, eps=1e-8)


def pack(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v.detach().clone() for k, v in module.state_dict().items()}


def unpack(prefix: str, module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    own = {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}
    module.load_state_dict(own)


class InductiveModel(FeatureScaling, FactorModel):
    """A :class:`FactorModel` whose taste/appeal rows come from a network over side features.

    taste:  [n_users, dim] unit rows; appeal: [n_items, dim] unit rows; bias: [n_items] zeros.
    feat_mean / feat_std: [f] the standardisation of the training features (f = 0: none).
    """

    # --- state: the factors, the feature scaling and every module's parameters -------------------

    def _modules(self) -> dict[str, torch.nn.Module]:
        raise NotImplementedError

    def _state(self) -> dict[str, torch.Tensor]:
        state = {**super()._state(), **self._scaling_state()}
        for prefix, module in self._modules().items():
            state.update(pack(prefix, module))
        return state

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        super()._load_state(state)
        self._load_scaling_state(state)

    def _load_modules(self, state: dict[str, torch.Tensor], *, built: bool, build: Callable[[], None]) -> None:
        """Load every module's parameters; a fresh object (a checkpoint being loaded) builds its
        modules first, with the config's seed and without disturbing the global RNG."""
        if not built:
            self._gen = torch.Generator().manual_seed(self.config.seed)
            with torch.random.fork_rng():
                build()
        for prefix, module in self._modules().items():
            unpack(prefix, module, state)
            module.eval()

    def _init_features(self, data: Interactions) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised [n_users, f] and [n_items, f] features of ``data`` (f = 0 without any)."""
        return self._fit_feature_scaling(data)

    def _needs_fallback(self, users: torch.Tensor) -> torch.Tensor:
        # With side features every profile has a vector of its own, history or not.
        if self.has_features:
            return torch.zeros(users.shape, dtype=torch.bool)
        return super()._needs_fallback(users)

    # --- the inductive API ---------------------------------------------------------------------

    def user_vectors(self, users: np.ndarray | list[int] | None = None) -> np.ndarray:
        """Taste vectors (as a swiper) of known rows, [n, dim] float32 unit rows."""
        self._check_fitted()
        t = self.taste if users is None else self.taste[torch.as_tensor(np.asarray(users, dtype=np.int64))]
        return t.numpy().copy()

    def item_vectors(self, items: np.ndarray | list[int] | None = None) -> np.ndarray:
        """Appeal vectors (as a candidate) of known rows, [n, dim] float32 unit rows: what goes into
        the HNSW index (cosine space)."""
        self._check_fitted()
        a = self.appeal if items is None else self.appeal[torch.as_tensor(np.asarray(items, dtype=np.int64))]
        return a.numpy().copy()

    def like_probability_vectors(self, taste: np.ndarray, appeal: np.ndarray) -> np.ndarray:
        """Calibrated P(like) of aligned (taste row, appeal row) pairs, [n] float64: the same
        probability :meth:`like_probability` gives known rows, for vectors from ``embed_new``."""
        taste = np.asarray(taste, dtype=np.float32)
        appeal = np.asarray(appeal, dtype=np.float32)
        if taste.shape != appeal.shape:
            raise ValueError("taste and appeal must be aligned [n, dim] arrays")
        a, b = self.calibration
        z = a * np.einsum("ij,ij->i", taste, appeal).astype(np.float64) + b
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))
