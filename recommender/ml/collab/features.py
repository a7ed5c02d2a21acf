"""Side features of profiles for the feature-aware models (two-tower, GraphSAGE).

One row per profile, float32, built from what the feed already knows about a profile (a
:class:`~recommender.ml.structured.ProfileFeatures`) and its 384-d bio embedding. The models
standardise every column themselves (mean/std of the training rows, stored in the checkpoint),
so the raw scales here only need to be finite. Layout (:func:`feature_names` lists every column):

* ``gender`` one-hot (3) and ``seeking`` bits (3), in :data:`recommender.vocabulary.GENDERS` order;
* ``age``, ``age_min``, ``age_max``, ``max_distance_km`` (raw numbers);
* location as a point on the unit sphere (x, y, z), so no longitude wrap-around;
* interests hashed into ``INTEREST_BUCKETS`` buckets (multi-hot / sqrt(count));
* each lifestyle attribute hashed into ``ATTRIBUTE_BUCKETS`` buckets (one-hot, all zeros when
  missing); ordinal ones (drinks, smokes, drugs) also as their rank on the scale; ``height`` in
  cm with a missing flag. **Ethnicity is left out on purpose**: a model must not learn to rank
  people by ethnicity from other users' likes;
* the bio embedding (``bio_dim`` columns, zeros when the profile has none) and a ``has_bio`` flag.

Nothing here imports Django: the same function serves training, the benchmark and the feed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recommender.ml.structured import (
    ATTRIBUTE_NAMES,
    ORDINAL_SCALES,
    ProfileFeatures,
    _stable_hash,
    attribute_code,
    gender_code,
)
from recommender.vocabulary import GENDERS

INTEREST_BUCKETS = 32
ATTRIBUTE_BUCKETS = 8
EXCLUDED_ATTRIBUTES: frozenset[str] = frozenset({"ethnicity"})
BIO_DIM = 384
_HASHED = tuple(a for a in ATTRIBUTE_NAMES if a not in EXCLUDED_ATTRIBUTES and a != "height")
_ORDINAL = tuple(a for a in _HASHED if a in ORDINAL_SCALES)


def feature_names(bio_dim: int = BIO_DIM) -> list[str]:
    names = [f"gender_{g}" for g in GENDERS] + [f"seeking_{g}" for g in GENDERS]
    names += ["age", "age_min", "age_max", "max_distance_km", "loc_x", "loc_y", "loc_z"]
    names += [f"interest_{b}" for b in range(INTEREST_BUCKETS)]
    names += [f"{a}_{b}" for a in _HASHED for b in range(ATTRIBUTE_BUCKETS)]
    names += [f"{a}_rank" for a in _ORDINAL] + ["height_cm", "height_missing"]
    names += [f"bio_{i}" for i in range(bio_dim)] + ["has_bio"]
    return names


def profile_feature_matrix(
    profiles: Sequence[ProfileFeatures], bio: np.ndarray | None = None, *, bio_dim: int = BIO_DIM
) -> np.ndarray:
    """[n, len(feature_names(bio_dim))] float32 side features of ``profiles``.

    ``bio``: [n, bio_dim] embeddings (rows of zeros or NaN = no embedding), or None for none.
    """
    n = len(profiles)
    if bio is not None:
        bio = np.asarray(bio, dtype=np.float32)
        if bio.shape != (n, bio_dim):
            raise ValueError(f"bio has shape {bio.shape}, expected ({n}, {bio_dim})")
    cols: list[np.ndarray] = []
    gender = np.zeros((n, len(GENDERS)), dtype=np.float32)  # [n, 3]
    seeking = np.zeros((n, len(GENDERS)), dtype=np.float32)  # [n, 3]
    numbers = np.zeros((n, 7), dtype=np.float32)  # [n, 7]
    interests = np.zeros((n, INTEREST_BUCKETS), dtype=np.float32)
    hashed = np.zeros((n, len(_HASHED), ATTRIBUTE_BUCKETS), dtype=np.float32)
    ranks = np.zeros((n, len(_ORDINAL) + 2), dtype=np.float32)
    for row, p in enumerate(profiles):
        gender[row, gender_code(p.gender)] = 1.0
        for g in p.seeking:
            seeking[row, gender_code(g)] = 1.0
        lat, lon = np.radians(p.lat), np.radians(p.lon)
        numbers[row] = (
            p.age,
            p.age_min,
            p.age_max,
            p.max_distance_km,
            np.cos(lat) * np.cos(lon),
            np.cos(lat) * np.sin(lon),
            np.sin(lat),
        )
        if p.interests:
            for tag in p.interests:
                interests[row, _stable_hash(tag.lower()) % INTEREST_BUCKETS] += 1.0
            interests[row] /= np.sqrt(len(p.interests))
        attrs = p.attributes or {}
        for j, name in enumerate(_HASHED):
            code = attribute_code(name, attrs.get(name))
            if code >= 0:
                hashed[row, j, (_stable_hash(str(code)) if name in ORDINAL_SCALES else code) % ATTRIBUTE_BUCKETS] = 1
        for j, name in enumerate(_ORDINAL):
            ranks[row, j] = max(attribute_code(name, attrs.get(name)), -1) + 1  # 0 = missing
        height = attribute_code("height", attrs.get("height"))
        ranks[row, -2] = height if height >= 0 else 0.0
        ranks[row, -1] = float(height < 0)
    cols = [gender, seeking, numbers, interests, hashed.reshape(n, -1), ranks]
    if bio is None:
        bio_block = np.zeros((n, bio_dim), dtype=np.float32)
        has_bio = np.zeros((n, 1), dtype=np.float32)
    else:
        bio_block = np.nan_to_num(bio, nan=0.0)
        has_bio = (np.abs(bio_block).sum(axis=1, keepdims=True) > 0).astype(np.float32)
    cols += [bio_block, has_bio]
    out = np.concatenate(cols, axis=1).astype(np.float32)
    assert out.shape[1] == len(feature_names(bio_dim))
    return out
