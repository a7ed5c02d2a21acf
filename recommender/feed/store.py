"""A per-tenant, process-local store of every active profile's matching features.

Why: a feed scores a few hundred candidates, and reading their features from the database for
every request (a query plus model instances per candidate) would cost more than all the maths.
The store keeps them as one struct-of-arrays :class:`CandidateBatch` (row i = one profile), plus
the Elo ratings, the creation times and a dense ``pk -> row`` array, so that a feed turns a set of
profile ids into rows, masks and scores with a handful of numpy operations.

Freshness
    Built once per process and tenant (in a serving process on a thread of its own: a request
    waits ``SERVING_FIRST_LOAD_WAIT_SECONDS`` for it, then gets :class:`StoreWarmingUp`, which the
    API answers 503 with Retry-After), then refreshed by deltas: profiles with
    ``updated_at`` past the watermark (minus an overlap, for transactions that committed after
    a later one) or with a primary key past the highest seen (bulk loads), every
    ``FEED_STORE_REFRESH_SECONDS`` (2 s); Elo ratings every ``FEED_ELO_REFRESH_SECONDS`` (10 s).
    A profile that stops being active keeps its row with ``active = False``. Only one thread
    refreshes at a time; the others keep serving from the current arrays instead of waiting.
    Refreshes, and the recomputation of the popular and fresh pools, run on the process's
    refresher thread (:mod:`core.refresher`), not on the request that finds them due.
    The store is a cache: bans are enforced again against the database on the final feed.

Concurrency
    Readers take a :class:`StoreSnapshot` (references to the arrays at that moment). Updates of
    existing rows are written in place; growth allocates new arrays, so a snapshot never sees a
    half-resized array. The interest vocabulary is copied on write for the same reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connections
from django.db.models import Max, Q
from django.utils import timezone

from core.refresher import first_load_wait, in_background, refresh_later
from recommender.ml.elo import EloConfig
from recommender.ml.structured import (
    ATTRIBUTE_NAMES,
    GENDER_CODE,
    CandidateBatch,
    ProfileFeatures,
    attribute_code,
    seeking_mask,
)
from recommender.models import EloRating, Profile, ProfileStatus

logger = logging.getLogger(__name__)

# Re-read profiles changed up to this long before the watermark: a transaction that stamped
# updated_at before the last refresh but committed after it is still picked up.
WATERMARK_OVERLAP = timedelta(seconds=30)
# Elo-popular and fresh pools: how many rows each holds, and how long they are reused.
POOL_SIZE = 300
POOL_SECONDS = 5.0
# The structured pre-filter scans the store in chunks and stops once it has enough rows.
SCAN_CHUNK = 50_000
KM_PER_DEGREE = 111.2

_PROFILE_FIELDS: tuple[str, ...] = (
    "pk",
    "status",
    "age",
    "gender",
    "seeking",
    "age_min",
    "age_max",
    "max_distance_km",
    "lat",
    "lon",
    "interests",
    *ATTRIBUTE_NAMES,
    "created_at",
)
_ATTR_OFFSET = _PROFILE_FIELDS.index(ATTRIBUTE_NAMES[0])
_FETCH_CHUNK = 20_000


def refresh_seconds() -> float:
    return settings.FEED_STORE_REFRESH_SECONDS


_ELO_FIELDS = ("profile_id", "rating", "swipes_given", "likes_given")

# A profile's like rate is smoothed towards this prior with the weight of PRIOR_SWIPES swipes,
# so a newcomer with two swipes is not taken as liking everyone or no one.
PRIOR_LIKE_RATE = 0.3
PRIOR_SWIPES = 10.0


def smoothed_like_rate(likes: np.ndarray, swipes: np.ndarray) -> np.ndarray:
    """(m,) (likes + prior pseudo-likes) / (swipes + prior pseudo-swipes), in (0, 1)."""
    return (likes + PRIOR_LIKE_RATE * PRIOR_SWIPES) / (swipes + PRIOR_SWIPES)


def elo_refresh_seconds() -> float:
    return settings.FEED_ELO_REFRESH_SECONDS


@dataclass(frozen=True)
class StoreSnapshot:
    """The store's arrays at one moment; row i of every array is the same profile."""

    batch: CandidateBatch  # (n,) rows; batch.ids are Profile pks
    elo: np.ndarray  # (n,) float64 ratings
    like_rate: np.ndarray  # (n,) float64 smoothed share of likes among the swipes each profile gave
    swipes_given: np.ndarray  # (n,) float64 swipes each profile gave (EloRating counters)
    likes_given: np.ndarray  # (n,) float64 likes and superlikes among them
    active: np.ndarray  # (n,) bool, status == active when last seen
    created: np.ndarray  # (n,) float64 epoch seconds
    row_of: np.ndarray  # (max_pk + 1,) int64, -1 = not in the store
    # Derived arrays built on first use and kept for this snapshot's life (a refresh that
    # changes anything makes a new snapshot): the pre-filter's partition (inherited from the
    # previous snapshot until rebuilt: _partition) and pk -> row maps of large lookups.
    memo: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.batch)

    def rows_for(self, pks: np.ndarray | Sequence[int]) -> np.ndarray:
        """(m,) rows of the known ``pks`` (unknown ones dropped), in input order."""
        pk_arr = np.asarray(pks, dtype=np.int64)  # (k,)
        known = (pk_arr >= 0) & (pk_arr < len(self.row_of))
        rows = self.row_of[pk_arr[known]]
        return rows[(rows >= 0) & (rows < len(self))]

    def row_of_pk(self, pk: int) -> int:
        row = int(self.row_of[pk]) if 0 <= pk < len(self.row_of) else -1
        return row if row < len(self) else -1

    def prefilter_rows(self, user: ProfileFeatures, want: int, start: int = 0) -> np.ndarray:
        """Up to ``want`` active rows passing a cheap structured pre-filter: gender both ways,
        age ranges both ways and the user's distance as a lat/lon bounding box.

        Scans chunks from ``start`` (wrapping around) and stops early, so the cost is bounded
        by the chunks needed, not the tenant's size. The exact hard filter runs afterwards.
        """
        n = len(self)
        if n == 0 or want <= 0:
            return np.empty(0, dtype=np.int64)
        found: list[np.ndarray] = []
        total = 0
        for lo in range(0, n, SCAN_CHUNK):
            rows = (np.arange(lo, min(lo + SCAN_CHUNK, n), dtype=np.int64) + start) % n  # (c,)
            hits = rows[self._prefilter_mask(user, rows)]
            found.append(hits)
            total += len(hits)
            if total >= want:
                break
        return np.concatenate(found)[:want]

    def prefilter_pks(self, user: ProfileFeatures, pks: np.ndarray) -> np.ndarray:
        """(n,) bool: which of ``pks`` (-1 or unknown allowed: False) are active rows passing the
        structured pre-filter of :meth:`prefilter_rows`.

        Called with the same large array on every feed (the collaborative model's columns), so
        the ``pk -> row`` lookup of an array of more than a quarter of the store is kept for this
        snapshot, and the rows passing come from :meth:`prefilter_all` instead of a pass over
        every row."""
        pk_arr = np.asarray(pks, dtype=np.int64)  # (n,)
        if 4 * len(pk_arr) <= len(self):
            rows = self._rows_or_missing(pk_arr)
            out = np.zeros(len(pk_arr), dtype=bool)
            ok = rows >= 0
            out[ok] = self._prefilter_mask(user, rows[ok])
            return out
        rows = self._memo_rows_or_missing(pk_arr)
        passing = np.zeros(len(self) + 1, dtype=bool)  # the extra last entry answers row -1
        passing[self.prefilter_all(user)] = True
        return passing[rows]

    def prefilter_all(self, user: ProfileFeatures) -> np.ndarray:
        """(r,) every active row passing the pre-filter of :meth:`prefilter_rows`, ascending.

        Reads only the rows of the genders the user seeks whose age is in the user's range: the
        snapshot's :class:`_Partition` keeps the rows sorted by (gender, age), so each sought
        gender is one contiguous slice, and the remaining conditions run on that slice alone."""
        lowest, highest = _AGE_RANGE
        age_lo, age_hi = max(user.age_min, lowest), min(user.age_max, highest)
        if age_lo > age_hi:
            return np.empty(0, dtype=np.int64)
        part = self._partition()
        u_code = GENDER_CODE[user.gender]
        sought = seeking_mask(user.seeking)
        dlat, dlon = _box(user)
        found = []
        for code in range(len(GENDER_CODE)):
            if not sought & (1 << code):
                continue
            lo = int(np.searchsorted(part.keys, _partition_key(code, age_lo), side="left"))
            hi = int(np.searchsorted(part.keys, _partition_key(code, age_hi), side="right"))
            span = slice(lo, hi)
            ok = (part.seeking[span] & np.uint8(1 << u_code)) != 0
            ok &= part.age_min[span] <= user.age
            ok &= part.age_max[span] >= user.age
            ok &= np.abs(part.lat[span] - user.lat) <= dlat
            ok &= np.abs(part.lon[span] - user.lon) <= dlon
            found.append(part.order[lo:hi][ok])
        rows = np.sort(np.concatenate(found)) if found else np.empty(0, dtype=np.int64)
        return rows[self.active[rows]]  # ``active`` changes in place (mark_inactive): read it now

    def _partition(self) -> _Partition:
        """This snapshot's partition; until it is built, the previous snapshot's one.

        A snapshot inherits its predecessor's partition (marked stale) and, in a serving
        process, rebuilds it on the refresher thread: a build sorts every row (3.4-3.7 ms at
        60,000 profiles, bench.feed_latency's start-up) and refreshes make a new snapshot every
        few seconds. Meanwhile the stale one serves: it lacks profiles added since and may hold
        old preferences of changed ones, which only makes the pre-filter propose a little less
        or a little more; the exact hard filter runs on every candidate afterwards."""
        part = self.memo.get("partition")
        if part is None or (self.memo.get("partition_stale") and not in_background()):
            part = self._build_partition()
        elif self.memo.get("partition_stale"):
            refresh_later(("store-partition", id(self)), self._build_partition)
        return part

    def _build_partition(self) -> _Partition:
        part = _Partition.build(self.batch)
        self.memo["partition"] = part
        self.memo["partition_stale"] = False
        return part

    def _rows_or_missing(self, pks: np.ndarray) -> np.ndarray:
        """(n,) row of each pk, -1 where the store does not hold it."""
        ok = (pks >= 0) & (pks < len(self.row_of))
        rows = np.full(len(pks), -1, dtype=np.int64)
        rows[ok] = self.row_of[pks[ok]]
        rows[rows >= len(self)] = -1
        return rows

    def _memo_rows_or_missing(self, pks: np.ndarray) -> np.ndarray:
        # Keyed by the array's identity, held in the entry so the id cannot be reused; callers
        # must not change the array in place (the collaborative model's map copies on write).
        cached = self.memo.get(("rows_of", id(pks)))
        if cached is not None and cached[0] is pks:
            return cached[1]
        rows = self._rows_or_missing(pks)
        self.memo[("rows_of", id(pks))] = (pks, rows)
        return rows

    def _prefilter_mask(self, user: ProfileFeatures, rows: np.ndarray) -> np.ndarray:
        b = self.batch
        gender = b.gender[rows]
        u_code = GENDER_CODE[user.gender]
        sought = (np.left_shift(np.uint8(1), gender.astype(np.uint8)) & seeking_mask(user.seeking)) != 0
        seeks_user = (b.seeking[rows] & (1 << u_code)) != 0
        age = b.age[rows]
        age_ok = (age >= user.age_min) & (age <= user.age_max) & (b.age_min[rows] <= user.age)
        age_ok &= b.age_max[rows] >= user.age
        dlat, dlon = _box(user)
        box = (np.abs(b.lat[rows] - user.lat) <= dlat) & (np.abs(b.lon[rows] - user.lon) <= dlon)
        return self.active[rows] & sought & seeks_user & age_ok & box


