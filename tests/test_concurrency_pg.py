"""Races on real PostgreSQL: many workers writing at the same moment.

Each test runs writers in threads (each with its own database connection) released together by a
barrier, so their transactions overlap as they would on two API workers.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from accounts.models import Tenant
from recommender.models import EloRating, Match, Profile, Swipe
from recommender.services.events import SwipeIn, swipe_batch_ingest
from recommender.services.profiles import profile_create
from tests.concurrency import run_together as run_jobs_together
from tests.conftest import profile_data

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)


def run_together(*jobs: Callable[[], Any]) -> list[Any]:
    results = run_jobs_together(*jobs)
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors
    return results


def new_profile(tenant: Tenant, **kw: Any) -> Profile:
    data = profile_data(**kw)
    data["external_id"] = uuid.UUID(data["external_id"])
    return profile_create(tenant=tenant, data=data)


def like(tenant: Tenant, user: Profile, candidate: Profile, session: str) -> Callable[[], Any]:
    return lambda: swipe_batch_ingest(
        tenant=tenant, user=user, session_id=session, timestamp=T0, swipes=[SwipeIn(candidate.external_id, "like")]
    )


def test_simultaneous_mutual_likes_make_exactly_one_match(tenant):
    pairs = [(new_profile(tenant), new_profile(tenant, gender="man", seeking=["woman"])) for _ in range(25)]
    for woman, man in pairs:
        results = run_together(like(tenant, woman, man, "a"), like(tenant, man, woman, "b"))
        # Exactly one of the two answers reports the match, and exactly one row exists.
        assert sum(len(r.matches) for r in results) == 1
        assert Match.objects.filter(user_a=min(woman.pk, man.pk), user_b=max(woman.pk, man.pk)).count() == 1
    assert Match.objects.count() == len(pairs)


def test_concurrent_resends_store_each_swipe_once(tenant):
    user = new_profile(tenant)
    candidates = [new_profile(tenant, gender="man", seeking=["woman"]) for _ in range(10)]
    swipes = [SwipeIn(c.external_id, "pass", 900, f"ev-{i}") for i, c in enumerate(candidates)]

    def send() -> Any:
        return swipe_batch_ingest(tenant=tenant, user=user, session_id="s", timestamp=T0, swipes=swipes)

    results = run_together(send, send, send)
    assert sum(r.created for r in results) == 10
    assert sum(r.duplicates for r in results) == 20
    assert Swipe.objects.count() == 10


def test_concurrent_likes_of_one_candidate_lose_no_elo_update(tenant):
    star = new_profile(tenant, gender="man", seeking=["woman"])
    fans = [new_profile(tenant) for _ in range(12)]
    run_together(*(like(tenant, fan, star, f"s{i}") for i, fan in enumerate(fans)))
    rating = EloRating.objects.get(profile=star)
    assert rating.swipes_received == len(fans)
    assert rating.rating > 1500


def test_concurrent_overlapping_resends_in_any_order_store_each_swipe_once(tenant):
    # Re-sends of overlapping batches in different orders: the user's lock serialises them, so
    # their inserts (ON CONFLICT DO NOTHING, which waits on a row another transaction inserted)
    # cannot deadlock, and every swipe is stored and counted exactly once. Passes only: likes
    # would take pair locks, which serialise these batches too.
    user = new_profile(tenant)
    candidates = [new_profile(tenant, gender="man", seeking=["woman"]) for _ in range(40)]
    swipes = [SwipeIn(c.external_id, "pass", 900, f"ev-{i}") for i, c in enumerate(candidates)]
    orders = [swipes, swipes[::-1], swipes[20:] + swipes[:20], swipes[::2] + swipes[1::2]]

    def send(batch: list[SwipeIn]) -> Callable[[], Any]:
        return lambda: swipe_batch_ingest(tenant=tenant, user=user, session_id="s", timestamp=T0, swipes=batch)

    results = run_together(*(send(batch) for batch in orders))
    assert sum(r.created for r in results) == 40
    assert sum(r.duplicates for r in results) == 3 * 40
    assert Swipe.objects.count() == 40
    assert set(EloRating.objects.filter(profile__in=candidates).values_list("swipes_received", flat=True)) == {1}
    mine = EloRating.objects.get(profile=user)
    assert (mine.swipes_given, mine.likes_given) == (40, 0)


def test_concurrent_batches_on_shared_new_candidates_lose_no_elo_update(tenant):
    # Many users swipe the same candidates, none of whom has an Elo row yet, each batch in its own
    # order: the rows are created and locked in one sorted statement, so no writer deadlocks and
    # no counter or rating update is lost.
    candidates = [new_profile(tenant, gender="man", seeking=["woman"]) for _ in range(10)]
    users = [new_profile(tenant) for _ in range(8)]

    def send(k: int, user: Profile) -> Callable[[], Any]:
        ordered = candidates[k:] + candidates[:k]
        swipes = [SwipeIn(c.external_id, "like") for c in ordered]
        return lambda: swipe_batch_ingest(tenant=tenant, user=user, session_id=f"s{k}", timestamp=T0, swipes=swipes)

    run_together(*(send(k, user) for k, user in enumerate(users)))
    ratings = {r.profile_id: r for r in EloRating.objects.all()}
    for c in candidates:
        assert ratings[c.pk].swipes_received == len(users)
        assert ratings[c.pk].rating > 1500 + 8  # eight likes, each worth more than one point
    for u in users:
        assert (ratings[u.pk].swipes_given, ratings[u.pk].likes_given) == (10, 10)
    assert Swipe.objects.count() == len(users) * len(candidates)
