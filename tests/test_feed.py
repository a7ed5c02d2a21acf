"""The reciprocal feed service: filters both ways, exclusions, scoring signals, fallback, logging.

The user of most tests is a 30-year-old woman in San Francisco seeking men aged 25..40 within
30 km; candidates are built to pass or to break exactly one rule.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from accounts.models import Tenant
from recommender.feed.features import profile_features
from recommender.feed.pipeline import FeedFilters, FeedResult, _eligible, feed_for
from recommender.feed.reads import excluded_profile_ids, feed_reads, swipe_histories
from recommender.feed.scoring import PASSED_YOU_FACTOR, exploration_slots
from recommender.feed.store import candidate_store
from recommender.indexing import index_build
from recommender.models import Impression, Match, Profile, ProfileStatus, Swipe
from recommender.services.events import (
    MatchIn,
    SwipeIn,
    impressions_record_served,
    match_events_ingest,
    swipe_batch_ingest,
)
from recommender.services.profiles import profile_erase, profile_set_status

SF = (37.7749, -122.4194)
KM_PER_DEG_LAT = 111.2
COMPONENTS = {
    "similarity",
    "structured",
    "age_fit",
    "distance",
    "interests",
    "lifestyle",
    "elo",
    "interaction",
    "selectivity",
    "collaborative_user_likes",
    "collaborative_candidate_likes",
    "liked_you",
    "p_user_likes",
    "p_candidate_likes",
    "reciprocal",
    "explore",
}


@pytest.fixture(autouse=True)
def _fresh_feed_state(isolated_ml_state: None) -> None:
    """Every test here starts from empty in-process feed and index state (see conftest)."""


@pytest.fixture
def user(make_profile: Callable[..., Profile]) -> Profile:
    return make_profile(
        gender="woman", seeking=["man"], age=30, age_min=25, age_max=40, max_distance_km=30.0, lat=SF[0], lon=SF[1]
    )


@pytest.fixture
def man(make_profile: Callable[..., Profile]) -> Callable[..., Profile]:
    """An eligible match for ``user`` unless overridden: a 32-year-old man seeking women 25..40."""

    def make(km_north: float = 2.0, **overrides: Any) -> Profile:
        data: dict[str, Any] = {
            "gender": "man",
            "seeking": ["woman"],
            "age": 32,
            "age_min": 25,
            "age_max": 40,
            "max_distance_km": 50.0,
            "lat": SF[0] + km_north / KM_PER_DEG_LAT,
            "lon": SF[1],
            "bio": "Cyclist, amateur cook and board game fan.",
        }
        data.update(overrides)
        return make_profile(**data)

    return make


def feed(tenant: Tenant, user: Profile, **kwargs: Any) -> FeedResult:
    kwargs.setdefault("log_impressions", False)
    return feed_for(tenant=tenant, user=user, **kwargs)


def shown(result: FeedResult) -> set[int]:
    return {item.profile_id for item in result.items}


def swipe(tenant: Tenant, who: Profile, target: Profile, action: str) -> None:
    swipe_batch_ingest(
        tenant=tenant,
        user=who,
        session_id=f"s-{uuid.uuid4()}",
        timestamp=timezone.now(),
        swipes=[SwipeIn(candidate_id=target.external_id, action=action)],
    )


# --------------------------------------------------------------------------- shape


@pytest.mark.parametrize("with_index", [True, False])
def test_feed_shape_and_order(tenant, user, man, with_index):
    men = [man(km_north=i, age=26 + i) for i in range(1, 12)]
    if with_index:
        index_build(tenant=tenant)
    result = feed(tenant, user, count=8)
    assert len(result.items) == 8
    assert shown(result) <= {m.pk for m in men}
    scores = [item.score for item in result.items]
    assert scores == sorted(scores, reverse=True)
    externals = {m.pk: m.external_id for m in men}
    for item in result.items:
        assert set(item.components) == COMPONENTS
        assert item.external_id == externals[item.profile_id]
        assert 0.0 <= item.score <= 1.0
        assert item.score == item.components["reciprocal"]  # full precision, not rounded
    assert result.latency_ms > 0
    assert {"store", "history", "candidates", "filter", "score", "select", "live_check"} <= set(result.stage_ms)
    if with_index:
        assert result.fallback is None
        assert result.model_version.startswith("feed-v1+index:")
        assert all(item.components["similarity"] is not None for item in result.items)
    else:
        assert result.fallback == "index_missing"
        assert result.model_version == "feed-v1-fallback"
        assert all(item.components["similarity"] is None for item in result.items)


# --------------------------------------------------------------------------- hard filters


def violators(man: Callable[..., Profile], make_profile: Callable[..., Profile]) -> dict[str, Profile]:
    """One candidate per rule and direction, each eligible on every other rule."""
    return {
        "user does not seek their gender": man(gender="nonbinary", seeking=["woman"]),
        "they do not seek the user's gender": man(seeking=["man"]),
        "too old for the user": man(age=45, age_min=20, age_max=60),
        "too young for the user": man(age=22, age_min=20, age_max=60),
        "the user is too old for them": man(age=32, age_min=18, age_max=28),
        "the user is too young for them": man(age=32, age_min=35, age_max=50),
        "beyond the user's max distance": man(km_north=40.0, max_distance_km=100.0),
        "beyond their max distance": man(km_north=20.0, max_distance_km=10.0),
    }


@pytest.mark.parametrize("ml_enabled", [True, False])
def test_hard_filters_hold_both_ways(settings, tenant, user, man, make_profile, ml_enabled):
    settings.ML_ENABLED = ml_enabled
    bad = violators(man, make_profile)
    good = [man(km_north=1.0 + i) for i in range(3)]
    if ml_enabled:
        index_build(tenant=tenant)
    result = feed(tenant, user, count=50)
    assert shown(result) == {p.pk for p in good}, {rule for rule, p in bad.items() if p.pk in shown(result)}
    # and the rules hold from the other side: none of the violators gets the user either
    for rule, p in bad.items():
        assert user.pk not in shown(feed(tenant, p, count=50)), rule


def test_never_the_user_nor_swiped_nor_matched(tenant, user, man):
    men = [man(km_north=1.0 + i) for i in range(8)]
    swipe(tenant, user, men[0], "like")
    swipe(tenant, user, men[1], "pass")
    swipe(tenant, user, men[2], "superlike")
    match_events_ingest(tenant=tenant, matches=[MatchIn(user.external_id, men[3].external_id, timezone.now())])
    assert excluded_profile_ids(tenant.pk, user.pk) == {user.pk, men[3].pk}
    index_build(tenant=tenant)
    assert shown(feed(tenant, user, count=50)) == {m.pk for m in men[4:]}


def test_blocked_and_reported_are_never_shown(tenant, user, man):
    from safety.services import block_create, report_create

    men = [man(km_north=1.0 + i) for i in range(6)]
    block_create(blocker=user, blocked=men[0])
    block_create(blocker=men[1], blocked=user)  # blocks hold both ways
    report_create(reporter=user, reported=men[2], reason="harassment")
    index_build(tenant=tenant)
    assert excluded_profile_ids(tenant.pk, user.pk) == {user.pk, men[0].pk, men[1].pk, men[2].pk}
    assert shown(feed(tenant, user, count=50)) == {m.pk for m in men[3:]}


def test_feed_reads_agree_with_the_orm_reads(tenant, other_tenant, user, man, make_profile):
    """feed_reads is hand-written SQL for speed: it must read exactly what swipe_histories and
    the safety app's querysets read, both ways, and nothing of other users or tenants."""
    from safety.selectors import blocked_or_reported_queries
    from safety.services import block_create, report_create

    men = [man(km_north=1.0 + i) for i in range(10)]
    swipe(tenant, user, men[0], "like")
    swipe(tenant, user, men[1], "pass")
    swipe(tenant, user, men[2], "superlike")
    swipe(tenant, men[4], user, "like")  # likes received
    swipe(tenant, men[5], user, "superlike")
    swipe(tenant, men[6], user, "pass")  # not a like: not a liker
    swipe(tenant, men[4], men[7], "like")  # someone else's swipe
    match_events_ingest(tenant=tenant, matches=[MatchIn(user.external_id, men[3].external_id, timezone.now())])
    match_events_ingest(tenant=tenant, matches=[MatchIn(men[8].external_id, user.external_id, timezone.now())])
    block_create(blocker=user, blocked=men[9])
    block_create(blocker=men[7], blocked=user)
    report_create(reporter=user, reported=men[6], reason="harassment")
    report_create(reporter=men[5], reported=user, reason="spam")  # a report *of* the user excludes nothing
    stranger = make_profile(tenant_=other_tenant)
    block_create(blocker=stranger, blocked=make_profile(tenant_=other_tenant))

    reads = feed_reads(tenant_id=tenant.pk, user_id=user.pk)
    orm = swipe_histories(user_ids=[user.pk])[user.pk]
    assert sorted(reads.history.swiped) == sorted(orm.swiped) == sorted(m.pk for m in men[:3])
    assert reads.history.liked == orm.liked == [men[0].pk]
    assert reads.history.superliked == orm.superliked == [men[2].pk]
    assert reads.history.passed == orm.passed == [men[1].pk]
    assert sorted(reads.history.likers) == sorted(orm.likers) == sorted([men[4].pk, men[5].pk])
    assert list(reads.history.passers) == list(orm.passers) == [men[6].pk]
    safety = {pk for qs in blocked_or_reported_queries(tenant_id=tenant.pk, user_id=user.pk) for (pk,) in qs}
    assert reads.excluded == {user.pk, men[3].pk, men[8].pk} | safety
    assert safety == {men[9].pk, men[7].pk, men[6].pk}
    assert feed_reads(tenant_id=tenant.pk, user_id=men[0].pk).excluded == {men[0].pk}