def _box(user: ProfileFeatures) -> tuple[float, float]:
    """(half height, half width) in degrees of the lat/lon box around the user that holds every
    point within their maximum distance."""
    dlat = user.max_distance_km / KM_PER_DEGREE
    # longitude degrees shrink with latitude; clamp so the poles do not divide by ~0
    return dlat, dlat / max(float(np.cos(np.radians(user.lat))), 0.01)


# ages are int16 in the store: shifted by 2**15 they fill the low 16 bits of a partition key
_AGE_RANGE = (-(2**15), 2**15 - 1)


def _partition_key(gender: Any, age: Any) -> Any:
    """The sort key of (gender code, age): ints, or int64 arrays of them."""
    return (gender << 16) | (age + 2**15)


@dataclass(frozen=True)
class _Partition:
    """Every row sorted by (gender, age), with the pre-filter's other columns in that order."""

    keys: np.ndarray  # (n,) int64 sorted _partition_key of each row
    order: np.ndarray  # (n,) int64 the row at each sorted position
    seeking: np.ndarray  # (n,) uint8
    age_min: np.ndarray  # (n,) int16
    age_max: np.ndarray  # (n,) int16
    lat: np.ndarray  # (n,) float64
    lon: np.ndarray  # (n,) float64

    @classmethod
    def build(cls, b: CandidateBatch) -> _Partition:
        keys = _partition_key(b.gender.astype(np.int64), b.age.astype(np.int64))
        order = np.argsort(keys, kind="stable")
        return cls(
            keys=keys[order],
            order=order,
            seeking=b.seeking[order],
            age_min=b.age_min[order],
            age_max=b.age_max[order],
            lat=b.lat[order],
            lon=b.lon[order],
        )


