"""Elo desirability from swipes.

Model
-----
A swipe by user ``u`` on candidate ``v`` is read as a game between ``u``'s rating
(the judge) and ``v``'s rating: a like or superlike is a **win** for ``v``, a pass
a **loss** for ``v``. With the standard Elo formulas::

    E_v   = 1 / (1 + 10 ** ((R_u - R_v) / scale))     # v's expected score
    R_v' = R_v + K * w_action * (S - E_v)              # S = 1 like/superlike, 0 pass

Consequences, which are the point of using Elo here:

* A like from a highly rated judge raises ``v`` more than a like from a low rated
  one (a high ``R_u`` makes ``E_v`` small, so ``1 - E_v`` is large).
* A pass from a highly rated judge costs ``v`` less than a pass from a low rated one.
* A superlike multiplies K by ``superlike_weight`` (1.5 by default), so it counts
  more than a like.

Only the **candidate's** rating changes. The swiper's rating is read, never
written: how picky someone is says nothing about how desirable they are.

Order matters: the judge's rating at the time of the swipe is used, so replaying
the same swipes in another order gives (slightly) different ratings.
:func:`rebuild_ratings` replays swipes in the order given, which should be the
order they happened in.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

Action = Literal["like", "superlike", "pass"]
ACTIONS: tuple[str, ...] = ("like", "superlike", "pass")


@dataclass(frozen=True)
class EloConfig:
    k: float = 32.0
    initial: float = 1500.0
    superlike_weight: float = 1.5
    like_weight: float = 1.0
    pass_weight: float = 1.0
    scale: float = 400.0


def expected_score(candidate_rating: float, swiper_rating: float, scale: float = 400.0) -> float:
    """Probability-like expectation that the candidate 'wins' (gets liked)."""
    return 1.0 / (1.0 + 10.0 ** ((swiper_rating - candidate_rating) / scale))


def _outcome_and_weight(action: str, cfg: EloConfig) -> tuple[float, float]:
    if action == "like":
        return 1.0, cfg.like_weight
    if action == "superlike":
        return 1.0, cfg.superlike_weight
    if action == "pass":
        return 0.0, cfg.pass_weight
    raise ValueError(f"unknown action {action!r}; expected one of {ACTIONS}")


def elo_update(
    candidate_rating: float, swiper_rating: float, action: Action | str, cfg: EloConfig | None = None
) -> float:
    """The candidate's new rating after one swipe on them."""
    cfg = cfg or EloConfig()
    outcome, weight = _outcome_and_weight(action, cfg)
    expected = expected_score(candidate_rating, swiper_rating, cfg.scale)
    return candidate_rating + cfg.k * weight * (outcome - expected)


def rebuild_ratings(
    swipes: Iterable[tuple[Hashable, Hashable, Action | str]],
    cfg: EloConfig | None = None,
    initial: Mapping[Hashable, float] | None = None,
) -> dict[Hashable, float]:
    """Replay ``(swiper_id, candidate_id, action)`` swipes in order.

    ``initial`` seeds known ratings; everyone else starts at ``cfg.initial``. The
    result holds every id seen (as swiper or candidate) plus those in ``initial``.
    """
    cfg = cfg or EloConfig()
    ratings: dict[Hashable, float] = dict(initial or {})
    for swiper, candidate, action in swipes:
        r_u = ratings.setdefault(swiper, cfg.initial)
        r_v = ratings.setdefault(candidate, cfg.initial)
        ratings[candidate] = elo_update(r_v, r_u, action, cfg)
    return ratings


def elo_to_unit(ratings: np.ndarray | float, cfg: EloConfig | None = None) -> np.ndarray:
    """Map ratings to (0, 1): the expected score against an initial-rated judge.

    Logistic around ``cfg.initial``: initial -> 0.5, +scale -> ~0.91, -scale -> ~0.09.
    """
    cfg = cfg or EloConfig()
    r = np.asarray(ratings, dtype=np.float64)
    return 1.0 / (1.0 + 10.0 ** ((cfg.initial - r) / cfg.scale))