# --------------------------------------------------------------------------- status


def test_banned_hidden_and_erased_are_never_shown(tenant, user, man):
    men = [man(km_north=1.0 + i) for i in range(10)]
    index_build(tenant=tenant)
    assert shown(feed(tenant, user, count=50)) == {m.pk for m in men}
    profile_set_status(profile=men[0], status=ProfileStatus.BANNED)
    profile_set_status(profile=men[1], status=ProfileStatus.HIDDEN)
    profile_erase(profile=men[2])
    assert shown(feed(tenant, user, count=50)) == {m.pk for m in men[3:]}


def test_a_ban_the_caches_missed_is_caught_by_the_live_check(settings, tenant, user, man):
    men = [man(km_north=1.0 + i) for i in range(6)]
    index_build(tenant=tenant)
    settings.FEED_STORE_REFRESH_SECONDS = 3600
    settings.INDEX_REFRESH_SECONDS = 3600
    first = feed(tenant, user, count=5)
    assert len(first.items) == 5
    # a raw update: no updated_at, no hook, so the store and the index still think it active
    banned = first.items[0].profile_id
    Profile.objects.filter(pk=banned).update(status=ProfileStatus.BANNED)
    second = feed(tenant, user, count=5)
    assert banned not in shown(second)
    assert len(second.items) == 5  # replaced by the next one
    assert shown(second) <= {m.pk for m in men}


