"""Interaction matrices: id maps, event weighting and the sparse user x item matrix.

Everything here is framework-free (no Django). A matrix entry is a signed weight: a like or a
superlike is positive evidence, a pass is *negative* evidence (a negative weight), and a pair
nobody swiped on is missing (no entry). Models turn the sign into what they need: ALS reads it
as preference 0/1 with a confidence growing with |weight|, BPR reads passes as hard negatives.

For dating data both sides are profiles, so users and items share one id map (``shared``): row
``i`` and column ``i`` are the same person, which is what the reciprocal view needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

ACTIONS: tuple[str, ...] = ("like", "superlike", "pass")


@dataclass(frozen=True)
class EventWeights:
    """Signed weight of each swipe action (the defaults mirror settings.ML_*_WEIGHT)."""

    like: float = 1.0
    superlike: float = 2.0
    pass_: float = -0.5

    def __post_init__(self) -> None:
        if self.like <= 0 or self.superlike <= 0:
            raise ValueError("like and superlike weights must be positive (they are positive evidence)")
        if self.pass_ > 0:
            raise ValueError("the pass weight must be <= 0 (a pass is negative evidence, or ignored at 0)")

    def of(self, actions: Sequence[str] | np.ndarray) -> np.ndarray:
        """Weights of an array of action names, float32, same shape."""
        actions = np.asarray(actions)
        unknown = ~np.isin(actions, ACTIONS)
        if unknown.any():
            raise ValueError(f"unknown swipe actions: {sorted(set(actions[unknown].tolist()))[:5]}")
        out = np.full(actions.shape, self.like, dtype=np.float32)
        out[actions == "superlike"] = self.superlike
        out[actions == "pass"] = self.pass_
        return out


class IdMap:
    """Arbitrary ids (ints or strings) <-> dense indices 0..n-1, in sorted id order.

    Lookups are vectorised (``searchsorted`` on the sorted ids), so mapping ten million events
    costs a sort, not ten million dict look-ups.
    """

    def __init__(self, ids: Sequence[object] | np.ndarray) -> None:
        self.ids = np.unique(np.asarray(ids))  # sorted, unique
        if self.ids.dtype == object:
            self.ids = self.ids.astype(str)

    def __len__(self) -> int:
        return int(self.ids.size)

    def index(self, ids: Sequence[object] | np.ndarray, *, missing: int | None = None) -> np.ndarray:
        """Indices of ``ids``; unknown ids raise, or map to ``missing`` when it is given."""
        ids = np.asarray(ids)
        if ids.dtype == object:
            ids = ids.astype(str)
        if ids.size == 0:
            return np.zeros(0, dtype=np.int64)
        if len(self) == 0:
            pos = np.zeros(ids.shape, dtype=np.int64)
            found = np.zeros(ids.shape, dtype=bool)
        else:
            pos = np.searchsorted(self.ids, ids)
            pos_clipped = np.minimum(pos, len(self) - 1)
            found = (pos < len(self)) & (self.ids[pos_clipped] == ids)
            pos = pos_clipped
        if not found.all():
            if missing is None:
                raise KeyError(f"{int((~found).sum())} unknown ids, e.g. {ids[~found][:3].tolist()}")
            pos = np.where(found, pos, missing)
        return pos.astype(np.int64)

    def to_list(self) -> list[str]:
        return [str(x) for x in self.ids.tolist()]


@dataclass
class Interactions:
    """A user x item matrix of signed weights and the ids of its rows and columns.

    matrix: [n_users, n_items] CSR float32; duplicates of a pair are summed.
    user_features / item_features: optional side features, [n_users, f] / [n_items, f] float32
    (profile attributes and bio embeddings, :mod:`.features`). Only the feature-aware models
    (two-tower, GraphSAGE) read them; ALS, BPR and popularity ignore them. With a shared id map
    both are the same array (:meth:`with_features`).
    """

    matrix: sp.csr_matrix
    users: IdMap
    items: IdMap
    shared: bool = False  # users and items are the same people (same id map)
    user_features: np.ndarray | None = None
    item_features: np.ndarray | None = None

    def with_features(self, user_features: np.ndarray, item_features: np.ndarray | None = None) -> Interactions:
        """A copy carrying side features (same matrix and maps). With a shared id map one array
        covers both sides; otherwise ``item_features`` is required."""
        uf = np.ascontiguousarray(user_features, dtype=np.float32)
        if item_features is None:
            if not self.shared:
                raise ValueError("item_features are required when users and items are different id maps")
            itf = uf
        else:
            itf = np.ascontiguousarray(item_features, dtype=np.float32)
        if uf.ndim != 2 or uf.shape[0] != self.shape[0] or itf.ndim != 2 or itf.shape[0] != self.shape[1]:
            raise ValueError(f"features must have one row per user ({self.shape[0]}) and per item ({self.shape[1]})")
        if uf.shape[1] != itf.shape[1]:
            raise ValueError("user and item features must have the same width (one encoder for both sides)")
        if not (np.isfinite(uf).all() and np.isfinite(itf).all()):
            raise ValueError("features must be finite")
        return replace(self, user_features=uf, item_features=itf)

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape  # type: ignore[return-value]

    @property
    def nnz(self) -> int:
        return int(self.matrix.nnz)

    def positives(self) -> sp.csr_matrix:
        """The entries with weight > 0 (likes, superlikes, positive ratings)."""
        return _select(self.matrix, self.matrix.data > 0)

    def negatives(self) -> sp.csr_matrix:
        """The entries with weight < 0 (passes), as positive magnitudes."""
        neg = _select(self.matrix, self.matrix.data < 0)
        neg.data = -neg.data
        return neg

    def seen(self) -> sp.csr_matrix:
        """1 for every pair with any interaction (what a recommender must not show again)."""
        out = self.matrix.copy()
        out.data = np.ones_like(out.data)
        return out

    def user_activity(self) -> np.ndarray:
        """Interactions per user, [n_users]."""
        return np.diff(self.matrix.indptr)


def _select(m: sp.csr_matrix, keep: np.ndarray) -> sp.csr_matrix:
    coo = m.tocoo()
    return sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=m.shape, dtype=np.float32)


def build_matrix(
    user_index: np.ndarray, item_index: np.ndarray, weights: np.ndarray, shape: tuple[int, int]
) -> sp.csr_matrix:
    """CSR [n_users, n_items] float32 from index triples; duplicate pairs are summed, and pairs
    whose weights cancel to exactly 0 are dropped (they carry no evidence)."""
    m = sp.csr_matrix(
        (np.asarray(weights, dtype=np.float32), (np.asarray(user_index), np.asarray(item_index))),
        shape=shape,
        dtype=np.float32,
    )
    m.sum_duplicates()
    m.eliminate_zeros()
    m.sort_indices()
    return m


def interactions_from_events(
    users: Sequence[object] | np.ndarray,
    items: Sequence[object] | np.ndarray,
    weights: np.ndarray,
    *,
    user_map: IdMap | None = None,
    item_map: IdMap | None = None,
    shared: bool = False,
    drop_unknown: bool = False,
) -> Interactions:
    """Interactions from parallel arrays of ids and weights.

    With ``shared`` one map covers users and items (dating: both sides are profiles). Given maps
    are reused (so validation and test line up with train); ids not in them raise, or are dropped
    with ``drop_unknown`` (a model cannot score ids it never saw).
    """
    users = np.asarray(users)
    items = np.asarray(items)
    weights = np.asarray(weights, dtype=np.float32)
    if not (users.shape == items.shape == weights.shape):
        raise ValueError("users, items and weights must have the same length")
    if shared:
        if user_map is None:
            user_map = IdMap(np.concatenate([users.astype(str), items.astype(str)]) if users.size else [])
        item_map = user_map
    else:
        user_map = user_map or IdMap(users)
        item_map = item_map or IdMap(items)
    missing = -1 if drop_unknown else None
    ui = user_map.index(users, missing=missing)
    ii = item_map.index(items, missing=missing)
    keep = (ui >= 0) & (ii >= 0)
    matrix = build_matrix(ui[keep], ii[keep], weights[keep], (len(user_map), len(item_map)))
    return Interactions(matrix=matrix, users=user_map, items=item_map, shared=shared)
