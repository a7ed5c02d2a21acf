"""Adjust candidate scores with the user's swipe history, in embedding space.

All vectors are unit-length bio embeddings, so a dot product is a cosine.
History arrays are ordered oldest -> newest; only the newest
``cfg.max_history`` rows of each group are used, which keeps the cost per feed
bounded (``n * max_history * d`` flops) and favours recent taste.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class InteractionConfig:
    top_k: int = 5  # similarities averaged per group, so one outlier does not dominate
    like_weight: float = 1.0
    superlike_weight: float = 2.0
    pass_weight: float = 1.0  # how strongly similarity to passed profiles pulls down
    max_history: int = 100  # newest rows used per group; cost is n * max_history * d
    rocchio_pass_fraction: float = 0.25  # taste vector: share of the pass centroid subtracted


def _recent(vecs: np.ndarray | None, cfg: InteractionConfig) -> np.ndarray | None:
    if vecs is None or len(vecs) == 0:
        return None
    return np.asarray(vecs, dtype=np.float32)[-cfg.max_history :]  # (<=max_history, d)


def top_k_mean_similarity(cand_vecs: np.ndarray, group: np.ndarray, k: int) -> np.ndarray:
    """(n,) mean of each candidate's k highest cosines to the group's rows."""
    sims = cand_vecs @ group.T  # (n, g)
    k = min(k, sims.shape[1])
    if k < sims.shape[1]:
        # partition is O(n*g); the top k land in the last k columns, unordered
        sims = np.partition(sims, sims.shape[1] - k, axis=1)[:, -k:]  # (n, k)
    return sims.mean(axis=1)


def interaction_adjustment(
    cand_vecs: np.ndarray,
    liked_vecs: np.ndarray | None,
    superliked_vecs: np.ndarray | None,
    passed_vecs: np.ndarray | None,
    cfg: InteractionConfig | None = None,
) -> np.ndarray:
    """(n,) float32 in [-1, 1]: positive near liked profiles, negative near passed ones.

    ``positive`` is the weighted mean (like_weight, superlike_weight) of the top-k
    mean similarity to likes and to superlikes, over the groups the user has;
    ``negative`` the top-k mean similarity to passes. The result is
    ``positive - pass_weight * negative`` clipped to [-1, 1], so it measures
    whether a candidate looks more like what the user liked than what they passed.
    Zeros when there is no history.
    """
    cfg = cfg or InteractionConfig()
    cand = np.asarray(cand_vecs, dtype=np.float32)  # (n, d)
    adjustment = np.zeros(len(cand), dtype=np.float32)  # (n,)
    if len(cand) == 0:
        return adjustment
    positive_groups = [
        (g, w)
        for g, w in ((_recent(liked_vecs, cfg), cfg.like_weight), (_recent(superliked_vecs, cfg), cfg.superlike_weight))
        if g is not None and w > 0
    ]
    if positive_groups:
        total_w = sum(w for _, w in positive_groups)
        adjustment += sum(w * top_k_mean_similarity(cand, g, cfg.top_k) for g, w in positive_groups) / total_w
    passed = _recent(passed_vecs, cfg)
    if passed is not None:
        adjustment -= cfg.pass_weight * top_k_mean_similarity(cand, passed, cfg.top_k)
    return np.clip(adjustment, -1.0, 1.0).astype(np.float32)


def liked_you_boost(liked_user_mask: np.ndarray, boost: float) -> np.ndarray:
    """(n,) ``boost`` where the candidate already liked the user, else 0.

    Such a candidate is one swipe away from a match, so showing them is the
    surest way to create one; the caller adds this to the score.
    """
    return np.asarray(liked_user_mask, dtype=bool).astype(np.float32) * np.float32(boost)


def taste_vector(
    liked_vecs: np.ndarray | None,
    superliked_vecs: np.ndarray | None,
    passed_vecs: np.ndarray | None,
    cfg: InteractionConfig | None = None,
) -> np.ndarray | None:
    """(d,) unit query vector "around what they liked", or None without likes.

    Rocchio-style: weighted centroid of likes and superlikes (each superlike
    counts ``superlike_weight / like_weight`` likes) minus
    ``rocchio_pass_fraction`` times the centroid of passes. Passes alone give
    None: pointing away from passes is not a meaningful place to search.
    """
    cfg = cfg or InteractionConfig()
    liked, superliked, passed = (_recent(v, cfg) for v in (liked_vecs, superliked_vecs, passed_vecs))
    rows, weights = [], []
    for group, w in ((liked, cfg.like_weight), (superliked, cfg.superlike_weight)):
        if group is not None and w > 0:
            rows.append(group)
            weights.append(np.full(len(group), w, dtype=np.float32))
    if not rows:
        return None
    query = np.average(np.concatenate(rows), axis=0, weights=np.concatenate(weights))  # (d,)
    if passed is not None:
        query = query - cfg.rocchio_pass_fraction * passed.mean(axis=0)
    norm = float(np.linalg.norm(query))
    if norm < 1e-6:  # likes and passes cancel out: no direction to search in
        return None
    return (query / norm).astype(np.float32)