# --------------------------------------------------------------------------- candidates


def test_cold_start_user_gets_a_full_feed(tenant, user, man):
    for i in range(30):
        man(km_north=0.5 + i * 0.5, age=25 + i % 15, bio=f"Profile number {i}: I like {['jazz', 'tennis'][i % 2]}.")
    index_build(tenant=tenant)
    assert not Swipe.objects.filter(user=user).exists()
    result = feed(tenant, user, count=20)
    assert len(result.items) == 20
    assert result.fallback is None


def test_a_new_profile_reaches_other_feeds(tenant, user, man):
    for i in range(5):
        man(km_north=1.0 + i)
    index_build(tenant=tenant)
    feed(tenant, user, count=50)  # builds the store and loads the index
    newcomer = man(km_north=0.5, bio="Just joined: sailing, books and long dinners.")
    assert newcomer.pk in shown(feed(tenant, user, count=50))


def test_a_candidate_who_passed_on_the_user_ranks_below_an_identical_one(tenant, user, man, make_profile):
    twin_a = man(km_north=3.0)
    twin_b = man(km_north=3.0)
    for i in range(5):
        man(km_north=1.0 + i, bio=f"Someone else entirely, number {i}.")
    swipe(tenant, twin_a, user, "pass")
    swipe(tenant, twin_b, make_profile(), "pass")  # the same counters: one swipe, no like
    index_build(tenant=tenant)
    items = {item.profile_id: (rank, item) for rank, item in enumerate(feed(tenant, user, count=50).items)}
    rank_a, item_a = items[twin_a.pk]
    rank_b, item_b = items[twin_b.pk]
    assert rank_a > rank_b
    assert item_a.components["p_candidate_likes"] == pytest.approx(
        PASSED_YOU_FACTOR * item_b.components["p_candidate_likes"], abs=1e-3
    )


