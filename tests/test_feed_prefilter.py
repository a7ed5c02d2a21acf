"""The candidate store's structured pre-filter, against its definition written out row by row.

``StoreSnapshot.prefilter_all`` reads a (gender, age)-sorted partition of the store instead of
every row; these tests pin that it finds exactly the rows the plain definition finds, for random
populations and users, including users outside every range and rows turned inactive after the
partition was built.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest

from core import refresher
from recommender.feed.store import KM_PER_DEGREE, StoreSnapshot
from recommender.ml.structured import CandidateBatch, ProfileFeatures
from recommender.vocabulary import GENDERS


def _population(n: int, seed: int) -> list[ProfileFeatures]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        lo = int(rng.integers(18, 60))
        out.append(
            ProfileFeatures(
                age=int(rng.integers(18, 80)),
                gender=str(rng.choice(GENDERS)),
                seeking=tuple(str(g) for g in rng.choice(GENDERS, size=int(rng.integers(1, 3)), replace=False)),
                age_min=lo,
                age_max=lo + int(rng.integers(-3, 30)),  # sometimes below age_min: nobody fits
                max_distance_km=float(rng.choice([5.0, 50.0, 500.0])),
                lat=float(rng.uniform(37.0, 38.5)),
                lon=float(rng.uniform(-123.0, -121.5)),
            )
        )
    return out


def _snapshot(features: list[ProfileFeatures], active: np.ndarray) -> StoreSnapshot:
    batch = CandidateBatch.from_features(features, ids=np.arange(10, 10 + len(features)))
    row_of = np.full(10 + len(features) + 5, -1, dtype=np.int64)
    row_of[batch.ids] = np.arange(len(features))
    n = len(features)
    return StoreSnapshot(
        batch=batch,
        elo=np.full(n, 1500.0),
        like_rate=np.full(n, 0.3),
        swipes_given=np.zeros(n),
        likes_given=np.zeros(n),
        active=active,
        created=np.zeros(n),
        row_of=row_of,
    )


def _by_definition(user: ProfileFeatures, people: list[ProfileFeatures], active: np.ndarray) -> list[int]:
    dlat = user.max_distance_km / KM_PER_DEGREE
    dlon = dlat / max(np.cos(np.radians(user.lat)), 0.01)
    return [
        row
        for row, v in enumerate(people)
        if active[row]
        and v.gender in user.seeking
        and user.gender in v.seeking
        and user.age_min <= v.age <= user.age_max
        and v.age_min <= user.age <= v.age_max
        and abs(v.lat - user.lat) <= dlat
        and abs(v.lon - user.lon) <= dlon
    ]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_prefilter_all_finds_exactly_the_rows_of_the_definition(seed: int) -> None:
    people = _population(600, seed)
    active = np.random.default_rng(seed).random(600) > 0.1
    snap = _snapshot(people, active)
    users = _population(80, seed + 100)
    assert any(_by_definition(u, people, active) for u in users)  # the check is not vacuous
    for user in users:
        assert snap.prefilter_all(user).tolist() == _by_definition(user, people, active)


def test_prefilter_pks_agrees_for_large_and_small_lookups_and_unknown_pks() -> None:
    people = _population(400, 7)
    active = np.ones(400, dtype=bool)
    snap = _snapshot(people, active)
    rng = np.random.default_rng(7)
    # more than a quarter of the store (the partition path) and fewer (the per-row path), with
    # -1, pks past the map and pks the store does not hold mixed in
    large = rng.permutation(np.concatenate([snap.batch.ids, [-1, 5, 10_000]]))
    small = large[:60]
    for user in _population(30, 8):
        wanted = {int(snap.batch.ids[row]) for row in _by_definition(user, people, active)}
        for pks in (large, small):
            mask = snap.prefilter_pks(user, pks)
            assert {int(pk) for pk in pks[mask]} == {int(pk) for pk in pks if int(pk) in wanted}


def test_a_row_turned_inactive_after_the_partition_was_built_is_left_out() -> None:
    people = _population(300, 11)
    active = np.ones(300, dtype=bool)
    snap = _snapshot(people, active)
    user = next(u for u in _population(50, 12) if len(_by_definition(u, people, active)) >= 3)
    first = snap.prefilter_all(user)  # builds the partition
    active[first[0]] = False  # what CandidateStore.mark_inactive does, in place
    assert snap.prefilter_all(user).tolist() == first[1:].tolist()


def test_a_user_who_seeks_no_gender_or_an_empty_age_range_gets_nothing() -> None:
    people = _population(200, 13)
    snap = _snapshot(people, np.ones(200, dtype=bool))
    user = replace(_population(1, 14)[0], age_min=18, age_max=99, max_distance_km=5000.0)
    assert len(snap.prefilter_all(user)) > 0
    assert len(snap.prefilter_all(replace(user, age_min=40, age_max=39))) == 0
    assert len(snap.prefilter_all(replace(user, seeking=()))) == 0


def _successor(snap: StoreSnapshot, people: list[ProfileFeatures], active: np.ndarray) -> StoreSnapshot:
    """What CandidateStore._make_snapshot does after a refresh: new arrays, the old partition
    inherited and marked stale."""
    fresh = _snapshot(people, active)
    return replace(fresh, memo={"partition": snap.memo["partition"], "partition_stale": True})


@dataclass(frozen=True)
class _Refreshed:
    """A snapshot after a refresh that moved two of the user's pre-filtered rows far away."""

    user: ProfileFeatures
    found_before: list[int]  # the rows passing before the move
    expected: list[int]  # the rows passing after it, by the definition
    snapshot: StoreSnapshot  # the successor, holding the old partition marked stale


def _refreshed(seed: int) -> _Refreshed:
    people = _population(300, seed)
    active = np.ones(300, dtype=bool)
    user = next(u for u in _population(50, seed + 1) if len(_by_definition(u, people, active)) >= 4)
    old = _snapshot(people, active)
    found = old.prefilter_all(user)  # builds the partition the successor inherits
    moved = list(people)
    for row in found[:2].tolist():
        moved[row] = replace(moved[row], lat=moved[row].lat + 20.0)  # far outside every box
    expected = _by_definition(user, moved, active)
    assert expected == found[2:].tolist()
    return _Refreshed(user, found.tolist(), expected, _successor(old, moved, active))


def test_without_a_refresher_a_stale_partition_is_rebuilt_before_use(settings: Any) -> None:
    settings.SERVING_REFRESH_IN_BACKGROUND = False
    case = _refreshed(21)
    assert case.snapshot.prefilter_all(case.user).tolist() == case.expected


def test_in_a_serving_process_the_stale_partition_serves_while_the_refresher_rebuilds_it(
    settings: Any,
) -> None:
    settings.SERVING_REFRESH_IN_BACKGROUND = True
    case = _refreshed(23)
    release = threading.Event()
    # hold the refresher thread, so the request's answer is the stale partition's for sure
    refresher.refresh_later("test-hold", release.wait)
    try:
        assert case.snapshot.prefilter_all(case.user).tolist() == case.found_before  # old preferences, at once
    finally:
        release.set()
    assert refresher.wait_idle(10.0)
    assert case.snapshot.memo["partition_stale"] is False
    assert case.snapshot.prefilter_all(case.user).tolist() == case.expected
