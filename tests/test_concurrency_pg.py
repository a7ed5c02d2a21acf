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

from recommender.models import EloRating, Match, Profile, Swipe, Tenant
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