class _Columns:
    """Encoded features of fetched profile rows, ready to scatter into the store."""

    def __init__(self, size: int, n_words: int) -> None:
        self.pks = np.empty(size, dtype=np.int64)  # (m,)
        self.active = np.empty(size, dtype=bool)
        self.age = np.empty(size, dtype=np.int16)
        self.gender = np.empty(size, dtype=np.int8)
        self.seeking = np.empty(size, dtype=np.uint8)
        self.age_min = np.empty(size, dtype=np.int16)
        self.age_max = np.empty(size, dtype=np.int16)
        self.max_distance_km = np.empty(size, dtype=np.float64)
        self.lat = np.empty(size, dtype=np.float64)
        self.lon = np.empty(size, dtype=np.float64)
        self.interest_bits = np.zeros((size, n_words), dtype=np.uint64)  # (m, n_words)
        self.interest_count = np.empty(size, dtype=np.int32)
        self.attributes = np.empty((size, len(ATTRIBUTE_NAMES)), dtype=np.int64)  # (m, n_attrs)
        self.created = np.empty(size, dtype=np.float64)


_BATCH_FIELDS: tuple[str, ...] = (
    "age",
    "gender",
    "seeking",
    "age_min",
    "age_max",
    "max_distance_km",
    "lat",
    "lon",
    "interest_bits",
    "interest_count",
    "attributes",
)


