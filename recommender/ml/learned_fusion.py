"""The learned per-tenant model of P(a likes b) over the feed's signals (framework-free).

The feed estimates both directions of a pair, P(user likes candidate) and P(candidate likes
user), from the same handful of signals: the collaborative model's log-odds, the swiper's own
like rate (selectivity), the judged profile's Elo (appeal), bio similarity and the structured
components. Hand-set weights (``ML_*_WEIGHT``) pool them the same way for every tenant, and on
real held-out decisions that pool lost to a two-line baseline: some signals carry nothing for a
given tenant (``age_fit`` was below chance on one) and dilute the ones that do.

:class:`LearnedFusion` is a logistic regression over :data:`FEATURES` of "a likes b", fitted per
tenant on held-out swipes (the collaborative model that scores them has not seen them; the Elo
ratings and like rates are those of the training period only), refitted with each collaborative
version and stored beside it. One model serves both directions: P(v likes u) is the same
function of the reversed pair (v's collaborative log-odds and like rate, u's Elo), and the
symmetric signals are shared. The hand-set weights remain the cold-start prior, for a tenant
without a collaborative version.

The collaborative model's calibrated log-odds enter twice: as an *offset* (a fixed coefficient
of 1) and as a feature whose coefficient is not penalised. The regression therefore always
recalibrates the model freely (its training-time calibration is over-confident on pairs it never
saw: the slope learned on held-out swipes is typically well below 1), and learns *corrections*
from the other signals, which its L2 penalty shrinks towards zero, i.e. towards the recalibrated
model, not towards a coin flip. With a few hundred held-out swipes a plain logistic regression
over every signal came out below the collaborative model alone on test (0.765 against 0.784 AUC
on a cohort tenant); here the penalty is chosen by cross-validation with the one-standard-error
rule (the strongest penalty whose log-loss is within one standard error of the best), so the
other signals get weight only where the data show it. Where the model has no answer the offset
is 0 and the (unpenalised) missing-indicator's coefficient takes over.

Missing values (no collaborative answer, no bio on either side, no stated age preference) enter
as 0 with an indicator feature, so the model learns what their absence means instead of
imputing. Inputs are standardised with the training rows' mean and scale (stored), and the L2
strength is chosen by 5-fold cross-validated log-loss, so the weights need no tuning by hand.

The swiper's own history adjustment (the feed's ``interaction`` signal) is left out: it exists
only for the user's side of a pair (a candidate's history vectors are not read per feed), so it
could not serve both directions alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

FEATURES: tuple[str, ...] = (
    "collab_logit",
    "collab_missing",
    "swiper_like_logit",
    "candidate_elo",
    "similarity",
    "similarity_missing",
    "age_fit",
    "age_fit_missing",
    "distance",
    "interests",
    "lifestyle",
    "age_diff_10y",
    "age_gap_10y",
)
FORMAT = "patra.learned_fusion/2"
# L2 strengths tried (on the mean log-loss per row): from barely any correction of the offset
# to almost none allowed
L2_GRID: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 0.03, 0.1, 0.3, 1.0, 10.0, 100.0)
FOLDS = 5
UNPENALISED: tuple[str, ...] = ("collab_logit", "collab_missing")  # the recalibration is free
MIN_ROWS = 40  # fewer held-out swipes (or only one class) and no model is fitted
_ELO_INITIAL, _ELO_SCALE = 1500.0, 400.0


@dataclass(frozen=True)
class PairInputs:
    """Aligned (n,) inputs for "swiper likes candidate"; NaN marks a missing value."""

    collab_logit: np.ndarray  # the collaborative model's calibrated log-odds, NaN: no answer
    swiper_like_rate: np.ndarray  # the swiper's smoothed like rate, in (0, 1)
    candidate_elo: np.ndarray  # the candidate's Elo rating
    similarity: np.ndarray  # bio cosine in [-1, 1], NaN: no vector on either side
    age_fit: np.ndarray  # structured age fit in [0, 1], NaN: no age preference stated
    distance: np.ndarray  # structured distance score in [0, 1]
    interests: np.ndarray  # shared interests (Jaccard) in [0, 1]
    lifestyle: np.ndarray  # share of compatible lifestyle answers in [0, 1]
    swiper_age: np.ndarray
    candidate_age: np.ndarray


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-4, 1 - 1e-4)
    return np.log(q / (1 - q))


def _with_flag(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    missing = np.isnan(x)
    return np.where(missing, 0.0, x), missing.astype(np.float64)


def design_matrix(inputs: PairInputs) -> np.ndarray:
    """[n, len(FEATURES)] float64, columns in :data:`FEATURES` order."""
    collab, collab_missing = _with_flag(inputs.collab_logit)
    similarity, similarity_missing = _with_flag(inputs.similarity)
    age_fit, age_fit_missing = _with_flag(inputs.age_fit)
    diff = (np.asarray(inputs.candidate_age, dtype=np.float64) - np.asarray(inputs.swiper_age, dtype=np.float64)) / 10
    columns = [
        collab,
        collab_missing,
        _logit(inputs.swiper_like_rate),
        (np.asarray(inputs.candidate_elo, dtype=np.float64) - _ELO_INITIAL) / _ELO_SCALE,
        similarity,
        similarity_missing,
        age_fit,
        age_fit_missing,
        np.nan_to_num(np.asarray(inputs.distance, dtype=np.float64)),
        np.nan_to_num(np.asarray(inputs.interests, dtype=np.float64)),
        np.nan_to_num(np.asarray(inputs.lifestyle, dtype=np.float64)),
        diff,
        np.abs(diff),
    ]
    return np.column_stack(columns)  # [n, F]


@dataclass
class LearnedFusion:
    """A fitted logistic regression over :data:`FEATURES` (standardised inputs) with the
    collaborative log-odds as an offset (module docs)."""

    mean: np.ndarray  # [F]
    scale: np.ndarray  # [F]
    coef: np.ndarray  # [F], per standardised unit
    intercept: float
    l2: float  # the chosen L2 strength
    features: tuple[str, ...] = FEATURES
    info: dict[str, Any] = field(default_factory=dict)  # rows, like rate, cross-validated log-loss

    def logit(self, x: np.ndarray) -> np.ndarray:
        """(n,) log-odds that each swiper likes the candidate, from ``design_matrix`` rows."""
        x = np.asarray(x, dtype=np.float64)
        return _offset(x) + ((x - self.mean) / self.scale) @ self.coef + self.intercept

    def probability(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-np.clip(self.logit(x), -50.0, 50.0)))

    def weights(self) -> dict[str, float]:
        """Log-odds per unit of each raw feature on top of the offset (what a reader of the
        metrics wants to see: ``collab_logit`` 0 means the model's estimate is taken as it is)."""
        return {name: float(w / s) for name, w, s in zip(self.features, self.coef, self.scale, strict=True)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "features": list(self.features),
            "offset": "collab_logit",
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
            "l2": self.l2,
            "info": self.info,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LearnedFusion:
        if data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} document")
        if tuple(data["features"]) != FEATURES:
            raise ValueError(f"learned fusion features {data['features']} do not match this version's {FEATURES}")
        return cls(
            mean=np.asarray(data["mean"], dtype=np.float64),
            scale=np.asarray(data["scale"], dtype=np.float64),
            coef=np.asarray(data["coef"], dtype=np.float64),
            intercept=float(data["intercept"]),
            l2=float(data["l2"]),
            info=dict(data.get("info", {})),
        )


def _offset(x: np.ndarray) -> np.ndarray:
    return x[:, FEATURES.index("collab_logit")]  # 0 where the model has no answer


_PENALTY = np.array([name not in UNPENALISED for name in FEATURES], dtype=np.float64)  # [F]


def _fit(z: np.ndarray, y: np.ndarray, offset: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """(coef [F], intercept) minimising the mean logistic loss of ``offset + z @ coef + b`` plus
    ``l2 / 2 * |coef|^2`` over the penalised features (not the intercept, not ``UNPENALISED``),
    by L-BFGS."""
    from scipy.optimize import minimize  # SciPy loads only where a fusion is fitted

    sign = np.where(y, 1.0, -1.0)
    n, f = z.shape
    penalty = l2 * _PENALTY[:f]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = theta[:f]
        margin = sign * (offset + z @ w + theta[f])  # [n]
        value = np.logaddexp(0.0, -margin).mean() + 0.5 * float((penalty * w) @ w)
        g = -sign * np.exp(-np.logaddexp(0.0, margin)) / n  # d loss / d logit, [n]
        grad = np.concatenate([z.T @ g + penalty * w, [g.sum()]])
        return float(value), grad

    result = minimize(loss, np.zeros(f + 1), jac=True, method="L-BFGS-B")
    return result.x[:f], float(result.x[f])


def _row_losses(z: np.ndarray, y: np.ndarray, offset: np.ndarray, coef: np.ndarray, b: float) -> np.ndarray:
    margin = np.where(y, 1.0, -1.0) * (offset + z @ coef + b)
    return np.logaddexp(0.0, -margin)


def fit_learned_fusion(x: np.ndarray, y: np.ndarray, *, seed: int = 0) -> LearnedFusion | None:
    """A :class:`LearnedFusion` fitted on ``design_matrix`` rows ``x`` and like labels ``y``, its
    L2 strength chosen by stratified 5-fold cross-validated log-loss; None when there are fewer
    than ``MIN_ROWS`` rows or only one class (nothing to learn)."""
    from sklearn.model_selection import StratifiedKFold  # scikit-learn loads only where a fusion is fitted

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=bool)
    n_pos = int(y.sum())
    if len(y) < MIN_ROWS or n_pos == 0 or n_pos == len(y):
        return None
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale < 1e-9] = 1.0  # a constant column (e.g. no bios at all) stays 0 after scaling
    z, offset = (x - mean) / scale, _offset(x)
    folds = StratifiedKFold(n_splits=int(min(FOLDS, n_pos, len(y) - n_pos)), shuffle=True, random_state=seed)
    # per-row out-of-fold losses of each L2 strength, and of the model's estimate plus an
    # intercept alone (the last column)
    losses = np.zeros((len(y), len(L2_GRID) + 1))
    for train, test in folds.split(z, y):
        for k, l2 in enumerate(L2_GRID):
            coef, b = _fit(z[train], y[train], offset[train], l2)
            losses[test, k] = _row_losses(z[test], y[test], offset[test], coef, b)
        _, b = _fit(z[train][:, :0], y[train], offset[train], 0.0)
        losses[test, -1] = _row_losses(z[test][:, :0], y[test], offset[test], np.zeros(0), b)
    cv = losses.mean(axis=0)
    se = losses[:, : len(L2_GRID)].std(axis=0) / np.sqrt(len(y))
    lowest = int(np.argmin(cv[:-1]))
    best = max(k for k in range(len(L2_GRID)) if cv[k] <= cv[lowest] + se[lowest])  # one-SE rule
    coef, b = _fit(z, y, offset, L2_GRID[best])
    info = {
        "rows": len(y),
        "like_rate": n_pos / len(y),
        "cv_log_loss": float(cv[best]),
        "cv_log_loss_lowest": float(cv[lowest]),
        "cv_log_loss_model_alone": float(cv[-1]),
        "seed": seed,
    }
    return LearnedFusion(mean=mean, scale=scale, coef=coef, intercept=b, l2=L2_GRID[best], info=info)
