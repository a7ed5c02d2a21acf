"""Small synthetic dating data with planted structure, shared by the collaborative tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recommender.ml.collab import IdMap, Interactions, interactions_from_events


@dataclass
class Planted:
    """Train/held-out interactions over one shared map of profiles with planted structure."""

    train: Interactions
    heldout: Interactions
    n: int
    group: np.ndarray  # [n] taste group of each profile


def planted_dating(seed: int = 0, n: int = 120, groups: int = 4, shown: int = 40) -> Planted:
    """Profiles in ``groups`` taste groups: a profile likes profiles of its own group (more
    often the more appealing they are) and passes on the rest. 20% of swipes are held out."""
    rng = np.random.default_rng(seed)
    group = np.arange(n) % groups
    appeal = rng.uniform(0.2, 1.0, size=n) ** 2  # skewed: some profiles are liked far more often
    users, items, actions = [], [], []
    for u in range(n):
        cands = rng.choice(np.delete(np.arange(n), u), size=shown, replace=False)
        p_like = np.where(group[cands] == group[u], appeal[cands], 0.15 * appeal[cands])
        liked = rng.random(shown) < p_like
        superliked = liked & (rng.random(shown) < 0.1)
        users += [u] * shown
        items += cands.tolist()
        actions += np.where(superliked, "superlike", np.where(liked, "like", "pass")).tolist()
    users_a, items_a = np.asarray(users), np.asarray(items)
    weights = np.select([np.asarray(actions) == "superlike", np.asarray(actions) == "like"], [2.0, 1.0], -0.5)
    heldout = rng.random(users_a.size) < 0.2
    ids = IdMap(np.arange(n))  # integer ids: index i is profile i

    def make(mask: np.ndarray) -> Interactions:
        return interactions_from_events(users_a[mask], items_a[mask], weights[mask], user_map=ids, shared=True)

    return Planted(train=make(~heldout), heldout=make(heldout), n=n, group=group)
