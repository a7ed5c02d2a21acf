"""Top-k ranking metrics (binary relevance) and the reciprocal view for dating.

Conventions, all standard and all averaged over the users that have at least one relevant
held-out item (a user with nothing to find cannot tell a good ranking from a bad one):

* precision@k = hits / k; recall@k = hits / |relevant| (the full held-out set, so a user with
  more than k relevant items cannot reach 1: an honest ceiling rather than a flattering one);
* NDCG@k with gains 1/log2(rank+1) and the ideal DCG over min(|relevant|, k) items;
* MAP@k = sum over hit ranks r of precision@r, divided by min(|relevant|, k);
* hit rate@k = share of users with at least one hit;
* catalogue coverage = distinct recommended items / catalogue size (over all users asked).

``recommended`` is [n_users, k] of item indices, -1 marking an empty slot (fewer than k
candidates left); ``relevant`` is a CSR [n_users, n_items] whose non-zeros are the relevant
items of each row.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

METRIC_NAMES: tuple[str, ...] = ("ndcg", "precision", "recall", "map", "hit_rate")


def _hits(recommended: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """Boolean [n_users, k]: is the item at each rank relevant for its user."""
    n, k = recommended.shape
    rows = np.repeat(np.arange(n), k)
    cols = recommended.reshape(-1)
    valid = cols >= 0
    out = np.zeros(n * k, dtype=bool)
    if valid.any():
        rel = relevant.tocsr()
        out[valid] = np.asarray(rel[rows[valid], cols[valid]]).reshape(-1) > 0
    return out.reshape(n, k)


def ranking_metrics(recommended: np.ndarray, relevant: sp.csr_matrix, k: int) -> dict[str, float]:
    """NDCG, precision, recall, MAP and hit rate at ``k``, plus the number of users averaged."""
    recommended = np.asarray(recommended)[:, :k]
    if recommended.shape[0] != relevant.shape[0]:
        raise ValueError("recommended and relevant must have one row per user")
    n_rel = np.diff(relevant.tocsr().indptr)  # [n_users]
    users = n_rel > 0
    names = {f"{m}@{k}": 0.0 for m in METRIC_NAMES}
    if not users.any():
        return {**names, "users": 0}
    hits = _hits(recommended, relevant)[users].astype(np.float64)  # [n, k]
    n_rel = n_rel[users].astype(np.float64)
    kk = hits.shape[1]
    ranks = np.arange(1, kk + 1, dtype=np.float64)
    discounts = 1.0 / np.log2(ranks + 1.0)  # [k]
    dcg = hits @ discounts
    ideal_len = np.minimum(n_rel, k).astype(np.int64)
    ideal = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(1, k + 1) + 1.0))])[ideal_len]
    n_hits = hits.sum(axis=1)
    precision_at_r = np.cumsum(hits, axis=1) / ranks  # [n, k]
    ap = (precision_at_r * hits).sum(axis=1) / np.minimum(n_rel, k)
    return {
        f"ndcg@{k}": float(np.mean(dcg / ideal)),
        f"precision@{k}": float(np.mean(n_hits / k)),
        f"recall@{k}": float(np.mean(n_hits / n_rel)),
        f"map@{k}": float(np.mean(ap)),
        f"hit_rate@{k}": float(np.mean(n_hits > 0)),
        "users": int(users.sum()),
    }


def ndcg_at_k(recommended: np.ndarray, relevant: sp.csr_matrix, k: int = 10) -> float:
    return ranking_metrics(recommended, relevant, k)[f"ndcg@{k}"]


def precision_at_k(recommended: np.ndarray, relevant: sp.csr_matrix, k: int = 10) -> float:
    return ranking_metrics(recommended, relevant, k)[f"precision@{k}"]


def recall_at_k(recommended: np.ndarray, relevant: sp.csr_matrix, k: int = 10) -> float:
    return ranking_metrics(recommended, relevant, k)[f"recall@{k}"]


def map_at_k(recommended: np.ndarray, relevant: sp.csr_matrix, k: int = 10) -> float:
    return ranking_metrics(recommended, relevant, k)[f"map@{k}"]


def hit_rate_at_k(recommended: np.ndarray, relevant: sp.csr_matrix, k: int = 10) -> float:
    return ranking_metrics(recommended, relevant, k)[f"hit_rate@{k}"]


def catalogue_coverage(recommended: np.ndarray, n_items: int) -> float:
    """Distinct recommended items over the catalogue size."""
    if n_items <= 0:
        return 0.0
    items = np.unique(np.asarray(recommended).reshape(-1))
    return float((items >= 0).sum() / n_items)


def mutual_like_pairs(likes: sp.csr_matrix, new_likes: sp.csr_matrix) -> sp.csr_matrix:
    """Binary CSR [n, n] of ordered pairs (u, v) that are mutual likes with at least one of the
    two likes in ``new_likes``: the matches that formed in the held-out period.

    likes: every like known (train and held-out), square over one shared id map.
    """
    all_likes = (likes > 0).astype(np.float32)
    mutual = all_likes.multiply(all_likes.T).tocsr()  # u liked v and v liked u
    fresh = (new_likes > 0).astype(np.float32)
    fresh = ((fresh + fresh.T) > 0).astype(np.float32)  # either direction new
    out = mutual.multiply(fresh).tocsr()
    out.eliminate_zeros()
    return out


def reciprocal_match_precision(recommended: np.ndarray, matches: sp.csr_matrix, k: int) -> dict[str, float]:
    """Among each user's top-k recommended pairs (ranked by a reciprocal score), the share that
    became mutual likes in the held-out period; averaged over users with at least one such match.

    Also returns the pooled share (all hits over all pairs of those users) and the user count.
    """
    recommended = np.asarray(recommended)[:, :k]
    users = np.diff(matches.tocsr().indptr) > 0
    if not users.any():
        return {f"match_precision@{k}": 0.0, f"match_hit_rate@{k}": 0.0, "users": 0}
    hits = _hits(recommended, matches)[users]
    return {
        f"match_precision@{k}": float(hits.sum(axis=1).mean() / k),
        f"match_hit_rate@{k}": float((hits.sum(axis=1) > 0).mean()),
        "users": int(users.sum()),
    }
