"""Structured profile matching: hard filters and a [0, 1] compatibility score.

Everything per-candidate works on a :class:`CandidateBatch` (struct-of-arrays), so
scoring a few thousand candidates for one user is a handful of numpy operations.

Conventions
-----------
* Latitude / longitude are stored in **degrees** (as in the database); the
  haversine function converts to radians internally.
* Genders are coded ``woman=0, man=1, nonbinary=2``; ``seeking`` is a bitmask
  with bit ``1 << code`` set for each sought gender.
* Attribute codes: ``-1`` means missing (``None`` or blank string). Ordinal
  attributes (:data:`ORDINAL_SCALES`) are coded by rank on their scale, ``height``
  by its value in cm, every other attribute by a stable 63-bit hash of its
  normalised text, so equal texts get equal codes without a shared vocabulary.
* Interests are a bitset over the batch's interest vocabulary, packed into
  ``uint64`` words. Interests are meant to be a curated tag list (hundreds of
  tags), so the bitset stays small: ``n * ceil(V / 64)`` words.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from recommender.vocabulary import GENDERS, LIFESTYLE_FIELDS, MAX_AGE, MIN_AGE

GENDER_CODE: dict[str, int] = {g: i for i, g in enumerate(GENDERS)}

ATTRIBUTE_NAMES: tuple[str, ...] = LIFESTYLE_FIELDS
ATTR_INDEX: dict[str, int] = {name: i for i, name in enumerate(ATTRIBUTE_NAMES)}

# Ordinal attributes with their OkCupid codebook scales, least to most. Two values
# within ORDINAL_TOLERANCE steps count as compatible (a "socially" drinker and a
# "rarely" drinker get along; "not at all" and "very often" do not).
ORDINAL_SCALES: dict[str, tuple[str, ...]] = {
    "drinks": ("not at all", "rarely", "socially", "often", "very often", "desperately"),
    "smokes": ("no", "sometimes", "when drinking", "trying to quit", "yes"),
    "drugs": ("never", "sometimes", "often"),
}
ORDINAL_TOLERANCE = 1

# Height is carried in the batch (codes are cm) but is not part of lifestyle
# compatibility: profiles state no height preference, and "same height" is not a
# meaningful compatibility signal.
LIFESTYLE_EXCLUDED: frozenset[str] = frozenset({"height"})

# Qualifiers OkCupid adds in front of a diet ("mostly vegetarian") or after a
# religion ("catholicism but not too serious about it"); dropped so the core values
# compare equal.
_DIET_QUALIFIERS: tuple[str, ...] = ("mostly ", "strictly ")
_RELIGION_QUALIFIERS: tuple[str, ...] = (" and ", " but ")

# Age fit at the far edge of an accepted range (1 at the judge's own age, 0 outside).
AGE_EDGE_FIT = 0.5
EARTH_RADIUS_KM = 6371.0088

AttributeValue = str | int | None


@dataclass(frozen=True)
class ProfileFeatures:
    """Everything structured matching needs to know about one profile."""

    age: int
    gender: str  # 'woman' | 'man' | 'nonbinary'
    seeking: tuple[str, ...]
    age_min: int
    age_max: int
    max_distance_km: float
    lat: float  # degrees
    lon: float  # degrees
    interests: frozenset[str] = frozenset()
    # hash=False keeps the frozen dataclass hashable although a dict is not
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class StructuredWeights:
    """Weights of the components in the structured score (normalised by their sum)."""

    age: float = 0.25
    distance: float = 0.25
    interests: float = 0.25
    lifestyle: float = 0.25

    def as_dict(self) -> dict[str, float]:
        return {
            "age_fit": self.age,
            "distance": self.distance,
            "interests": self.interests,
            "lifestyle": self.lifestyle,
        }


@dataclass(frozen=True)
class StructuredResult:
    score: np.ndarray  # (n,) float32 in [0, 1]
    components: dict[str, np.ndarray]  # name -> (n,) float32 in [0, 1]


# --------------------------------------------------------------------------- encoding


def gender_code(gender: str) -> int:
    try:
        return GENDER_CODE[gender]
    except KeyError:
        raise ValueError(f"unknown gender {gender!r}; expected one of {GENDERS}") from None


def seeking_mask(seeking: Sequence[str]) -> int:
    mask = 0
    for g in seeking:
        mask |= 1 << gender_code(g)
    return mask


def _stable_hash(text: str) -> int:
    # Python's hash() is salted per process; codes must agree across processes.
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # 63 bits: non-negative int64


def _normalise(name: str, text: str) -> str:
    text = " ".join(text.lower().split())
    if name == "diet":
        for q in _DIET_QUALIFIERS:
            text = text.removeprefix(q)
    elif name == "religion":
        for q in _RELIGION_QUALIFIERS:
            text = text.split(q, 1)[0]
    return text


def attribute_code(name: str, value: AttributeValue) -> int:
    """Integer code of one attribute value; -1 when missing or off an ordinal scale."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return -1
    if name == "height":
        return int(value)
    text = _normalise(name, str(value))
    if name in ORDINAL_SCALES:
        scale = ORDINAL_SCALES[name]
        return scale.index(text) if text in scale else -1
    return _stable_hash(text)


