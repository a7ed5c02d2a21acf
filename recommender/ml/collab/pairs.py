"""Pair features of two profiles, for models that learn how much "alike" matters (``lmf``).

A logistic model of swipes with one bias per swiper (selectivity) and one per candidate (appeal)
cannot see that people like people who share their lifestyle: that is a property of the *pair*.
This module turns what the service stores about each profile into a compact per-profile record
(:func:`pair_profile_matrix`, one float32 row per profile, so it travels through the training
pipeline as side features) and computes, for aligned pairs or one profile against everyone,

* ``same_<attribute>``: 1 when both profiles state the same value, 0 otherwise or when either is
  missing, for every categorical lifestyle field but ethnicity (:data:`PAIR_ATTRIBUTES`). Values
  are coarsened first ("graduated from X" and "working on X" are the same level; "catholicism but
  not too serious about it" is catholicism; a smoker is anyone but "no"), so that answers that
  mean the same thing compare equal;
* ``interest_overlap``: shared interests / sqrt(|I_u| |I_v|) (a cosine of the interest sets);
* ``distance_10km``: great-circle distance in tens of km, clipped at ``MAX_DISTANCE_10KM``;
* ``age_gap_10y``: |age_u - age_v| in decades; ``age_diff_10y``: age_v - age_u in decades (who
  prefers older or younger).

All but ``age_diff_10y`` are symmetric, so one coefficient vector serves both directions of a
pair. Ethnicity is left out on purpose (a model must not learn to rank by it). A profile
unknown to the record (row -1) gives all-zero features: nothing is known about the pair.

The records also give per-profile *prior* features (:meth:`PairRecords.priors`: gender one-hot
and age), on which a model learns where a profile's selectivity and appeal start before its own
swipes say more. In this population women like about one profile in ten and men about one in
two: a profile without swipes shrunk towards the tenant-wide average would be read as far less
(or more) selective than its group is.

Nothing here imports Django or torch: numpy only, for training and for every feed request.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from recommender.ml.structured import ProfileFeatures, _stable_hash, gender_code
from recommender.vocabulary import GENDERS

# Every categorical lifestyle field the service stores (recommender.vocabulary.LIFESTYLE_FIELDS) but
# ethnicity (a model must not learn to rank by it), height (numeric) and speaks (a list): the
# model learns which of them matter from the swipes, and gives the others ~0 weight.
PAIR_ATTRIBUTES: tuple[str, ...] = (
    "education",
    "religion",
    "drinks",
    "smokes",
    "diet",
    "offspring",
    "drugs",
    "body_type",
    "job",
    "orientation",
    "pets",
    "relationship_status",
)
INTEREST_BUCKETS = 256  # hashed interest tags; a curated tag list has hundreds of tags at most
_WORDS = INTEREST_BUCKETS // 64
MAX_DISTANCE_10KM = 20.0
_CODE_MODULUS = (1 << 24) - 3  # codes stay exact in float32 (the record is a float32 matrix)
_EARTH_KM = 6371.0088
PAIR_FEATURES: tuple[str, ...] = (
    *(f"same_{a}" for a in PAIR_ATTRIBUTES),
    "interest_overlap",
    "distance_10km",
    "age_gap_10y",
    "age_diff_10y",
)
PRIOR_FEATURES: tuple[str, ...] = (*(f"gender_{g}" for g in GENDERS), "age_minus_30_10y")
# record layout: attribute codes, gender code, age, lat, lon, interest multi-hot
RECORD_WIDTH = len(PAIR_ATTRIBUTES) + 4 + INTEREST_BUCKETS
_GENDER, _AGE, _LAT, _LON, _INTERESTS = (len(PAIR_ATTRIBUTES) + k for k in range(5))


# The normalisations below read OkCupid's answer phrasing. They are written here, not imported
# from recommender.simulation (which has its own for its hidden preferences): the service must
# not depend on the simulator that judges it.
def _education_level(text: str) -> str | None:
    for prefix in ("graduated from ", "working on ", "dropped out of "):
        text = text.removeprefix(prefix)
    return None if text == "space camp" else text  # OkCupid's joke answer says nothing


def _kids_intent(text: str) -> str | None:
    text = text.replace("’", "'")
    if "doesn't want" in text:
        return "no"
    if "might want" in text:
        return "maybe"
    if "want" in text:
        return "yes"
    return None  # "has kids" alone says nothing about wanting more


_COARSEN: dict[str, Callable[[str], str | None]] = {
    "education": _education_level,
    "religion": lambda t: t.split(" ")[0],
    "drinks": lambda t: t,
    "smokes": lambda t: "no" if t == "no" else "yes",
    "diet": lambda t: t.split(" ")[-1],
    "offspring": _kids_intent,
    "drugs": lambda t: t,
    "body_type": lambda t: t,
    "job": lambda t: t,
    "orientation": lambda t: t,
    "pets": lambda t: t,
    "relationship_status": lambda t: t,
}


def coarse_code(name: str, value: object) -> int:
    """Small non-negative code of a coarsened attribute value; -1 when missing."""
    if value is None:
        return -1
    text = " ".join(str(value).lower().split())
    if not text:
        return -1
    coarse = _COARSEN[name](text)
    return -1 if coarse is None else _stable_hash(f"{name}:{coarse}") % _CODE_MODULUS


def pair_profile_matrix(profiles: Sequence[ProfileFeatures]) -> np.ndarray:
    """[n, RECORD_WIDTH] float32 per-profile records (attribute codes, gender, age, lat, lon,
    interests)."""
    out = np.zeros((len(profiles), RECORD_WIDTH), dtype=np.float32)
    k = len(PAIR_ATTRIBUTES)
    for row, p in enumerate(profiles):
        attrs = p.attributes or {}
        out[row, :k] = [coarse_code(name, attrs.get(name)) for name in PAIR_ATTRIBUTES]
        out[row, _GENDER:_INTERESTS] = (gender_code(p.gender), p.age, p.lat, p.lon)
        for tag in p.interests:
            out[row, _INTERESTS + _stable_hash(tag.lower()) % INTEREST_BUCKETS] = 1.0
    return out


def missing_record() -> np.ndarray:
    """[RECORD_WIDTH] float32 record of an id without a profile: no attribute, gender -1."""
    out = np.zeros(RECORD_WIDTH, dtype=np.float32)
    out[: len(PAIR_ATTRIBUTES)] = -1
    out[_GENDER] = -1
    out[_AGE] = 30  # the priors' reference age: no age effect
    return out


@dataclass(frozen=True)
class PairRecords:
    """Per-profile records in the compact form pair features are computed from.

    codes: [n, len(PAIR_ATTRIBUTES)] int32, -1 missing; gender [n] int8 (``GENDERS`` order, -1
    unknown); age [n] float32; lat, lon [n] float64 radians; interests [n, INTEREST_BUCKETS / 64]
    uint64 bitsets; interest_count [n] float64.
    """

    codes: np.ndarray
    gender: np.ndarray
    age: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    interests: np.ndarray
    interest_count: np.ndarray

    def __len__(self) -> int:
        return int(self.age.shape[0])

    @classmethod
    def from_matrix(cls, matrix: np.ndarray) -> PairRecords:
        m = np.asarray(matrix, dtype=np.float32)
        if m.ndim != 2 or m.shape[1] != RECORD_WIDTH:
            raise ValueError(f"pair records must be [n, {RECORD_WIDTH}], got {m.shape}")
        hot = m[:, _INTERESTS:] > 0.5  # [n, B]
        bits = np.packbits(hot, axis=1, bitorder="little").view(np.uint64)  # [n, B/64]
        return cls(
            codes=m[:, : len(PAIR_ATTRIBUTES)].astype(np.int32),
            gender=m[:, _GENDER].astype(np.int8),
            age=m[:, _AGE].copy(),
            lat=np.radians(m[:, _LAT].astype(np.float64)),
            lon=np.radians(m[:, _LON].astype(np.float64)),
            interests=np.ascontiguousarray(bits),
            interest_count=hot.sum(axis=1).astype(np.float64),
        )

    def priors(self) -> np.ndarray:
        """[n, len(PRIOR_FEATURES)] float32 per-profile prior features: gender one-hot (all zeros
        when unknown) and (age - 30) / 10."""
        out = np.zeros((len(self), len(PRIOR_FEATURES)), dtype=np.float32)
        known = self.gender >= 0
        out[np.flatnonzero(known), self.gender[known].astype(np.int64)] = 1.0
        out[:, -1] = (self.age - 30.0) / 10.0
        return out

    def pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """[m, len(PAIR_FEATURES)] float32 features of aligned pairs; a -1 on either side gives
        a row of zeros."""
        u = np.asarray(users, dtype=np.int64)
        i = np.asarray(items, dtype=np.int64)
        known = (u >= 0) & (i >= 0) & (u < len(self)) & (i < len(self))
        out = np.zeros((u.size, len(PAIR_FEATURES)), dtype=np.float32)
        if known.any():
            out[known] = self._features(u[known], i[known])
        return out

    def against_all(self, row: int) -> np.ndarray:
        """[n, len(PAIR_FEATURES)] features of (row, every profile); zeros when row is -1."""
        n = len(self)
        if not 0 <= row < n:
            return np.zeros((n, len(PAIR_FEATURES)), dtype=np.float32)
        return self._features(np.full(n, row, dtype=np.int64), np.arange(n, dtype=np.int64))

    def linear_against_all(
        self, row: int, weights: np.ndarray, cols: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(weights . x(row, v), weights . x(v, row)) for every profile v (or each of ``cols``),
        each [n] (or [len(cols)]) float64; zeros when row is -1. The same numbers as
        :meth:`against_all` times ``weights``, without building the [n, p] matrix: this runs in
        every feed request, against the whole catalogue or the columns the feed pre-filtered.
        """
        sel: slice | np.ndarray = slice(None) if cols is None else np.asarray(cols, dtype=np.int64)
        m = len(self) if cols is None else len(sel)  # type: ignore[arg-type]
        if not 0 <= row < len(self):
            return np.zeros(m), np.zeros(m)
        w = np.asarray(weights, dtype=np.float64)
        k = len(PAIR_ATTRIBUTES)
        sym = np.zeros(m)
        codes = self.codes[sel]  # [m, k]: one gather, not one per attribute
        for j, code in enumerate(self.codes[row].tolist()):
            if code >= 0 and w[j] != 0.0:
                sym += w[j] * (codes[:, j] == code)
        shared = self._shared_with(row, sel)
        norm = np.sqrt(self.interest_count[sel] * self.interest_count[row])
        sym += w[k] * np.divide(shared, norm, out=np.zeros(m), where=norm > 0)
        sym += w[k + 1] * np.minimum(self._km_from(row, sel) / 10.0, MAX_DISTANCE_10KM)
        diff = (self.age[sel] - self.age[row]).astype(np.float64) / 10.0  # age_v - age_row
        sym += w[k + 2] * np.abs(diff)
        return sym + w[k + 3] * diff, sym - w[k + 3] * diff

    def _shared_with(self, row: int, sel: slice | np.ndarray) -> np.ndarray:
        """Shared interests of each selected profile with ``row``: one pass over the words per
        interest of ``row`` (a handful), cheaper than a popcount over every word of every row."""
        words = self.interests[sel]  # [m, words]
        shared = np.zeros(len(words), dtype=np.uint64)
        one = np.uint64(1)
        for word, value in enumerate(self.interests[row].tolist()):
            while value:
                bit = (value & -value).bit_length() - 1
                shared += (words[:, word] >> np.uint64(bit)) & one
                value &= value - 1
        return shared.astype(np.float64)

    def _km_from(self, row: int, sel: slice | np.ndarray) -> np.ndarray:
        """Great-circle km from ``row`` to each selected profile, through the chord between unit
        vectors (three subtractions and one arcsin per profile instead of the haversine's four
        trig calls)."""
        x, y, z = self._unit_vectors()
        chord = np.sqrt((x[sel] - x[row]) ** 2 + (y[sel] - y[row]) ** 2 + (z[sel] - z[row]) ** 2)
        return 2 * _EARTH_KM * np.arcsin(np.minimum(chord / 2, 1.0))

    def _unit_vectors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cached = self.__dict__.get("_xyz")
        if cached is None:
            cos_lat = np.cos(self.lat)
            cached = (cos_lat * np.cos(self.lon), cos_lat * np.sin(self.lon), np.sin(self.lat))
            object.__setattr__(self, "_xyz", cached)  # a cache on a frozen dataclass
        return cached

    def _features(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        cu, cv = self.codes[u], self.codes[v]  # [m, k]
        same = (cu == cv) & (cu >= 0)
        shared = np.bitwise_count(self.interests[u] & self.interests[v]).sum(axis=1).astype(np.float64)  # [m]
        norm = np.sqrt(self.interest_count[u] * self.interest_count[v])
        overlap = np.divide(shared, norm, out=np.zeros_like(shared), where=norm > 0)
        x, y, z = self._unit_vectors()
        chord = np.sqrt((x[v] - x[u]) ** 2 + (y[v] - y[u]) ** 2 + (z[v] - z[u]) ** 2)
        km = 2 * _EARTH_KM * np.arcsin(np.minimum(chord / 2, 1.0))
        diff = (self.age[v] - self.age[u]).astype(np.float64) / 10.0
        return np.column_stack(
            [same.astype(np.float64), overlap, np.minimum(km / 10.0, MAX_DISTANCE_10KM), np.abs(diff), diff]
        ).astype(np.float32)
