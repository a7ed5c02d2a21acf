"""The feed's pair scoring (``recommender.feed.scoring``): decisions the candidate already made."""

from __future__ import annotations

import numpy as np

from recommender.feed.scoring import PASSED_YOU_FACTOR, PairSignals, SignalWeights, score_pairs
from recommender.ml.structured import CandidateBatch, ProfileFeatures

WEIGHTS = SignalWeights(similarity=0.35, structured=0.35, elo=0.15, interaction=0.15, collaborative=2.0)


def _profile(gender: str, seeking: tuple[str, ...]) -> ProfileFeatures:
    return ProfileFeatures(age=30, gender=gender, seeking=seeking, age_min=25, age_max=35,
                           max_distance_km=50.0, lat=37.77, lon=-122.42)  # fmt: skip


def _signals(n: int, **overrides: object) -> PairSignals:
    values: dict[str, object] = {
        "similarity": np.full(n, 0.2),
        "interaction": np.full(n, np.nan),
        "elo_candidate": np.full(n, 1500.0),
        "elo_user": 1500.0,
        "liked_user": np.zeros(n, dtype=bool),
        "collab_uv": np.zeros(n),
        "collab_vu": np.zeros(n),
    }
    return PairSignals(**{**values, **overrides})  # type: ignore[arg-type]


def test_a_candidate_who_passed_on_the_user_ranks_below_an_identical_one_who_did_not() -> None:
    user = _profile("man", ("woman",))
    cands = CandidateBatch.from_features([_profile("woman", ("man",))] * 3)
    passed = np.array([False, True, False])
    liked = np.array([False, False, True])
    scored = score_pairs(user, cands, _signals(3, passed_user=passed, liked_user=liked), WEIGHTS)
    assert scored.score_vu[1] == np.float64(scored.score_vu[0] * PASSED_YOU_FACTOR)
    assert scored.reciprocal[1] < scored.reciprocal[0] < scored.reciprocal[2]  # liked you ranks first
    assert np.array_equal(scored.score_uv, np.full(3, scored.score_uv[0]))  # the user's side is untouched
    # without the signal (None) nothing changes: the same as nobody having passed
    plain = score_pairs(user, cands, _signals(3, liked_user=liked), WEIGHTS)
    none_passed = score_pairs(user, cands, _signals(3, liked_user=liked, passed_user=np.zeros(3, bool)), WEIGHTS)
    assert np.array_equal(plain.reciprocal, none_passed.reciprocal)
