"""Evaluating a fitted recommender on a held-out split (framework-free; shared by the training
pipeline, ``evaluate_offline`` and the benchmark, so every number is computed the same way).

The protocol: for each user with at least one positive held-out interaction, recommend the
top-k over the whole catalogue excluding everything the user interacted with in train (likes
and passes alike: those profiles were already shown), and compare with the held-out positives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from recommender.ml.collab.base import Recommender
from recommender.ml.collab.data import Interactions
from recommender.ml.collab.metrics import (
    catalogue_coverage,
    mutual_like_pairs,
    ranking_metrics,
    reciprocal_match_precision,
)
from recommender.ml.fusion import fuse


def _active_users(relevant: sp.csr_matrix) -> np.ndarray:
    return np.flatnonzero(np.diff(relevant.indptr) > 0)


def evaluate_model(
    model: Recommender,
    train: Interactions,
    heldout: Interactions,
    k: int = 10,
    *,
    users: np.ndarray | None = None,
    exclude: sp.csr_matrix | None = None,
    reciprocal: bool = False,
    fusion_method: str = "harmonic",
    pool_size: int = 200,
) -> dict[str, Any]:
    """Ranking metrics at k and catalogue coverage; with ``reciprocal`` (dating data only)
    also the precision of predicted matches, one-way and reciprocally re-ranked.

    ``train`` and ``heldout`` must be on the same id maps (same matrix shape). ``exclude``
    (default: every pair in ``train``) is what may not be recommended.
    """
    if train.shape != heldout.shape:
        raise ValueError("train and held-out interactions must share their id maps")
    relevant = heldout.positives()
    if users is None:
        users = _active_users(relevant)
    exclude = train.seen() if exclude is None else exclude
    recs, _ = model.recommend(users, k, exclude=exclude)
    report: dict[str, Any] = dict(ranking_metrics(recs, relevant[users], k))
    report[f"coverage@{k}"] = catalogue_coverage(recs, train.shape[1])
    if reciprocal:
        report.update(
            reciprocal_report(
                model, train, heldout, k, exclude=exclude, fusion_method=fusion_method, pool_size=pool_size
            )
        )
    return report


def reciprocal_report(
    model: Recommender,
    train: Interactions,
    heldout: Interactions,
    k: int = 10,
    *,
    exclude: sp.csr_matrix | None = None,
    fusion_method: str = "harmonic",
    pool_size: int = 200,
) -> dict[str, Any]:
    """Precision of predicted matches: for each user with a match formed in the held-out
    period, the share of their top-k pairs that became mutual likes. Top-k one-way (by
    P(u likes v)) and reciprocal (the one-way top ``pool_size`` re-ranked by the fused score
    of P(u likes v) and P(v likes u))."""
    if not model.shared:
        raise ValueError("the reciprocal view needs dating data (one id map for both sides)")
    matches = mutual_like_pairs(train.positives() + heldout.positives(), heldout.positives())
    users = _active_users(matches)
    out: dict[str, Any] = {"match_users": int(users.size), "fusion_method": fusion_method}
    if users.size == 0:
        out[f"match_precision@{k}"] = out[f"one_way_match_precision@{k}"] = 0.0
        return out
    exclude = train.seen() if exclude is None else exclude
    pool, _ = model.recommend(users, max(pool_size, k), exclude=exclude)  # [n, P]
    one_way = reciprocal_match_precision(pool[:, :k], matches[users], k)
    valid = pool >= 0
    u_rep = np.broadcast_to(users[:, None], pool.shape)[valid]
    cands = pool[valid]
    fused = np.full(pool.shape, -np.inf)
    p_uv = model.like_probability(u_rep, cands)
    p_vu = model.like_probability(cands, u_rep)
    fused[valid] = fuse(p_uv, p_vu, fusion_method)
    order = np.argsort(-fused, axis=1, kind="stable")[:, :k]
    reranked = np.take_along_axis(pool, order, axis=1)
    recip = reciprocal_match_precision(reranked, matches[users], k)
    out[f"match_precision@{k}"] = recip[f"match_precision@{k}"]
    out[f"match_hit_rate@{k}"] = recip[f"match_hit_rate@{k}"]
    out[f"one_way_match_precision@{k}"] = one_way[f"match_precision@{k}"]
    return out


def validation_ndcg(
    train: Interactions, validation: Interactions, k: int = 10, *, max_users: int = 3000, seed: int = 0
) -> Callable[[Recommender], float]:
    """A ``validate`` callback for :meth:`Recommender.fit`: NDCG@k on (a fixed sample of) the
    validation users, so early stopping costs little even on large data."""
    relevant = validation.positives()
    users = _active_users(relevant)
    if users.size > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, size=max_users, replace=False))
    exclude = train.seen()

    def validate(model: Recommender) -> float:
        if users.size == 0:
            return 0.0
        recs, _ = model.recommend(users, k, exclude=exclude)
        return ranking_metrics(recs, relevant[users], k)[f"ndcg@{k}"]

    return validate


def validation_like_auc(validation: Interactions) -> Callable[[Recommender], float]:
    """A ``validate`` callback for models of P(like | shown) (``lmf``): the AUC of the model's
    pair scores for the validation swipes, likes against passes.

    NDCG over the whole catalogue rewards predicting who a user will be *shown* (exposure), which
    such a model does not try to learn; what the feed needs from it is the ranking of likes over
    passes among profiles actually shown, and that is what this measures.
    """
    coo = validation.matrix.tocoo()
    users, items = coo.row.astype(np.int64), coo.col.astype(np.int64)
    labels = coo.data > 0

    def validate(model: Recommender) -> float:
        if labels.all() or not labels.any():
            return 0.5
        own = getattr(model, "pair_logits", None)
        scores = np.asarray(own(users, items) if own is not None else model.score_pairs(users, items), dtype=np.float64)
        ranks = scores.argsort(kind="stable").argsort().astype(np.float64) + 1  # ties broken by order
        n_pos, n_neg = int(labels.sum()), int((~labels).sum())
        return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))

    return validate
