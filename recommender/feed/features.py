"""A profile as the matching code sees it, and vectors stacked in a given order.

The one place a ``Profile`` row becomes ``ProfileFeatures``: the feed, the ML API's rankings and
training's datasets all convert through here, so they can never disagree on a feature. Kept free
of the feed's serving state so training imports it without loading indexes or models.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recommender.ml.structured import ProfileFeatures
from recommender.models import Profile


def profile_features(profile: Profile) -> ProfileFeatures:
    return ProfileFeatures(
        age=profile.age,
        gender=profile.gender,
        seeking=tuple(profile.seeking),
        age_min=profile.age_min,
        age_max=profile.age_max,
        max_distance_km=profile.max_distance_km,
        lat=profile.lat,
        lon=profile.lon,
        interests=frozenset(profile.interests or ()),
        attributes=profile.attributes(),
    )


def stack_vectors(vectors: dict[int, np.ndarray], pks: Sequence[int]) -> np.ndarray | None:
    """(m, d) float32 of the ``pks`` that have a vector, in order; None when none has."""
    rows = [vectors[pk] for pk in pks if pk in vectors]
    return np.stack(rows).astype(np.float32) if rows else None