def encode_attributes(attributes: Mapping[str, AttributeValue]) -> np.ndarray:
    """(n_attrs,) int64 codes in ATTRIBUTE_NAMES order; unknown keys are ignored."""
    return np.array([attribute_code(n, attributes.get(n)) for n in ATTRIBUTE_NAMES], dtype=np.int64)


def _interest_bits(interests: frozenset[str], vocab: Mapping[str, int], n_words: int) -> np.ndarray:
    bits = np.zeros(n_words, dtype=np.uint64)  # (n_words,)
    for tag in interests:
        i = vocab.get(tag)
        if i is not None:
            bits[i // 64] |= np.uint64(1) << np.uint64(i % 64)
    return bits


# --------------------------------------------------------------------------- batch


@dataclass(frozen=True)
class CandidateBatch:
    """Struct-of-arrays form of many :class:`ProfileFeatures`; row i is one candidate."""

    ids: np.ndarray  # (n,) int64, caller's ids (default 0..n-1)
    age: np.ndarray  # (n,) int16
    gender: np.ndarray  # (n,) int8, GENDER_CODE
    seeking: np.ndarray  # (n,) uint8 bitmask
    age_min: np.ndarray  # (n,) int16
    age_max: np.ndarray  # (n,) int16
    max_distance_km: np.ndarray  # (n,) float64
    lat: np.ndarray  # (n,) float64, degrees
    lon: np.ndarray  # (n,) float64, degrees
    interest_bits: np.ndarray  # (n, n_words) uint64
    interest_count: np.ndarray  # (n,) int32, |interests|
    attributes: np.ndarray  # (n, n_attrs) int64, -1 = missing
    interest_vocab: Mapping[str, int]  # tag -> bit index, shared by take()

    def __len__(self) -> int:
        return int(self.age.shape[0])

    @classmethod
    def from_features(
        cls, features: Sequence[ProfileFeatures], ids: Sequence[int] | np.ndarray | None = None
    ) -> CandidateBatch:
        n = len(features)
        id_arr = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
        if id_arr.shape != (n,):
            raise ValueError(f"ids has shape {id_arr.shape}, expected ({n},)")
        vocab = {tag: i for i, tag in enumerate(sorted({t for f in features for t in f.interests}))}
        n_words = max(1, -(-len(vocab) // 64))
        bits = np.zeros((n, n_words), dtype=np.uint64)  # (n, n_words)
        for row, f in enumerate(features):
            bits[row] = _interest_bits(f.interests, vocab, n_words)
        attrs = np.full((n, len(ATTRIBUTE_NAMES)), -1, dtype=np.int64)  # (n, n_attrs)
        for row, f in enumerate(features):
            attrs[row] = encode_attributes(f.attributes)
        return cls(
            ids=id_arr,
            age=np.array([f.age for f in features], dtype=np.int16),
            gender=np.array([gender_code(f.gender) for f in features], dtype=np.int8),
            seeking=np.array([seeking_mask(f.seeking) for f in features], dtype=np.uint8),
            age_min=np.array([f.age_min for f in features], dtype=np.int16),
            age_max=np.array([f.age_max for f in features], dtype=np.int16),
            max_distance_km=np.array([f.max_distance_km for f in features], dtype=np.float64),
            lat=np.array([f.lat for f in features], dtype=np.float64),
            lon=np.array([f.lon for f in features], dtype=np.float64),
            interest_bits=bits,
            interest_count=np.array([len(f.interests) for f in features], dtype=np.int32),
            attributes=attrs,
            interest_vocab=vocab,
        )

    def take(self, idx: np.ndarray | Sequence[int]) -> CandidateBatch:
        """Rows ``idx`` (integer positions or a boolean mask) as a new batch."""
        idx = np.asarray(idx)
        return CandidateBatch(
            ids=self.ids[idx],
            age=self.age[idx],
            gender=self.gender[idx],
            seeking=self.seeking[idx],
            age_min=self.age_min[idx],
            age_max=self.age_max[idx],
            max_distance_km=self.max_distance_km[idx],
            lat=self.lat[idx],
            lon=self.lon[idx],
            interest_bits=self.interest_bits[idx],
            interest_count=self.interest_count[idx],
            attributes=self.attributes[idx],
            interest_vocab=self.interest_vocab,
        )

    def user_interest_bits(self, interests: frozenset[str]) -> np.ndarray:
        """(n_words,) the user's interests on this batch's vocabulary (unknown tags dropped)."""
        return _interest_bits(interests, self.interest_vocab, self.interest_bits.shape[1])


# --------------------------------------------------------------------------- geometry


def haversine_km(
    lat1: float | np.ndarray, lon1: float | np.ndarray, lat2: float | np.ndarray, lon2: float | np.ndarray
) -> np.ndarray:
    """Great-circle distance in km between points given in degrees; broadcasts."""
    p1, l1, p2, l2 = (np.radians(np.asarray(x, dtype=np.float64)) for x in (lat1, lon1, lat2, lon2))
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin((l2 - l1) / 2) ** 2
    # clip guards against a slightly > 1 from rounding, which would make arcsin NaN
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def _distances(user: ProfileFeatures, cands: CandidateBatch) -> np.ndarray:
    return haversine_km(user.lat, user.lon, cands.lat, cands.lon)  # (n,)


def _max_distance(user: ProfileFeatures, cands: CandidateBatch) -> np.ndarray:
    return np.minimum(cands.max_distance_km, user.max_distance_km)  # (n,)


# --------------------------------------------------------------------------- filters


def hard_filter_mask(user: ProfileFeatures, cands: CandidateBatch) -> np.ndarray:
    """(n,) bool: the pair is compatible both ways on gender, age and distance."""
    u_gender = gender_code(user.gender)
    u_seeking = seeking_mask(user.seeking)
    cand_bits = np.left_shift(np.uint8(1), cands.gender.astype(np.uint8))  # (n,)
    gender_ok = ((cand_bits & u_seeking) != 0) & ((cands.seeking & (1 << u_gender)) != 0)
    age_ok = (
        (cands.age >= user.age_min)
        & (cands.age <= user.age_max)
        & (cands.age_min <= user.age)
        & (cands.age_max >= user.age)
    )
    distance_ok = _distances(user, cands) <= _max_distance(user, cands)
    return gender_ok & age_ok & distance_ok


# --------------------------------------------------------------------------- components


def states_age_preference(age_min: np.ndarray | int, age_max: np.ndarray | int) -> np.ndarray:
    """True where [age_min, age_max] narrows anything: the full MIN_AGE..MAX_AGE range (the API's
    default, or null) states no preference."""
    return (np.asarray(age_min) > MIN_AGE) | (np.asarray(age_max) < MAX_AGE)


def _range_fit(
    age: np.ndarray | float, own: np.ndarray | float, lo: np.ndarray | float, hi: np.ndarray | float
) -> np.ndarray:
    """How well ``age`` fits a judge of age ``own`` who accepts [lo, hi]: 1 at the judge's own age
    (clipped into the range), falling quadratically to AGE_EDGE_FIT at the edge of the range on
    that side, 0 outside. Peaking at the middle of the range instead made a wide range (say 18 to
    60 for a 25-year-old) favour candidates near 40, which held-out decisions did not bear out."""
    age, own, lo, hi = (np.asarray(x, dtype=np.float64) for x in (age, own, lo, hi))
    peak = np.clip(own, lo, hi)
    span = np.where(age >= peak, hi - peak, peak - lo)
    rel = np.divide(np.abs(age - peak), span, out=np.zeros(np.broadcast(age, span).shape), where=span > 0)
    fit = 1.0 - (1.0 - AGE_EDGE_FIT) * rel**2
    return np.where((age >= lo) & (age <= hi), fit, 0.0)


def age_fit(user: ProfileFeatures, cands: CandidateBatch) -> np.ndarray:
    """(n,) geometric mean of both directions' range fit (0 if either is outside). A side that
    states no age preference drops out; NaN when neither does (no signal either way)."""
    theirs_in_mine = _range_fit(cands.age, user.age, user.age_min, user.age_max)  # (n,)
    mine_in_theirs = _range_fit(user.age, cands.age, cands.age_min, cands.age_max)  # (n,)
    mine = np.full(len(cands), bool(states_age_preference(user.age_min, user.age_max)))
    theirs = states_age_preference(cands.age_min, cands.age_max)
    both = np.sqrt(theirs_in_mine * mine_in_theirs)
    out = np.where(mine & theirs, both, np.where(mine, theirs_in_mine, mine_in_theirs))
    return np.where(mine | theirs, out, np.nan)


def distance_score(user: ProfileFeatures, cands: CandidateBatch) -> np.ndarray:
    """(n,) 1 at 0 km, linearly down to 0 at the smaller of both max distances."""
    limit = _max_distance(user, cands)
    d = _distances(user, cands)
    score = np.divide(limit - d, limit, out=np.zeros_like(d), where=limit > 0)
    return np.clip(score, 0.0, 1.0)


def interest_jaccard(user: ProfileFeatures, cands: CandidateBatch) -> np.ndarray:
    """(n,) |A & B| / |A | B|; 0 when both are empty."""
    u_bits = cands.user_interest_bits(user.interests)  # (n_words,)
    inter = np.bitwise_count(cands.interest_bits & u_bits).sum(axis=1, dtype=np.int64)  # (n,)
    # the user's full count (incl. tags unknown to the batch) belongs in the union
    union = cands.interest_count + len(user.interests) - inter
    return np.divide(inter, union, out=np.zeros(len(cands)), where=union > 0)


_LIFESTYLE_COLS = np.array([i for i, n in enumerate(ATTRIBUTE_NAMES) if n not in LIFESTYLE_EXCLUDED])
_ORDINAL_COLS = np.array([ATTRIBUTE_NAMES[i] in ORDINAL_SCALES for i in _LIFESTYLE_COLS])


def lifestyle_score(user: ProfileFeatures, cands: CandidateBatch) -> np.ndarray:
    """(n,) share of attributes both filled in that are compatible.

    Compatible means equal, or within ORDINAL_TOLERANCE steps for ordinal ones.
    With no attribute in common the score is a neutral 0.5: missing data should
    neither reward nor punish a candidate.
    """
    u = encode_attributes(user.attributes)[_LIFESTYLE_COLS]  # (m,)
    c = cands.attributes[:, _LIFESTYLE_COLS]  # (n, m)
    both = (u >= 0) & (c >= 0)  # (n, m)
    close = np.abs(c - u) <= ORDINAL_TOLERANCE
    compatible = np.where(_ORDINAL_COLS, close, c == u) & both
    n_both = both.sum(axis=1)
    share = np.divide(compatible.sum(axis=1), n_both, out=np.full(len(cands), 0.5), where=n_both > 0)
    return share


# --------------------------------------------------------------------------- score


def structured_scores(
    user: ProfileFeatures, cands: CandidateBatch, weights: StructuredWeights | None = None
) -> StructuredResult:
    """Weighted mean of the four components, each (n,) in [0, 1]; ``age_fit`` is NaN where
    neither side states an age preference and then leaves the mean (its weight drops out)."""
    weights = weights or StructuredWeights()
    w = weights.as_dict()
    if any(v < 0 for v in w.values()) or sum(w.values()) <= 0:
        raise ValueError(f"weights must be >= 0 with a positive sum, got {weights}")
    components = {
        "age_fit": age_fit(user, cands),
        "distance": distance_score(user, cands),
        "interests": interest_jaccard(user, cands),
        "lifestyle": lifestyle_score(user, cands),
    }
    components = {k: v.astype(np.float32) for k, v in components.items()}
    stack = np.stack([components[k] for k in components]).astype(np.float64)  # (4, n)
    weight = np.array([w[k] for k in components])[:, None] * ~np.isnan(stack)  # (4, n)
    total = (np.nan_to_num(stack) * weight).sum(axis=0) / weight.sum(axis=0).clip(min=1e-12)
    return StructuredResult(score=np.clip(total, 0.0, 1.0).astype(np.float32), components=components)


def structured_match(
    a: ProfileFeatures, b: ProfileFeatures, weights: StructuredWeights | None = None
) -> tuple[float, dict[str, float]]:
    """Score one pair (a as the user, b as the candidate) through the vector form."""
    result = structured_scores(a, CandidateBatch.from_features([b]), weights)
    return float(result.score[0]), {k: float(v[0]) for k, v in result.components.items()}