def test_liked_you_ranks_above_an_identical_candidate(tenant, user, man):
    twin_a = man(km_north=3.0)
    twin_b = man(km_north=3.0)
    for i in range(5):
        man(km_north=1.0 + i, bio=f"Someone else entirely, number {i}.")
    swipe(tenant, twin_a, user, "like")
    index_build(tenant=tenant)
    items = {item.profile_id: (rank, item) for rank, item in enumerate(feed(tenant, user, count=50).items)}
    rank_a, item_a = items[twin_a.pk]
    rank_b, item_b = items[twin_b.pk]
    assert rank_a < rank_b
    assert item_a.components["liked_you"] is True and item_b.components["liked_you"] is False
    assert item_a.components["p_candidate_likes"] == 1.0
    assert item_a.components["p_candidate_likes"] > item_b.components["p_candidate_likes"]
    assert item_a.components["p_user_likes"] == pytest.approx(item_b.components["p_user_likes"], abs=1e-3)


def test_interaction_history_shapes_the_users_side(tenant, user, man):
    hikers = [
        man(km_north=1.0 + i, bio=f"Mountain hiking and trail running every weekend, peak {i}.") for i in range(4)
    ]
    gamers = [man(km_north=1.0 + i, bio=f"Video games and anime marathons all night, level {i}.") for i in range(4)]
    swipe(tenant, user, hikers[0], "like")
    swipe(tenant, user, hikers[1], "superlike")
    swipe(tenant, user, gamers[0], "pass")
    swipe(tenant, user, gamers[1], "pass")
    index_build(tenant=tenant)
    items = {item.profile_id: item for item in feed(tenant, user, count=50).items}
    hiker_side = [items[p.pk].components["interaction"] for p in hikers[2:]]
    gamer_side = [items[p.pk].components["interaction"] for p in gamers[2:]]
    assert min(hiker_side) > max(gamer_side)


# --------------------------------------------------------------------------- fallback


@pytest.mark.parametrize(
    ("setup", "reason"),
    [("ml_disabled", "ml_disabled"), ("no_index", "index_missing"), ("no_model", "model_unavailable")],
)
def test_fallback_still_gives_a_full_feed(settings, monkeypatch, tenant, user, man, setup, reason):
    for i in range(12):
        man(km_north=1.0 + i)
    if setup == "ml_disabled":
        index_build(tenant=tenant)
        settings.ML_ENABLED = False
    elif setup == "no_model":
        index_build(tenant=tenant)
        monkeypatch.setattr("recommender.serving.health.ml_available", lambda: False)
    result = feed(tenant, user, count=10, log_impressions=True)
    assert result.fallback == reason
    assert result.model_version == "feed-v1-fallback"
    assert len(result.items) == 10
    assert set(Impression.objects.filter(user=user).values_list("model_version", flat=True)) == {"feed-v1-fallback"}


# --------------------------------------------------------------------------- impressions


def test_impressions_are_logged_with_the_model_version(tenant, user, man):
    for i in range(6):
        man(km_north=1.0 + i)
    index_build(tenant=tenant)
    result = feed_for(tenant=tenant, user=user, count=4)
    rows = list(Impression.objects.filter(user=user).order_by("position"))
    assert [r.candidate_id for r in rows] == [item.profile_id for item in result.items]
    assert [r.position for r in rows] == [0, 1, 2, 3]
    assert {r.model_version for r in rows} == {result.model_version}
    assert {r.experiment_arm for r in rows} == {"reciprocal"}
    assert {(r.tenant_id, r.context_hash) for r in rows} == {(tenant.pk, "feed:reciprocal")}
    assert all(r.occurred_at <= r.received_at <= timezone.now() for r in rows)
    feed_for(tenant=tenant, user=user, count=4, log_impressions=False)
    assert Impression.objects.filter(user=user).count() == 4


def test_logging_the_same_served_feed_twice_stores_it_once(tenant, user, man):
    candidates = [man(km_north=1.0 + i).pk for i in range(3)]
    served = {
        "tenant": tenant,
        "user": user,
        "candidate_ids": candidates,
        "model_version": "feed-v1",
        "experiment_arm": "reciprocal",
        "context_hash": "feed:reciprocal",
        "timestamp": timezone.now(),
    }
    impressions_record_served(**served)
    impressions_record_served(**served)  # a retry: the unique (user, candidate, time) holds
    rows = Impression.objects.filter(user=user).order_by("position")
    assert list(rows.values_list("candidate_id", "position")) == [(pk, i) for i, pk in enumerate(candidates)]


# --------------------------------------------------------------------------- filters


