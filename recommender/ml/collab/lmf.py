"""Logistic matrix factorisation with both-side biases and learned pair features, for swipes.

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
* ``pair_weights . x(u, i)`` (with pair records, ``LMFConfig.pair_features``): learned
  coefficients on features of the *pair* (:mod:`.pairs`: the same value of each lifestyle
  field but ethnicity; shared interests; distance; age gap). Biases and a
  low-rank product need many swipes per profile to learn "people like people like them"; one
  coefficient per feature learns it from every swipe at once, and it applies to pairs that never
  met, which are all the pairs a feed ranks. With ``pair_user_regularization`` > 0 each swiper
  also gets a deviation from the shared coefficients (how much *this* user cares about religion),
  shrunk towards zero by that L2 weight.
* ``swiper_prior . g(u) + candidate_prior . g(v)`` (``LMFConfig.profile_priors``, with pair
  records): learned selectivity and appeal by observable profile group (gender one-hot, age;
  :meth:`.pairs.PairRecords.priors`). The per-profile biases are then deviations from the
  group's level, so a profile with few or no swipes is shrunk towards its group, not towards the
  tenant-wide average. This matters most for P(v likes u): a woman without swipes in a population
  where women like one profile in ten, read as average, looks several times likelier to like
  back than she is.

Both directions of a pair come from one model: P(u likes v) = sigmoid(taste_u . appeal_v +
user_bias_u + bias_v + w . x(u, v)) and P(v likes u) from taste_v, appeal_u, the swapped biases
and x(v, u). Rows and columns share one id map for dating data, so a profile's ``user_bias`` and
``bias`` sit at the same index. A profile without training swipes has zero parameters: its
selectivity is the tenant's average (``global_bias``), its appeal average; its pair features
still count when the training data carried its record (the train pipeline attaches records for
every profile of the tenant). A profile the model never saw (row -1) has no record: zero pair
features.

Pair records come in as the training data's side features (``Interactions.with_features`` of
:func:`.pairs.pair_profile_matrix` rows); they are stored in the checkpoint in compact form, so
serving needs nothing but the model. They are the profiles as they were at training time: a
profile edited since is scored with its old record until the next training.

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
from recommender.ml.collab.pairs import PAIR_FEATURES, PRIOR_FEATURES, RECORD_WIDTH, PairRecords

_TRAINED = (
    "taste",
    "appeal",
    "bias",
    "user_bias",
    "global_bias",
    "pair_weights",
    "pair_user",
    "swiper_prior",
    "candidate_prior",
)
_RECORDS = ("pair_codes", "pair_geo", "pair_interests")


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
    # learn coefficients on pair features when the data carries pair records (``.pairs``)
    pair_features: bool = True
    pair_regularization: float = 1e-4  # L2 on the shared pair coefficients, per batch
    # L2 on each swiper's deviation from the shared coefficients, per swipe (0: no deviations)
    pair_user_regularization: float = 0.0
    # learn selectivity and appeal by profile group (gender, age) when the data carries records
    profile_priors: bool = True


@dataclass
class _Serving:
    """numpy copies for serving; every per-profile array has a zero row appended (row -1)."""

    taste: np.ndarray  # [n + 1, f]
    appeal: np.ndarray  # [n + 1, f]
    user_bias: np.ndarray  # [n + 1]
    bias: np.ndarray  # [n + 1]
    base: float
    pair_weights: np.ndarray  # [p] (p = 0 without pair features)
    pair_user: np.ndarray  # [n + 1, p] or [n + 1, 0] without per-user deviations


class LogisticMF(FactorModel):
    name = "lmf"
    config_class = LMFConfig
    config: LMFConfig
    # early stopping on the AUC of likes against passes (``evaluation.validation_like_auc``):
    # catalogue NDCG measures exposure, which this model does not learn
    validation_metric: ClassVar[str] = "like_auc"
    # searched by recommender.ml.collab.tuning (the defaults first): how much the per-profile
    # parameters may move is what small tenants need tuned most
    search_space: ClassVar[dict[str, list[Any]]] = {
        "bias_regularization": [0.05, 0.01, 0.2, 1.0],
        "regularization": [2.0, 0.5, 8.0],
        "factors": [16, 4, 32],
        "learning_rate": [0.05, 0.02],
    }

    user_bias: torch.Tensor  # [n_users]
    global_bias: torch.Tensor  # [1]
    pair_weights: torch.Tensor = torch.zeros(0)  # [p] shared pair coefficients
    pair_user: torch.Tensor = torch.zeros(0, 0)  # [n_users, p] per-swiper deviations, or [0, 0]
    swiper_prior: torch.Tensor = torch.zeros(0)  # [g] selectivity by prior feature, or [0]
    candidate_prior: torch.Tensor = torch.zeros(0)  # [g] appeal by prior feature, or [0]
    records: PairRecords | None = None
    _arrays: _Serving | None = None

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
        params = [self.taste, self.appeal, self.user_bias, self.bias, self.global_bias]
        params += self._setup_pairs(data)
        self._optimizer = torch.optim.Adam(params, lr=cfg.learning_rate)

    def _setup_pairs(self, data: Interactions) -> list[torch.Tensor]:
        """Pair records from the data's side features, the training swipes' pair features and
        the pair parameters (none without records)."""
        cfg = self.config
        self.records, self._pair_x, self._priors = None, None, None
        self.pair_weights, self.pair_user = torch.zeros(0), torch.zeros(0, 0)
        self.swiper_prior, self.candidate_prior = torch.zeros(0), torch.zeros(0)
        if not (cfg.pair_features or cfg.profile_priors) or data.user_features is None:
            return []
        if not data.shared or data.user_features.shape[1] != RECORD_WIDTH:
            raise ValueError(
                f"lmf pair features need pair records ({RECORD_WIDTH} columns, pairs.pair_profile_matrix) on a "
                f"shared id map; got {data.user_features.shape[1]} columns (set pair_features=false otherwise)"
            )
        self.records = PairRecords.from_matrix(data.user_features)
        params: list[torch.Tensor] = []
        if cfg.profile_priors:
            self._priors = torch.from_numpy(self.records.priors())  # [n, g]
            self.swiper_prior = torch.zeros(len(PRIOR_FEATURES), requires_grad=True)
            self.candidate_prior = torch.zeros(len(PRIOR_FEATURES), requires_grad=True)
            params += [self.swiper_prior, self.candidate_prior]
        if cfg.pair_features:
            self._pair_x = torch.from_numpy(self.records.pairs(self._users, self._items))  # [nnz, p]
            self.pair_weights = torch.zeros(len(PAIR_FEATURES), requires_grad=True)
            params.append(self.pair_weights)
            if cfg.pair_user_regularization > 0:
                self.pair_user = torch.zeros(data.shape[0], len(PAIR_FEATURES), requires_grad=True)
                params.append(self.pair_user)
        return params

    @property
    def has_pairs(self) -> bool:
        return self.records is not None and self.pair_weights.numel() > 0

    @property
    def has_pair_user(self) -> bool:
        return self.has_pairs and self.pair_user.numel() > 0

    @property
    def has_priors(self) -> bool:
        return self.records is not None and self.swiper_prior.numel() > 0

    def _prior_biases(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(selectivity prior [n_users], appeal prior [n_items]) from the profiles' prior
        features; zeros without priors."""
        if not self.has_priors:
            return torch.zeros(self.n_users), torch.zeros(self.n_items)
        priors = torch.from_numpy(self.records.priors())  # type: ignore[union-attr]  # [n, g]
        return priors @ self.swiper_prior.detach(), priors @ self.candidate_prior.detach()

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
            reg = (cfg.regularization * (tu.pow(2).sum() + ai.pow(2).sum())) / idx.size
            reg = reg + cfg.bias_regularization * (bu.pow(2).sum() + bi.pow(2).sum()) / idx.size
            if self.has_priors:
                assert self._priors is not None  # set with has_priors
                logits = logits + self._priors[u] @ self.swiper_prior + self._priors[i] @ self.candidate_prior
                priors_l2 = self.swiper_prior.pow(2).sum() + self.candidate_prior.pow(2).sum()
                reg = reg + cfg.pair_regularization * priors_l2
            if self.has_pairs:
                assert self._pair_x is not None  # set with has_pairs
                x = self._pair_x[torch.from_numpy(idx)]  # [b, p]
                logits = logits + x @ self.pair_weights
                reg = reg + cfg.pair_regularization * self.pair_weights.pow(2).sum()
                if self.has_pair_user:
                    du = self.pair_user[u]  # [b, p]
                    logits = logits + (x * du).sum(dim=1)
                    reg = reg + cfg.pair_user_regularization * du.pow(2).sum() / idx.size
            loss = (w * F.binary_cross_entropy_with_logits(logits, y, reduction="none")).sum() / w.sum()
            self._optimizer.zero_grad(set_to_none=True)
            (loss + reg).backward()
            self._optimizer.step()
            total += loss.item() * idx.size
        self._arrays = None  # parameters moved: the serving arrays are stale
        return total / n

    def fit(self, data: Interactions, *, validate: Any = None, progress: bool = False) -> list[EpochRecord]:
        history = super().fit(data, validate=validate, progress=progress)
        # Training is over: keep plain tensors (no autograd graph, no optimiser state).
        for name in _TRAINED:
            setattr(self, name, getattr(self, name).detach().clone())
        del self._optimizer
        self._pair_x = self._priors = None
        self._arrays = None
        return history

    # --- state ---------------------------------------------------------------------------------

    def _state(self) -> dict[str, torch.Tensor]:
        state = {name: getattr(self, name).detach() for name in _TRAINED}
        if self.records is not None:
            r = self.records
            state["pair_codes"] = torch.from_numpy(r.codes.astype(np.int32))
            geo = np.column_stack([r.gender.astype(np.float64), r.age.astype(np.float64), r.lat, r.lon])
            state["pair_geo"] = torch.from_numpy(geo)  # [n, 4]: gender code, age, lat, lon (radians)
            state["pair_interests"] = torch.from_numpy(r.interests.view(np.int64).copy())
        return state

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self._arrays = None
        training = hasattr(self, "_optimizer")  # restoring the best epoch mid-fit
        with torch.no_grad():
            for name in _TRAINED:
                if name not in state:  # a checkpoint from before pair features
                    setattr(self, name, torch.zeros(0, 0) if name == "pair_user" else torch.zeros(0))
                    continue
                value = state[name].float()
                if training:
                    getattr(self, name).copy_(value)
                else:
                    setattr(self, name, value.clone())
        if training:
            return  # the records do not change while fitting
        self.records = None
        if all(name in state for name in _RECORDS):
            geo = state["pair_geo"].double().numpy()
            interests = state["pair_interests"].numpy().astype(np.int64).view(np.uint64)
            self.records = PairRecords(
                codes=state["pair_codes"].numpy().astype(np.int32),
                gender=geo[:, 0].astype(np.int8),
                age=geo[:, 1].astype(np.float32),
                lat=geo[:, 2].copy(),
                lon=geo[:, 3].copy(),
                interests=np.ascontiguousarray(interests),
                interest_count=np.bitwise_count(interests).sum(axis=1).astype(np.float64),
            )

    # --- scoring -------------------------------------------------------------------------------

    def _pair_term(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(n,) float64 pair-feature log-odds of aligned pairs (zeros without pair features)."""
        if not self.has_pairs:
            return np.zeros(len(users))
        s = self._serving_arrays()
        x = self.records.pairs(users, items).astype(np.float64)  # type: ignore[union-attr]  # [n, p]
        term = x @ s.pair_weights
        if s.pair_user.shape[1]:
            term = term + np.einsum("np,np->n", x, s.pair_user[np.asarray(users, dtype=np.int64)])
        return term

    def _score_rows(self, users: torch.Tensor) -> torch.Tensor:
        taste, appeal = self.taste.detach(), self.appeal.detach()
        rows = taste[users] @ appeal.T + self.bias.detach()  # [b, n_items]
        rows = rows + (self.user_bias.detach()[users] + self.global_bias.detach()).unsqueeze(1)
        if self.has_priors:
            swiper, candidate = self._prior_biases()
            rows = rows + swiper[users].unsqueeze(1) + candidate.unsqueeze(0)
        if self.has_pairs:
            # one user at a time: [n_items, p] features per user, never [b, n_items, p]
            extra = np.stack([self._pair_row(int(u))[0][: self.n_items] for u in users.tolist()])
            rows = rows + torch.from_numpy(extra.astype(np.float32))
        return rows

    def _score_pairs(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self._logits(users, items)

    def _logits(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Raw logits of aligned pairs, [n]; index -1 (a profile the model never saw) has zero
        parameters, i.e. the average selectivity or appeal, and no pair features."""
        known_u, known_i = users >= 0, items >= 0
        u, i = users.clamp_min(0), items.clamp_min(0)
        taste = self.taste.detach()[u] * known_u.unsqueeze(1)  # [n, f]
        appeal = self.appeal.detach()[i] * known_i.unsqueeze(1)  # [n, f]
        bu = self.user_bias.detach()[u] * known_u
        bi = self.bias.detach()[i] * known_i
        out = (taste * appeal).sum(dim=1) + bu + bi + self.global_bias.detach()
        if self.has_priors:
            swiper, candidate = self._prior_biases()
            out = out + swiper[u] * known_u + candidate[i] * known_i
        if self.has_pairs:
            out = out + torch.from_numpy(self._pair_term(users.numpy(), items.numpy()).astype(np.float32))
        return out

    def pair_logits(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Calibrated log-odds that ``users[k]`` likes ``items[k]``, [n] float64.

        Unlike :meth:`score_pairs`, a user without training swipes is not replaced by item
        popularity: their selectivity is taken as average (zero bias) and the candidate's appeal
        still counts, which is what P(v likes u) needs for a candidate v who has not swiped yet.
        Indices may be -1 for profiles the model never saw. numpy on cached arrays: this runs
        in every feed request, where torch's per-call overhead would dominate.
        """
        s = self._serving_arrays()
        u = np.asarray(users, dtype=np.int64)
        i = np.asarray(items, dtype=np.int64)
        # row -1 (unseen) reads the zero row appended at the end of each array
        z = np.einsum("nf,nf->n", s.taste[u], s.appeal[i]) + s.user_bias[u] + s.bias[i]  # [n]
        z = z.astype(np.float64) + self._pair_term(u, i)
        a, b = self.calibration
        return a * (z + s.base) + b

    def pair_log_odds(self, users: np.ndarray | list[int], items: np.ndarray | list[int]) -> np.ndarray:
        """:meth:`pair_logits`: this model answers for every pair, cold profiles included."""
        return self.pair_logits(np.asarray(users), np.asarray(items))

    def _pair_row(self, row: int, cols: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(pair log-odds of row liking each column, of each column liking row), each [n_items]
        (or [len(cols)]) float64; zeros without pair features or for row -1."""
        n = self.n_items
        m = n if cols is None else len(cols)
        if not self.has_pairs or row < 0:
            return np.zeros(m), np.zeros(m)
        s = self._serving_arrays()
        if not s.pair_user.shape[1]:  # the shared coefficients alone: no [n, p] matrix needed
            if cols is not None:
                return self.records.linear_against_all(row, s.pair_weights, cols)  # type: ignore[union-attr]
            uv, vu = self.records.linear_against_all(row, s.pair_weights)  # type: ignore[union-attr]
            return uv[:n], vu[:n]
        sel = slice(0, n) if cols is None else cols
        x = self.records.against_all(row)[sel].astype(np.float64)  # type: ignore[union-attr]  # [m, p]
        x_back = x.copy()
        x_back[:, PAIR_FEATURES.index("age_diff_10y")] *= -1  # the only asymmetric feature
        uv, vu = x @ s.pair_weights, x_back @ s.pair_weights
        uv = uv + x @ s.pair_user[row]
        vu = vu + np.einsum("np,np->n", x_back, s.pair_user[sel])
        return uv, vu

    def logits_for_user(self, row: int, cols: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(log-odds row likes each column, each column's profile likes row), each [n_items] (or
        [len(cols)] for the given columns), calibrated; ``row`` may be -1 (unseen). Two
        matrix-vector products plus the pair features of row against every column."""
        s = self._serving_arrays()
        sel = slice(0, self.n_items) if cols is None else np.asarray(cols, dtype=np.int64)
        # einsum, not ``@``: a BLAS matrix-vector product wakes its thread pool, which on a busy
        # 2-core server measured 5-10x slower than this single-threaded loop
        uv = np.einsum("nf,f->n", s.appeal[sel], s.taste[row]) + s.bias[sel] + s.user_bias[row]  # [m]
        vu = np.einsum("nf,f->n", s.taste[sel], s.appeal[row]) + s.user_bias[sel] + s.bias[row]  # [m]
        pair_uv, pair_vu = self._pair_row(row, None if cols is None else np.asarray(sel))
        a, b = self.calibration
        uv64 = uv.astype(np.float64) + pair_uv + s.base
        vu64 = vu.astype(np.float64) + pair_vu + s.base
        return a * uv64 + b, a * vu64 + b

    def _serving_arrays(self) -> _Serving:
        self._check_fitted()
        cached = getattr(self, "_arrays", None)
        if cached is None or cached.taste.shape[0] != self.n_users + 1:

            def padded(t: torch.Tensor) -> np.ndarray:
                x = t.detach().float().numpy()
                return np.concatenate([x, np.zeros((1, *x.shape[1:]), dtype=x.dtype)])  # row -1 = zeros

            pair_user = self.pair_user if self.has_pair_user else torch.zeros(self.n_users, 0)
            # the group priors are folded into the biases: serving adds one number per side
            swiper, candidate = self._prior_biases()
            cached = _Serving(
                taste=padded(self.taste),
                appeal=padded(self.appeal),
                user_bias=padded(self.user_bias + swiper),
                bias=padded(self.bias + candidate),
                base=float(self.global_bias.detach().reshape(-1)[0]),
                pair_weights=self.pair_weights.detach().double().numpy(),
                pair_user=padded(pair_user).astype(np.float64),
            )
            self._arrays = cached
        return cached

    def pair_coefficients(self) -> dict[str, float]:
        """The learned shared coefficients by feature name (empty without records): pair features,
        then the selectivity (``swiper_``) and appeal (``candidate_``) priors; log-odds per unit
        of each feature, before calibration."""
        out: dict[str, float] = {}
        if self.has_pairs:
            out.update(zip(PAIR_FEATURES, self.pair_weights.tolist(), strict=True))
        if self.has_priors:
            out.update(zip((f"swiper_{n}" for n in PRIOR_FEATURES), self.swiper_prior.tolist(), strict=True))
            out.update(zip((f"candidate_{n}" for n in PRIOR_FEATURES), self.candidate_prior.tolist(), strict=True))
        return {name: round(float(w), 4) for name, w in out.items()}
