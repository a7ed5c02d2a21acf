"""Feed invariants over a simulated population on PostgreSQL.

Over the OkCupid demo sample (400 profiles, 2,000 simulated swipes) and at least 50 random users,
every feed item is checked against the raw profile rows by code independent of the feed's own
(numpy) filters: compatible both ways, never swiped, never the user, always active. Then the
profiles shown most are banned and must vanish from every feed at once.
"""

from __future__ import annotations

import math
import random

import pytest
from django.core.management import call_command

from accounts.models import Tenant
from recommender.feed.pipeline import FeedResult, feed_for
from recommender.indexing import index_build
from recommender.models import Profile, ProfileStatus, Swipe
from recommender.services.profiles import profile_set_status

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

USERS = 60
EARTH_RADIUS_KM = 6371.0088


@pytest.fixture(autouse=True)
def _fresh_feed_state(isolated_ml_state: None) -> None:
    """Every test here starts from empty in-process feed and index state (see conftest)."""


@pytest.fixture
def population(tenant: Tenant) -> dict[int, Profile]:
    call_command("load_demo", "--limit", "400", "--swipes", "2000", "--no-users", verbosity=0)
    index_build(tenant=tenant)
    return Profile.objects.filter(tenant=tenant).in_bulk()


def km(a: Profile, b: Profile) -> float:
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp, dl = p2 - p1, math.radians(b.lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, h)))


def broken_rules(u: Profile, v: Profile) -> list[str]:
    rules = {
        "u seeks v's gender": v.gender in u.seeking,
        "v seeks u's gender": u.gender in v.seeking,
        "v's age in u's range": u.age_min <= v.age <= u.age_max,
        "u's age in v's range": v.age_min <= u.age <= v.age_max,
        # a hair of tolerance: the feed computes distances in float64 numpy, this in math
        "within both max distances": km(u, v) <= min(u.max_distance_km, v.max_distance_km) + 1e-6,
    }
    return [name for name, ok in rules.items() if not ok]


def check_feed(user: Profile, result: FeedResult, swiped: set[int]) -> None:
    live = Profile.objects.in_bulk([item.profile_id for item in result.items])
    for item in result.items:
        v = live[item.profile_id]
        assert v.pk != user.pk
        assert v.pk not in swiped, f"{user.pk} already swiped {v.pk}"
        assert v.status == ProfileStatus.ACTIVE, f"{v.pk} is {v.status}"
        assert v.external_id == item.external_id
        assert not broken_rules(user, v), (user.pk, v.pk, broken_rules(user, v))
    scores = [item.score for item in result.items]
    assert scores == sorted(scores, reverse=True)


def test_feeds_keep_every_invariant_and_bans_take_effect(tenant, population):
    users = random.Random(11).sample(sorted(population), USERS)
    appearances: dict[int, int] = {}
    non_empty = 0
    for variant in ("reciprocal", "random"):
        for pk in users:
            user = population[pk]
            swiped = set(Swipe.objects.filter(user=user).values_list("candidate_id", flat=True))
            result = feed_for(tenant=tenant, user=user, count=20, log_impressions=False, variant=variant)
            assert result.fallback is None
            check_feed(user, result, swiped)
            non_empty += bool(result.items)
            for item in result.items:
                appearances[item.profile_id] = appearances.get(item.profile_id, 0) + 1
    assert non_empty >= USERS  # most users of the sample have someone compatible nearby

    banned = sorted(appearances, key=lambda pk: -appearances[pk])[:10]
    for pk in banned:
        profile_set_status(profile=population[pk], status=ProfileStatus.BANNED)
    after: dict[int, int] = {}
    for pk in users:
        if pk in banned:
            continue
        result = feed_for(tenant=tenant, user=population[pk], count=20, log_impressions=False)
        for item in result.items:
            after[item.profile_id] = after.get(item.profile_id, 0) + 1
    assert sum(appearances[pk] for pk in banned) > 0
    assert sum(after.get(pk, 0) for pk in banned) == 0