def test_filters_narrow_and_never_widen(tenant, user, man, make_profile):
    ages = {a: man(age=a, age_min=18, age_max=60) for a in (22, 26, 30, 34, 38, 44)}
    near, far = man(km_north=2.0), man(km_north=25.0)
    nonbinary = man(gender="nonbinary", seeking=["woman"])  # outside the user's own seeking
    index_build(tenant=tenant)
    wide = feed(tenant, user, count=50, filters=FeedFilters(age_min=18, age_max=99, max_distance_km=500.0))
    assert ages[22].pk not in shown(wide) and ages[44].pk not in shown(wide)
    assert shown(wide) == shown(feed(tenant, user, count=50))
    narrow = feed(tenant, user, count=50, filters=FeedFilters(age_min=29, age_max=35))
    assert shown(narrow) == {ages[30].pk, ages[34].pk, near.pk, far.pk}
    close = feed(tenant, user, count=50, filters=FeedFilters(max_distance_km=10.0))
    assert far.pk not in shown(close) and near.pk in shown(close)
    genders = feed(tenant, user, count=50, filters=FeedFilters(genders=["man", "nonbinary"]))
    assert nonbinary.pk not in shown(genders) and near.pk in shown(genders)
    assert feed(tenant, user, count=50, filters=FeedFilters(genders=["nonbinary"])).items == []


# --------------------------------------------------------------------------- exploration and variants


def test_exploration_share_is_marked_and_reproducible(settings, tenant, user, man):
    settings.ML_EXPLORATION_SHARE = 0.2
    for i in range(40):
        man(km_north=0.5 + i * 0.5, age=25 + i % 15)
    index_build(tenant=tenant)
    first = feed(tenant, user, count=20)
    explored = [item for item in first.items if item.components["explore"]]
    assert len(explored) == exploration_slots(20, 0.2) == 4
    again = feed(tenant, user, count=20)
    assert [i.profile_id for i in again.items] == [i.profile_id for i in first.items]
    # the explored ones come from outside the top 16 of the full ranking
    top = [item.profile_id for item in feed(tenant, user, count=40).items if not item.components["explore"]]
    assert not {item.profile_id for item in explored} & set(top[:16])


@pytest.mark.parametrize("variant", ["reciprocal", "one_way", "popularity", "random"])
def test_every_variant_obeys_the_hard_filters(tenant, user, man, make_profile, variant):
    bad = violators(man, make_profile)
    good = {man(km_north=1.0 + i).pk for i in range(4)}
    index_build(tenant=tenant)
    result = feed(tenant, user, count=50, variant=variant)
    assert shown(result) == good
    assert not shown(result) & {p.pk for p in bad.values()}
    scores = [item.score for item in result.items]
    assert scores == sorted(scores, reverse=True)
    expected_key = {"reciprocal": "reciprocal", "one_way": "p_user_likes", "popularity": "elo"}.get(variant)
    if expected_key:
        assert all(item.score == item.components[expected_key] for item in result.items)
    assert result.model_version.startswith("feed-v1" if variant == "reciprocal" else f"feed-v1-{variant}")


def test_popularity_variant_ranks_by_elo(tenant, user, man, make_profile):
    men = [man(km_north=1.0 + i) for i in range(4)]
    fans = [make_profile(gender="woman", seeking=["man"]) for _ in range(3)]
    for fan in fans:  # men[2] is liked by everyone, men[0] passed by everyone
        swipe(tenant, fan, men[2], "like")
        swipe(tenant, fan, men[0], "pass")
    result = feed(tenant, user, count=4, variant="popularity")
    order = [item.profile_id for item in result.items]
    assert order[0] == men[2].pk and order[-1] == men[0].pk


def test_bad_arguments(tenant, user):
    with pytest.raises(ValueError, match="variant"):
        feed(tenant, user, variant="best")
    with pytest.raises(ValueError, match="count"):
        feed(tenant, user, count=0)


# --------------------------------------------------------------------------- store


def test_store_follows_profile_changes(tenant, user, man):
    m = man()
    store = candidate_store(tenant.pk)
    snap = store.snapshot()
    row = snap.row_of_pk(m.pk)
    assert row >= 0 and bool(snap.active[row]) and int(snap.batch.age[row]) == 32
    profile_set_status(profile=m, status=ProfileStatus.HIDDEN)
    store.refresh(force=True)
    assert not bool(store.snapshot().active[row])
    profile_set_status(profile=m, status=ProfileStatus.ACTIVE)
    newcomer = man(interests=["a-brand-new-tag"])
    store.refresh(force=True)
    snap = store.snapshot()
    assert bool(snap.active[row])
    new_row = snap.row_of_pk(newcomer.pk)
    assert new_row >= 0
    assert snap.batch.interest_count[new_row] == 1
    bits = snap.batch.user_interest_bits(frozenset({"a-brand-new-tag"}))
    assert np.bitwise_and(snap.batch.interest_bits[new_row], bits).any()