class CandidateStore:
    """The feature store of one tenant; see the module docstring."""

    def __init__(self, tenant_id: int) -> None:
        self.tenant_id = tenant_id
        self._lock = threading.Lock()
        self._n = 0
        self._arrays: dict[str, np.ndarray] = {}
        self._elo = np.empty(0, dtype=np.float64)
        self._like_rate = np.empty(0, dtype=np.float64)
        self._swipes_given = np.empty(0, dtype=np.float64)
        self._likes_given = np.empty(0, dtype=np.float64)
        self._active = np.empty(0, dtype=bool)
        self._created = np.empty(0, dtype=np.float64)
        self._pks = np.empty(0, dtype=np.int64)
        self._row_of = np.full(1, -1, dtype=np.int64)
        self._vocab: dict[str, int] = {}
        self._n_words = 1
        self._attr_codes: dict[tuple[str, Any], int] = {}
        self._seeking_codes: dict[tuple[str, ...], int] = {}
        self._max_pk = 0
        self._profile_wm: datetime | None = None
        self._elo_wm: datetime | None = None
        self._checked_at = 0.0
        self._elo_checked_at = 0.0
        self._pools: tuple[float, np.ndarray, np.ndarray] | None = None
        self._median_like_rate: float | None = None
        self._derived_stale = False  # pools and median to recompute at the end of this refresh
        self._snapshot: StoreSnapshot | None = None
        self._last_snapshot: StoreSnapshot | None = None  # what the next snapshot inherits from
        self._allocate(0)

    # ------------------------------------------------------------------ reading

    def snapshot(self) -> StoreSnapshot:
        snap = self._snapshot
        if snap is None:
            snap = self._make_snapshot()
            self._snapshot = self._last_snapshot = snap
        return snap

    def pools(self) -> tuple[np.ndarray, np.ndarray]:
        """(popular rows, fresh rows): the ``POOL_SIZE`` active rows with the highest Elo and
        the newest ``created_at``, at most ``POOL_SECONDS`` old (or one refresh, when the
        refresher thread recomputes them)."""
        cached = self._pools
        if cached is not None and (in_background() or time.monotonic() - cached[0] < POOL_SECONDS):
            return cached[1], cached[2]
        return self._compute_pools()

    def median_like_rate(self) -> float:
        """The tenant's median smoothed like rate (selectivity is relative to it), kept until
        the next profile or Elo change: a median over a million rows costs ~10 ms."""
        median = self._median_like_rate
        if median is None:
            rates = self.snapshot().like_rate
            median = max(float(np.median(rates)) if len(rates) else PRIOR_LIKE_RATE, 1e-6)
            self._median_like_rate = median
        return median

    def _compute_pools(self) -> tuple[np.ndarray, np.ndarray]:
        # A full pass over the active rows (10 ms at 1M profiles): the reason it runs on the
        # refresher thread after each refresh rather than on a request.
        snap = self.snapshot()
        act = np.flatnonzero(snap.active)  # (a,)
        popular = act[_top(snap.elo[act], POOL_SIZE)]
        fresh = act[_top(snap.created[act], POOL_SIZE)]
        self._pools = (time.monotonic(), popular, fresh)
        return popular, fresh

    # ------------------------------------------------------------------ writing

    def build(self) -> None:
        """Load every active profile of the tenant and its Elo rating."""
        with self._lock:
            started = timezone.now()
            self._max_pk = Profile.objects.filter(tenant_id=self.tenant_id).aggregate(m=Max("pk"))["m"] or 0
            query = Profile.objects.filter(tenant_id=self.tenant_id, status=ProfileStatus.ACTIVE).order_by("pk")
            self._ingest(query.values_list(*_PROFILE_FIELDS).iterator(chunk_size=_FETCH_CHUNK))
            self._ingest_elo(EloRating.objects.filter(tenant_id=self.tenant_id).values_list(*_ELO_FIELDS))
            self._profile_wm = self._elo_wm = started
            self._checked_at = self._elo_checked_at = time.monotonic()

    def _due(self, *, force: bool = False) -> tuple[bool, bool, bool]:
        """(profiles, Elo, pools) due for a refresh now; pools only when the refresher keeps them."""
        now = time.monotonic()
        pools = self._pools
        return (
            force or now - self._checked_at >= refresh_seconds(),
            force or now - self._elo_checked_at >= elo_refresh_seconds(),
            in_background() and (pools is None or now - pools[0] >= POOL_SECONDS),
        )

    def refresh_due(self) -> bool:
        return any(self._due())

    def refresh(self, *, force: bool = False) -> bool:
        """Apply the deltas if due (or ``force``); False when skipped. Never waits for a
        refresh already running in another thread unless forced."""
        profiles_due, elo_due, pools_due = self._due(force=force)
        if not (profiles_due or elo_due or pools_due):
            return False
        if not self._lock.acquire(blocking=force):
            return False
        try:
            if profiles_due:
                self._refresh_profiles()
            if elo_due:
                self._refresh_elo()
            if in_background() and (pools_due or self._derived_stale or self._pools is None):
                # here, so that no request pays for them
                self._derived_stale = False
                self._compute_pools()
                self._median_like_rate = None
                self.median_like_rate()
        finally:
            self._lock.release()
        return True

    def mark_inactive(self, pks: Iterable[int]) -> None:
        """Take profiles found non-active in the database out of the candidate pools at once."""
        snap = self.snapshot()
        rows = snap.rows_for(np.fromiter(pks, dtype=np.int64))
        self._active[rows] = False
        cached = self._pools
        if cached is not None:  # drop them from the pools now instead of recomputing them
            at, popular, fresh = cached
            self._pools = (at, popular[self._active[popular]], fresh[self._active[fresh]])

    def _refresh_profiles(self) -> None:
        assert self._profile_wm is not None
        started = timezone.now()
        changed = Q(updated_at__gte=self._profile_wm - WATERMARK_OVERLAP) | Q(pk__gt=self._max_pk)
        rows = list(Profile.objects.filter(changed, tenant_id=self.tenant_id).values_list(*_PROFILE_FIELDS))
        if rows:
            added = self._ingest(rows)
            self._max_pk = max(self._max_pk, max(r[0] for r in rows))
            if len(added):
                # a profile that was not active at build time may already have a rating
                ratings = EloRating.objects.filter(profile_id__in=added.tolist())
                self._ingest_elo(ratings.values_list(*_ELO_FIELDS))
        self._profile_wm = started
        self._checked_at = time.monotonic()

    def _refresh_elo(self) -> None:
        assert self._elo_wm is not None
        started = timezone.now()
        recent = EloRating.objects.filter(tenant_id=self.tenant_id, updated_at__gte=self._elo_wm - WATERMARK_OVERLAP)
        self._ingest_elo(recent.values_list(*_ELO_FIELDS))
        self._elo_wm = started
        self._elo_checked_at = time.monotonic()

    def _ingest_elo(self, rows: Iterable[tuple[int, float, int, int]]) -> None:
        table = np.array(list(rows), dtype=np.float64).reshape(-1, 4)  # (m, 4): pk, rating, given, liked
        if len(table) == 0:
            return
        pks = table[:, 0].astype(np.int64)
        known = pks < len(self._row_of)
        rows_idx = self._row_of[pks[known]]
        ok = rows_idx >= 0
        self._elo[rows_idx[ok]] = table[known, 1][ok]
        self._like_rate[rows_idx[ok]] = smoothed_like_rate(table[known, 3][ok], table[known, 2][ok])
        self._swipes_given[rows_idx[ok]] = table[known, 2][ok]
        self._likes_given[rows_idx[ok]] = table[known, 3][ok]
        self._invalidate_derived()

    def _ingest(self, rows: Iterable[tuple[Any, ...]]) -> np.ndarray:
        """Encode and store fetched rows; returns the pks that got a new row."""
        added: list[np.ndarray] = []
        chunk: list[tuple[Any, ...]] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) >= _FETCH_CHUNK:
                added.append(self._ingest_chunk(chunk))
                chunk = []
        if chunk:
            added.append(self._ingest_chunk(chunk))
        self._snapshot = None
        self._invalidate_derived()
        return np.concatenate(added) if added else np.empty(0, dtype=np.int64)

    def _invalidate_derived(self) -> None:
        """The pools and the median are out of date after an ingest."""
        if in_background() and self._pools is not None:
            # Requests keep the previous ones until the refresher, at the end of this refresh,
            # recomputes them: dropping them here would make a request recompute them.
            self._derived_stale = True
        else:
            self._pools = None
            self._median_like_rate = None

    def _ingest_chunk(self, rows: list[tuple[Any, ...]]) -> np.ndarray:
        self._extend_vocab(rows)
        cols = self._encode(rows)
        self._ensure_row_of(int(cols.pks.max()))
        existing = self._row_of[cols.pks]  # (m,)
        # new rows only for active profiles; a non-active unknown profile has nothing to hide
        new = (existing < 0) & cols.active
        n_new = int(new.sum())
        self._ensure_capacity(self._n + n_new)
        target = existing.copy()
        target[new] = np.arange(self._n, self._n + n_new)
        self._row_of[cols.pks[new]] = target[new]
        write = target >= 0
        self._scatter(cols, target[write], write)
        self._n += n_new
        return cols.pks[new]

    def _scatter(self, cols: _Columns, rows: np.ndarray, sel: np.ndarray) -> None:
        for name in _BATCH_FIELDS:
            self._arrays[name][rows] = getattr(cols, name)[sel]
        self._pks[rows] = cols.pks[sel]
        self._active[rows] = cols.active[sel]
        self._created[rows] = cols.created[sel]
        self._elo[rows[rows >= self._n]] = EloConfig().initial  # new rows start at the initial rating
        self._like_rate[rows[rows >= self._n]] = PRIOR_LIKE_RATE
        self._swipes_given[rows[rows >= self._n]] = 0.0
        self._likes_given[rows[rows >= self._n]] = 0.0

    def _encode(self, rows: list[tuple[Any, ...]]) -> _Columns:
        cols = _Columns(len(rows), self._n_words)
        for i, r in enumerate(rows):
            cols.pks[i] = r[0]
            cols.active[i] = r[1] == ProfileStatus.ACTIVE
            cols.age[i], cols.age_min[i], cols.age_max[i] = r[2], r[5], r[6]
            cols.gender[i] = GENDER_CODE.get(r[3], 0)
            cols.seeking[i] = self._seeking_code(r[4])
            cols.max_distance_km[i], cols.lat[i], cols.lon[i] = r[7], r[8], r[9]
            tags = r[10] or ()
            cols.interest_count[i] = len(set(tags))
            for tag in tags:
                bit = self._vocab[tag]
                cols.interest_bits[i, bit >> 6] |= np.uint64(1) << np.uint64(bit & 63)
            cols.attributes[i] = [self._attr_code(name, r[_ATTR_OFFSET + j]) for j, name in enumerate(ATTRIBUTE_NAMES)]
            cols.created[i] = r[-1].timestamp()
        return cols

    def _seeking_code(self, seeking: Sequence[str] | None) -> int:
        key = tuple(seeking or ())
        code = self._seeking_codes.get(key)
        if code is None:
            code = self._seeking_codes[key] = seeking_mask([g for g in key if g in GENDER_CODE])
        return code

    def _attr_code(self, name: str, value: Any) -> int:
        key = (name, value)
        code = self._attr_codes.get(key)
        if code is None:
            code = self._attr_codes[key] = attribute_code(name, value)
        return code

    def _extend_vocab(self, rows: list[tuple[Any, ...]]) -> None:
        new_tags = sorted({t for r in rows for t in (r[10] or ()) if t not in self._vocab})
        if not new_tags:
            return
        # copy on write: snapshots keep the vocabulary that matches their bit arrays
        vocab = dict(self._vocab)
        for tag in new_tags:
            vocab[tag] = len(vocab)
        n_words = max(1, -(-len(vocab) // 64))
        if n_words > self._n_words:
            old = self._arrays["interest_bits"]
            bits = np.zeros((old.shape[0], n_words), dtype=np.uint64)  # (capacity, n_words)
            bits[:, : self._n_words] = old
            self._arrays["interest_bits"] = bits
            self._n_words = n_words
        self._vocab = vocab
        self._snapshot = None

    # ------------------------------------------------------------------ storage

    def _allocate(self, capacity: int) -> None:
        self._arrays = {
            "age": np.zeros(capacity, dtype=np.int16),
            "gender": np.zeros(capacity, dtype=np.int8),
            "seeking": np.zeros(capacity, dtype=np.uint8),
            "age_min": np.zeros(capacity, dtype=np.int16),
            "age_max": np.zeros(capacity, dtype=np.int16),
            "max_distance_km": np.zeros(capacity, dtype=np.float64),
            "lat": np.zeros(capacity, dtype=np.float64),
            "lon": np.zeros(capacity, dtype=np.float64),
            "interest_bits": np.zeros((capacity, self._n_words), dtype=np.uint64),
            "interest_count": np.zeros(capacity, dtype=np.int32),
            "attributes": np.full((capacity, len(ATTRIBUTE_NAMES)), -1, dtype=np.int64),
        }
        self._elo = np.full(capacity, EloConfig().initial, dtype=np.float64)
        self._like_rate = np.full(capacity, PRIOR_LIKE_RATE, dtype=np.float64)
        self._swipes_given = np.zeros(capacity, dtype=np.float64)
        self._likes_given = np.zeros(capacity, dtype=np.float64)
        self._active = np.zeros(capacity, dtype=bool)
        self._created = np.zeros(capacity, dtype=np.float64)
        self._pks = np.zeros(capacity, dtype=np.int64)

    def _ensure_capacity(self, needed: int) -> None:
        capacity = len(self._pks)
        if needed <= capacity:
            return
        new_capacity = max(needed, 2 * capacity, 1024)
        old_fields, old_rows = dict(self._arrays), self._row_arrays()
        self._allocate(new_capacity)
        for name, arr in old_fields.items():
            self._arrays[name][:capacity] = arr
        for new_arr, old_arr in zip(self._row_arrays(), old_rows, strict=True):
            new_arr[:capacity] = old_arr
        self._snapshot = None

    def _row_arrays(self) -> tuple[np.ndarray, ...]:
        """The per-row arrays besides the profile fields (grown together)."""
        return (
            self._elo,
            self._like_rate,
            self._swipes_given,
            self._likes_given,
            self._active,
            self._created,
            self._pks,
        )

    def _ensure_row_of(self, max_pk: int) -> None:
        if max_pk < len(self._row_of):
            return
        row_of = np.full(max(max_pk + 1, 2 * len(self._row_of)), -1, dtype=np.int64)
        row_of[: len(self._row_of)] = self._row_of
        self._row_of = row_of
        self._snapshot = None

    def _make_snapshot(self) -> StoreSnapshot:
        n = self._n
        memo: dict[Any, Any] = {}
        previous = self._last_snapshot
        if previous is not None and "partition" in previous.memo:
            memo.update(partition=previous.memo["partition"], partition_stale=True)
        batch = CandidateBatch(
            ids=self._pks[:n],
            interest_vocab=self._vocab,
            **{name: self._arrays[name][:n] for name in _BATCH_FIELDS},
        )
        return StoreSnapshot(
            batch=batch,
            elo=self._elo[:n],
            like_rate=self._like_rate[:n],
            swipes_given=self._swipes_given[:n],
            likes_given=self._likes_given[:n],
            active=self._active[:n],
            created=self._created[:n],
            row_of=self._row_of,
            memo=memo,
        )


def _top(values: np.ndarray, k: int) -> np.ndarray:
    """(min(k, n),) positions of the k largest values, largest first."""
    if len(values) <= k:
        return np.argsort(-values, kind="stable")
    part = np.argpartition(-values, k - 1)[:k]
    return part[np.argsort(-values[part], kind="stable")]


class StoreWarmingUp(RuntimeError):
    """The tenant's store is still being built in this process; the request should be retried."""

    def __init__(self, tenant_id: int, retry_after: int) -> None:
        super().__init__(f"the candidate store of tenant {tenant_id} is still being built")
        self.retry_after = retry_after


_stores: dict[int, CandidateStore] = {}
_stores_lock = threading.Lock()
_builds: dict[int, threading.Event] = {}  # tenant -> set when its background first build ended


def candidate_store(tenant_id: int) -> CandidateStore:
    """The tenant's store, built on first use and refreshed when due.

    With background refreshes on (serving processes), the first build runs on a thread of its
    own and a request waits for it at most ``SERVING_FIRST_LOAD_WAIT_SECONDS``, then gets
    :class:`StoreWarmingUp` (the API answers 503 with Retry-After): at a million profiles the
    build takes about a minute, longer than a web server lets one request run before it kills
    the worker, which would then start the build over. Inline (tests, commands) it is built on
    the caller's thread.
    """
    store = _stores.get(tenant_id)
    if store is None:
        if in_background():
            return _built_in_background(tenant_id)
        with _stores_lock:  # held while building so two threads never build one tenant twice
            store = _stores.get(tenant_id)
            if store is None:
                store = _build(tenant_id)
        return store
    if store.refresh_due():
        refresh_later(("candidate-store", tenant_id), store.refresh)
    return store


def _build(tenant_id: int) -> CandidateStore:
    store = CandidateStore(tenant_id)
    store.build()
    _stores[tenant_id] = store
    return store


def _built_in_background(tenant_id: int) -> CandidateStore:
    with _stores_lock:
        store = _stores.get(tenant_id)
        if store is not None:
            return store
        done = _builds.get(tenant_id)
        if done is None:
            done = _builds[tenant_id] = threading.Event()
            thread = threading.Thread(target=_build_then_signal, args=(tenant_id, done), daemon=True)
            thread.name = f"store-build-{tenant_id}"
            thread.start()
    wait = first_load_wait(float("inf"))
    done.wait(wait)
    store = _stores.get(tenant_id)
    if store is None:
        raise StoreWarmingUp(tenant_id, retry_after=max(1, round(wait)))
    return store


def _build_then_signal(tenant_id: int, done: threading.Event) -> None:
    try:
        _build(tenant_id)
    except Exception:  # the next request starts another build
        logger.exception("building the candidate store of tenant %s failed", tenant_id)
    finally:
        with _stores_lock:
            _builds.pop(tenant_id, None)
        done.set()
        connections.close_all()  # this thread's connection dies with it


def stores_building() -> list[int]:
    """Tenants whose candidate store this process is building now (their feeds answer 503)."""
    with _stores_lock:
        return sorted(_builds)


def stores_reset() -> None:
    with _stores_lock:
        _stores.clear()
