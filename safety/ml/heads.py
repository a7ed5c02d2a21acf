"""Trained text heads: one calibrated logistic regression per text label.

Input of a head: ``[MiniLM embedding (384) | standardised rule/shape features | hashed n-grams]``.
Training (scikit-learn, training split only):

1. pick C from a small grid by 5-fold cross-validated log loss on the training rows;
2. Platt-calibrate: fit ``sigmoid(a * logit + b)`` on the out-of-fold logits at that C, so the
   probabilities are calibrated on rows the model did not see;
3. choose the F1-best decision threshold on the same out-of-fold probabilities (reported by the
   benchmark; the review/auto-hide thresholds in settings are a separate, policy choice);
4. refit on all training rows.

Targets: ``spam_scam`` = SMS spam vs ham; ``inappropriate`` = Davidson hate-or-offensive vs
neither; ``harassment`` = the same target with hate-speech rows weighted up (``HATE_WEIGHT``), so
it ranks targeted hate above mere vulgarity. Extra labelled examples (moderator decisions) are
appended to the training rows of the labels they carry.

The checkpoint is a directory: ``config.json`` (everything but the weights) and ``heads.npz``
(float32 arrays, loaded with ``allow_pickle=False``). Inference needs only numpy.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from safety.ml import TEXT_LABELS
from safety.ml.hashing import N_BUCKETS, hashed_matrix, tokens
from safety.ml.rules import FEATURE_NAMES, text_features_batch

CHECKPOINT_FORMAT = "patra-safety-heads/1"
HATE_WEIGHT = 4.0
C_GRID: tuple[float, ...] = (1.0, 4.0, 16.0)


@dataclass
class Head:
    label: str
    w_emb: np.ndarray  # (dim,)
    w_feat: np.ndarray  # (k,)
    w_hash: np.ndarray  # (N_BUCKETS,)
    bias: float
    platt_a: float
    platt_b: float
    threshold: float
    info: dict[str, Any] = field(default_factory=dict)
    # How much the fixed rule weights add on top of this head (0..1), chosen on out-of-fold
    # predictions: the head already sees every rule as an input feature, so adding the rule
    # weights again double-counts whatever the training data already taught it.
    rule_scale: float = 1.0


@dataclass
class TextHeads:
    heads: dict[str, Head]
    feat_mean: np.ndarray  # (k,)
    feat_std: np.ndarray  # (k,)
    config: dict[str, Any]

    @property
    def embedding_model(self) -> str:
        return str(self.config["embedding_model"])

    def logits(self, texts: Sequence[str], embeddings: np.ndarray) -> dict[str, np.ndarray]:
        feats = (text_features_batch(list(texts)) - self.feat_mean) / self.feat_std  # (n, k)
        hashed = hashed_matrix(list(texts))  # (n, N_BUCKETS) sparse
        out: dict[str, np.ndarray] = {}
        for label, h in self.heads.items():
            out[label] = embeddings @ h.w_emb + feats @ h.w_feat + hashed @ h.w_hash + h.bias  # (n,)
        return out

    def predict_proba(self, texts: Sequence[str], embeddings: np.ndarray) -> dict[str, np.ndarray]:
        return {
            label: _sigmoid(self.heads[label].platt_a * z + self.heads[label].platt_b)
            for label, z in self.logits(texts, embeddings).items()
        }

    def top_tokens(self, label: str, text: str, k: int = 3, min_weight: float = 0.5) -> list[str]:
        """The words of ``text`` whose unigram weight pushes ``label`` up most: what a moderator
        should look at when the model (not a rule) raised the label."""
        from safety.ml.hashing import bucket

        w = self.heads[label].w_hash
        scored = {t: float(w[bucket(f"w:{t}")]) for t in set(tokens(text)) if len(t) > 1}
        ranked = sorted(((s, t) for t, s in scored.items() if s >= min_weight), reverse=True)
        return [t for _, t in ranked[:k]]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        # Any: numpy types savez_compressed(**arrays) as if an array could be its allow_pickle flag.
        arrays: dict[str, Any] = {"feat_mean": self.feat_mean, "feat_std": self.feat_std}
        heads_cfg: dict[str, Any] = {}
        for label, h in self.heads.items():
            arrays[f"{label}.w_emb"] = h.w_emb.astype(np.float32)
            arrays[f"{label}.w_feat"] = h.w_feat.astype(np.float32)
            arrays[f"{label}.w_hash"] = h.w_hash.astype(np.float32)
            heads_cfg[label] = {
                "bias": h.bias,
                "platt_a": h.platt_a,
                "platt_b": h.platt_b,
                "threshold": h.threshold,
                "rule_scale": h.rule_scale,
                "info": h.info,
            }
        np.savez_compressed(directory / "heads.npz", **arrays)
        config = {**self.config, "format": CHECKPOINT_FORMAT, "heads": heads_cfg}
        (directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))

    @classmethod
    def load(cls, directory: Path) -> TextHeads:
        config = json.loads((directory / "config.json").read_text())
        if config.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{directory}: not a {CHECKPOINT_FORMAT} checkpoint")
        if config.get("n_buckets") != N_BUCKETS or config.get("features") != list(FEATURE_NAMES):
            raise ValueError(f"{directory}: trained with other features than this code computes")
        with np.load(directory / "heads.npz", allow_pickle=False) as arrays:
            heads = {
                label: Head(
                    label=label,
                    w_emb=arrays[f"{label}.w_emb"],
                    w_feat=arrays[f"{label}.w_feat"],
                    w_hash=arrays[f"{label}.w_hash"],
                    bias=float(cfg["bias"]),
                    platt_a=float(cfg["platt_a"]),
                    platt_b=float(cfg["platt_b"]),
                    threshold=float(cfg["threshold"]),
                    info=cfg.get("info", {}),
                    rule_scale=float(cfg.get("rule_scale", 1.0)),
                )
                for label, cfg in config["heads"].items()
            }
            return cls(heads, arrays["feat_mean"], arrays["feat_std"], config)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


@dataclass
class TrainingSet:
    """Rows for one label: texts, their embeddings, 0/1 targets and per-row weights."""

    texts: list[str]
    embeddings: np.ndarray  # (n, dim)
    y: np.ndarray  # (n,)
    weights: np.ndarray  # (n,)
    source: str


def _design(texts: list[str], emb: np.ndarray, mean: np.ndarray, std: np.ndarray) -> sp.csr_matrix:
    feats = (text_features_batch(texts) - mean) / std
    return sp.hstack([sp.csr_matrix(emb), sp.csr_matrix(feats), hashed_matrix(texts)], format="csr")


def _best_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    order = np.argsort(-p)
    ys = y[order]
    tp = np.cumsum(ys)
    fp = np.cumsum(1 - ys)
    f1 = 2 * tp / (tp + fp + ys.sum())
    i = int(np.argmax(f1))
    return float(p[order][i])


def train_head(
    label: str,
    data: TrainingSet,
    mean: np.ndarray,
    std: np.ndarray,
    *,
    seed: int = 0,
    c_grid: Sequence[float] = C_GRID,
    log: Callable[[str], None],
) -> Head:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold

    X = _design(data.texts, data.embeddings, mean, std)
    y, w = data.y, data.weights
    folds = list(StratifiedKFold(n_splits=5, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
    best: tuple[float, float, np.ndarray] | None = None  # (loss, C, out-of-fold logits)
    for C in c_grid:
        oof = np.zeros(len(y))
        for tr, va in folds:
            model = LogisticRegression(C=C, solver="liblinear", max_iter=2000)
            model.fit(X[tr], y[tr], sample_weight=w[tr])
            oof[va] = model.decision_function(X[va])
        loss = log_loss(y, _sigmoid(oof), sample_weight=w)
        log(f"  {label}: C={C:g} cross-validated log loss {loss:.4f}")
        if best is None or loss < best[0]:
            best = (loss, C, oof)
    assert best is not None
    _, C, oof = best
    platt = LogisticRegression(C=1e6, solver="lbfgs")
    platt.fit(oof.reshape(-1, 1), y, sample_weight=w)
    a, b = float(platt.coef_[0, 0]), float(platt.intercept_[0])
    oof_p = _sigmoid(a * oof + b)
    threshold = _best_f1_threshold(y, oof_p)
    rule_scale = _best_rule_scale(label, data.texts, y, oof_p, threshold)
    log(f"  {label}: rule scale {rule_scale:g} on top of the head (chosen out of fold)")
    model = LogisticRegression(C=C, solver="liblinear", max_iter=2000)
    model.fit(X, y, sample_weight=w)
    coef = model.coef_[0]
    dim = data.embeddings.shape[1]
    k = len(FEATURE_NAMES)
    return Head(
        label=label,
        w_emb=coef[:dim].astype(np.float32),
        w_feat=coef[dim : dim + k].astype(np.float32),
        w_hash=coef[dim + k :].astype(np.float32),
        bias=float(model.intercept_[0]),
        platt_a=a,
        platt_b=b,
        threshold=threshold,
        info={"C": C, "rows": len(y), "positives": int(y.sum()), "source": data.source},
        rule_scale=rule_scale,
    )


RULE_SCALES = (0.0, 0.25, 0.5, 0.75, 1.0)


def _best_rule_scale(label: str, texts: Sequence[str], y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    """The rule scale whose combined score (``noisy_or(p, scale * weights)``) has the best F1 at
    the head's threshold on out-of-fold predictions; ties go to the larger scale, so rules keep
    their say unless the data shows they only add false positives."""
    from safety.ml.rules import find_rules, noisy_or

    weights = [[h.weight for h in find_rules(t) if h.label == label] for t in texts]
    best_scale, best_f1 = 1.0, -1.0
    for scale in sorted(RULE_SCALES, reverse=True):
        combined = np.array([noisy_or(float(pi), [scale * w for w in ws]) for pi, ws in zip(p, weights, strict=True)])
        predicted = combined >= threshold
        tp = float(np.sum(predicted & (y == 1)))
        f1 = 2 * tp / max(float(predicted.sum() + (y == 1).sum()), 1.0)
        if f1 > best_f1 + 1e-9:
            best_scale, best_f1 = scale, f1
    return best_scale


def train_heads(
    sets: dict[str, TrainingSet],
    *,
    embedding_model: str,
    extra_config: dict[str, Any] | None = None,
    c_grid: Sequence[float] = C_GRID,
    log: Callable[[str], None] = print,
) -> TextHeads:
    """Train one head per label in ``sets`` (keys from TEXT_LABELS)."""
    unknown = set(sets) - set(TEXT_LABELS)
    if unknown:
        raise ValueError(f"no text head for {sorted(unknown)}")
    all_texts = sorted({t for s in sets.values() for t in s.texts})
    feats = text_features_batch(all_texts)
    mean = feats.mean(axis=0)
    std = np.maximum(feats.std(axis=0), 1e-3)
    heads = {label: train_head(label, data, mean, std, c_grid=c_grid, log=log) for label, data in sets.items()}
    config = {
        "embedding_model": embedding_model,
        "n_buckets": N_BUCKETS,
        "features": list(FEATURE_NAMES),
        "c_grid": list(c_grid),
        "hate_weight": HATE_WEIGHT,
        **(extra_config or {}),
    }
    return TextHeads(heads, mean.astype(np.float32), std.astype(np.float32), config)