def test_a_feed_survives_a_store_refresh_between_its_snapshot_and_the_pools(tenant, user, man):
    # Seen in deploy/test-image.sh: a process warms an empty store at boot, profiles arrive, the
    # refresher recomputes the pools from the newer snapshot while a feed holds the older one.
    store = candidate_store(tenant.pk)
    old = store.snapshot()
    newcomers = [man(km_north=1.0 + i) for i in range(3)]
    store.refresh(force=True)
    popular, fresh = store._compute_pools()
    assert max(fresh) >= len(old.active)  # the pools name rows the old snapshot lacks
    excluded = np.fromiter(feed_reads(tenant_id=tenant.pk, user_id=user.pk).excluded, dtype=np.int64)
    rows = _eligible(old, np.concatenate([popular, fresh]), profile_features(user), None, excluded)
    assert all(row < len(old.active) for row in rows)
    assert {old.batch.ids[r] for r in rows}.isdisjoint({m.pk for m in newcomers})


# --------------------------------------------------------------------------- CLI


def test_recommend_command_prints_the_feed(tenant, user, man, capsys):
    men = [man(km_north=1.0 + i, age=30 + i) for i in range(3)]
    call_command("recommend", "--user-id", str(user.external_id), "--top-n", "5")
    out = capsys.readouterr().out
    header = out.splitlines()[1]
    for column in ("rank", "external id", "age", "gender", "km", "score", "p_user", "p_cand"):
        assert column in header
    for m in men:
        assert str(m.external_id) in out
    assert "3 recommendations" in out
    assert not Impression.objects.exists()


def test_interact_command_records_the_swipe_and_updates_the_feed(tenant, user, man, capsys):
    men = [man(km_north=1.0 + i) for i in range(3)]
    call_command("interact", "--user-id", str(user.external_id), str(men[0].external_id), "like")
    out = capsys.readouterr().out
    assert Swipe.objects.get(user=user).candidate_id == men[0].pk
    assert "Recorded like" in out
    assert str(men[0].external_id) not in out.split("Recorded like", 1)[1].split("\n", 1)[1]
    assert str(men[1].external_id) in out
    call_command("interact", "--user-id", str(men[0].external_id), str(user.external_id), "superlike")
    assert "match" in capsys.readouterr().out
    assert Match.objects.count() == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["recommend", "--user-id", str(uuid.uuid4())], "No user"),
        (["recommend", "--user-id", "not-a-uuid"], "not a UUID"),
        (["recommend", "--user-id", "USER", "--tenant", "nope"], "No tenant"),
        (["recommend", "--user-id", "USER", "--top-n", "0"], "--top-n"),
        (["interact", "--user-id", "USER", str(uuid.uuid4()), "like"], "No target"),
        (["interact", "--user-id", "USER", "USER", "like"], "own profile"),
        (["interact", "--user-id", "USER", "USER", "wink"], "Unknown action"),
    ],
)
def test_commands_refuse_bad_ids_and_actions(user, args, message):
    args = [str(user.external_id) if a == "USER" else a for a in args]
    with pytest.raises(CommandError, match=message):
        call_command(*args)


def test_a_selective_candidate_is_less_likely_to_like_back(tenant, user, man, make_profile):
    """Two identical men: one likes almost everyone he sees, the other almost no one. The
    choosy one's P(candidate likes user) is lower, so he ranks lower in the reciprocal feed."""
    keen, choosy = man(km_north=2.0), man(km_north=2.0)
    women = [make_profile(gender="woman", seeking=["man"], age=31, lat=SF[0], lon=SF[1]) for _ in range(12)]
    for i, woman in enumerate(women):
        swipe(tenant, keen, woman, "like" if i < 11 else "pass")
        swipe(tenant, choosy, woman, "pass" if i < 11 else "like")
    index_build(tenant=tenant)
    items = {item.profile_id: item for item in feed(tenant, user, count=50).items}
    assert items[keen.pk].components["selectivity"] > 1 > items[choosy.pk].components["selectivity"]
    assert items[keen.pk].components["p_candidate_likes"] > items[choosy.pk].components["p_candidate_likes"]
    assert items[keen.pk].score > items[choosy.pk].score
