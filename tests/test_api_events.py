"""Event ingestion: validation table, idempotent re-sends, all-or-nothing batches, matches."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from recommender.models import EloRating, Impression, Match, Profile, Swipe

SWIPES = "/api/v1/events/swipes"
IMPRESSIONS = "/api/v1/events/impressions"
MATCHES = "/internal/v1/events/matches"


def now_iso(offset_s: int = 0) -> str:
    return (timezone.now() + timedelta(seconds=offset_s)).isoformat()


@pytest.fixture
def pair(make_profile) -> tuple[Profile, Profile]:
    woman = make_profile(gender="woman", seeking=["man"])
    man = make_profile(gender="man", seeking=["woman"])
    return woman, man


def swipe_batch(user: Profile, candidates: list[Profile], action: str = "like", **extra: Any) -> dict[str, Any]:
    body = {
        "user_id": str(user.external_id),
        "session_id": "session-1",
        "timestamp": "2026-01-01T12:00:00Z",
        "swipes": [
            {"candidate_id": str(c.external_id), "action": action, "duration_ms": 1200, "event_id": f"e-{i}"}
            for i, c in enumerate(candidates)
        ],
    }
    body.update(extra)
    return body


def counts() -> tuple[int, int, int, int]:
    return Swipe.objects.count(), Impression.objects.count(), Match.objects.count(), EloRating.objects.count()


def test_swipe_batch_is_stored(service_client, pair):
    woman, man = pair
    response = service_client.post(SWIPES, swipe_batch(woman, [man]), format="json")
    assert response.status_code == 201, response.json()
    assert response.json() == {"received": 1, "created": 1, "duplicates": 0, "sampled_out": 0, "matches": []}
    swipe = Swipe.objects.get()
    assert (swipe.user, swipe.candidate, swipe.action, swipe.duration_ms) == (woman, man, "like", 1200)
    assert swipe.client_event_id == "e-0"


def test_reject_is_stored_as_pass(service_client, pair):
    woman, man = pair
    service_client.post(SWIPES, swipe_batch(woman, [man], action="reject"), format="json")
    assert Swipe.objects.get().action == "pass"


def test_resend_is_idempotent(service_client, make_profile):
    user = make_profile()
    candidates = [make_profile(gender="man", seeking=["woman"]) for _ in range(3)]
    body = swipe_batch(user, candidates)
    assert service_client.post(SWIPES, body, format="json").json()["created"] == 3
    again = service_client.post(SWIPES, body, format="json")
    assert again.status_code == 200
    assert again.json() == {"received": 3, "created": 0, "duplicates": 3, "sampled_out": 0, "matches": []}
    assert Swipe.objects.count() == 3


def test_duplicate_by_natural_key_without_event_ids(service_client, pair):
    woman, man = pair
    body = swipe_batch(woman, [man])
    del body["swipes"][0]["event_id"]
    service_client.post(SWIPES, body, format="json")
    assert service_client.post(SWIPES, body, format="json").json()["duplicates"] == 1
    assert Swipe.objects.count() == 1


def test_same_event_id_in_new_session_is_a_duplicate(service_client, pair):
    woman, man = pair
    service_client.post(SWIPES, swipe_batch(woman, [man]), format="json")
    body = swipe_batch(woman, [man], session_id="session-2", timestamp="2026-01-02T12:00:00Z")
    assert service_client.post(SWIPES, body, format="json").json()["duplicates"] == 1


def test_duplicates_inside_one_batch(service_client, pair):
    woman, man = pair
    body = swipe_batch(woman, [man, man])
    result = service_client.post(SWIPES, body, format="json").json()
    assert (result["created"], result["duplicates"]) == (1, 1)


def test_partial_resend_counts_new_and_duplicates(service_client, make_profile):
    user = make_profile()
    c1, c2 = (make_profile(gender="man", seeking=["woman"]) for _ in range(2))
    service_client.post(SWIPES, swipe_batch(user, [c1]), format="json")
    body = swipe_batch(user, [c1, c2])
    body["swipes"][1]["event_id"] = "e-new"
    result = service_client.post(SWIPES, body, format="json").json()
    assert (result["created"], result["duplicates"]) == (1, 1)


def test_resend_mixed_with_new_swipes_counts_each_swipe_once_in_elo(service_client, make_profile):
    # Only the swipes the database actually stored (RETURNING) move ratings and counters: a
    # re-sent swipe, by event id or by natural key, is counted once.
    user = make_profile()
    c1, c2, c3 = (make_profile(gender="man", seeking=["woman"]) for _ in range(3))
    service_client.post(SWIPES, swipe_batch(user, [c1, c2]), format="json")
    rating_c1 = EloRating.objects.get(profile=c1).rating
    body = swipe_batch(user, [c2, c1, c3])
    body["swipes"][0]["event_id"] = "e-1"  # c2 again: known event id
    body["swipes"][1]["event_id"] = "e-other"  # c1 again: new event id, known natural key
    body["swipes"][2]["event_id"] = "e-new"
    result = service_client.post(SWIPES, body, format="json").json()
    assert (result["created"], result["duplicates"]) == (1, 2)
    assert Swipe.objects.count() == 3
    received = dict(EloRating.objects.values_list("profile_id", "swipes_received"))
    assert received == {user.pk: 0, c1.pk: 1, c2.pk: 1, c3.pk: 1}
    assert EloRating.objects.get(profile=c1).rating == rating_c1
    mine = EloRating.objects.get(profile=user)
    assert (mine.swipes_given, mine.likes_given) == (3, 3)


@pytest.mark.parametrize("size", [3, 30])
def test_swipe_batch_costs_a_fixed_number_of_statements(make_profile, tenant, size):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from recommender.services.events import SwipeIn, swipe_batch_ingest

    user = make_profile()
    liked_back = make_profile(gender="man", seeking=["woman"])
    swipe_batch_ingest(tenant=tenant, user=liked_back, session_id="x", timestamp=timezone.now(),
                       swipes=[SwipeIn(user.external_id, "like")])  # fmt: skip
    candidates = [liked_back] + [make_profile(gender="man", seeking=["woman"]) for _ in range(size - 1)]
    swipes = [SwipeIn(c.external_id, ("like", "pass")[i % 2], 900, f"e-{i}") for i, c in enumerate(candidates)]
    with CaptureQueriesContext(connection) as ctx:
        result = swipe_batch_ingest(tenant=tenant, user=user, session_id="s", timestamp=timezone.now(), swipes=swipes)
    assert result.created == size and len(result.matches) == 1
    # BEGIN, candidates, locks (PostgreSQL), insert, Elo lock, Elo write, likes back, existing
    # matches, match insert, COMMIT -- none of them per swipe.
    statements = [q["sql"] for q in ctx.captured_queries]
    assert len(statements) <= 10, statements


def test_mutual_like_creates_one_match(service_client, pair):
    woman, man = pair
    service_client.post(SWIPES, swipe_batch(woman, [man]), format="json")
    result = service_client.post(SWIPES, swipe_batch(man, [woman], action="superlike"), format="json").json()
    assert result["matches"] == [str(woman.external_id)]
    match = Match.objects.get()
    assert match.user_a_id < match.user_b_id
    assert {match.user_a_id, match.user_b_id} == {woman.pk, man.pk}
    assert match.match_type == "superlike"
    # A later like of the same pair, in a new session, does not make a second match.
    later = swipe_batch(man, [woman], session_id="s-9", timestamp="2026-01-03T12:00:00Z")
    later["swipes"][0]["event_id"] = "e-later"
    assert service_client.post(SWIPES, later, format="json").json()["matches"] == []
    assert Match.objects.count() == 1


def test_like_after_pass_makes_no_match(service_client, pair):
    woman, man = pair
    service_client.post(SWIPES, swipe_batch(woman, [man], action="pass"), format="json")
    service_client.post(SWIPES, swipe_batch(man, [woman]), format="json")
    assert Match.objects.count() == 0


def test_swipes_update_elo(service_client, pair):
    woman, man = pair
    service_client.post(SWIPES, swipe_batch(woman, [man]), format="json")
    assert EloRating.objects.get(profile=man).rating > 1500
    assert EloRating.objects.get(profile=man).swipes_received == 1


def test_user_token_sends_own_swipes(user_client_for, pair):
    woman, man = pair
    body = swipe_batch(woman, [man])
    del body["user_id"]
    response = user_client_for(woman).post(SWIPES, body, format="json")
    assert response.status_code == 201
    assert Swipe.objects.get().user == woman


def test_impressions_are_stored_and_idempotent(service_client, make_profile):
    user = make_profile()
    cands = [make_profile(gender="man", seeking=["woman"]) for _ in range(3)]
    body = {
        "user_id": str(user.external_id),
        "candidate_ids": [str(c.external_id) for c in cands],
        "positions": [0, 1, 2],
        "context_hash": "ctx-1",
        "timestamp": "2026-01-01T12:00:00Z",
        "model_version": "v3",
        "experiment_arm": "treatment",
    }
    first = service_client.post(IMPRESSIONS, body, format="json")
    assert first.status_code == 201 and first.json()["created"] == 3
    assert service_client.post(IMPRESSIONS, body, format="json").json()["duplicates"] == 3
    rows = Impression.objects.order_by("position")
    assert [r.position for r in rows] == [0, 1, 2]
    assert {r.model_version for r in rows} == {"v3"} and {r.experiment_arm for r in rows} == {"treatment"}


def test_untagged_impressions_from_the_app_are_all_stored(user_client_for, make_profile):
    """No sampling: an app sending impressions without model_version / experiment_arm gets every
    one stored, for every user (they used to be kept for a 10 % panel of users only)."""
    users = [make_profile() for _ in range(30)]
    cands = [make_profile(gender="man", seeking=["woman"]) for _ in range(2)]
    for user in users:
        body = {"candidate_ids": [str(c.external_id) for c in cands], "positions": [0, 1], "timestamp": now_iso()}
        answer = user_client_for(user).post(IMPRESSIONS, body, format="json").json()
        assert (answer["received"], answer["created"], answer["sampled_out"]) == (2, 2, 0)
    assert Impression.objects.count() == 60


def test_match_events_are_stored_once(service_client, pair):
    woman, man = pair
    body = {
        "matches": [{"user_id": str(man.external_id), "candidate_id": str(woman.external_id), "timestamp": now_iso()}]
    }
    assert service_client.post(MATCHES, body, format="json").json()["created"] == 1
    assert service_client.post(MATCHES, body, format="json").json()["duplicates"] == 1
    match = Match.objects.get()
    assert (match.user_a_id, match.user_b_id, match.match_type) == (
        min(woman.pk, man.pk),
        max(woman.pk, man.pk),
        "external",
    )


# --- Bad input: each case answers 4xx with a field-level message, and nothing is stored ------------

BAD_SWIPE_CASES: list[tuple[str, Any, int, str]] = [
    # (case, how to break a valid batch, status, field that must carry the message)
    ("self-swipe", lambda b, u, c, o: b["swipes"][-1].update(candidate_id=str(u.external_id)), 400, "swipes"),
    ("unknown candidate", lambda b, u, c, o: b["swipes"][-1].update(candidate_id=str(uuid.uuid4())), 400, "swipes"),
    (
        "other-tenant candidate",
        lambda b, u, c, o: b["swipes"][-1].update(candidate_id=str(o.external_id)),
        400,
        "swipes",
    ),
    ("other-tenant user", lambda b, u, c, o: b.update(user_id=str(o.external_id)), 404, "detail"),
    ("unknown user", lambda b, u, c, o: b.update(user_id=str(uuid.uuid4())), 404, "detail"),
    ("missing user_id with service key", lambda b, u, c, o: b.pop("user_id"), 400, "user_id"),
    ("unknown action", lambda b, u, c, o: b["swipes"][-1].update(action="maybe"), 400, "swipes"),
    ("future timestamp", lambda b, u, c, o: b.update(timestamp=now_iso(3600)), 400, "timestamp"),
    ("bad timestamp", lambda b, u, c, o: b.update(timestamp="yesterday"), 400, "timestamp"),
    ("negative duration", lambda b, u, c, o: b["swipes"][-1].update(duration_ms=-5), 400, "swipes"),
    ("bad candidate id", lambda b, u, c, o: b["swipes"][-1].update(candidate_id="42"), 400, "swipes"),
    ("empty batch", lambda b, u, c, o: b.update(swipes=[]), 400, "swipes"),
    ("missing session", lambda b, u, c, o: b.pop("session_id"), 400, "session_id"),
    ("swipes not a list", lambda b, u, c, o: b.update(swipes="like"), 400, "swipes"),
    (
        "oversized batch",
        lambda b, u, c, o: b.update(swipes=[dict(b["swipes"][0], event_id=f"x{i}") for i in range(501)]),
        400,
        "swipes",
    ),
]


@pytest.mark.parametrize(("case", "breaker", "status", "field"), BAD_SWIPE_CASES, ids=[c[0] for c in BAD_SWIPE_CASES])
def test_bad_swipe_batches_are_refused_whole(service_client, make_profile, other_tenant, case, breaker, status, field):
    user = make_profile()
    first, second = (make_profile(gender="man", seeking=["woman"]) for _ in range(2))
    other = make_profile(other_tenant)
    # The first swipe is valid: all-or-nothing means it must not be stored either.
    body = swipe_batch(user, [first, second])
    breaker(body, user, second, other)
    before = counts()
    response = service_client.post(SWIPES, body, format="json")
    assert response.status_code == status, (case, response.json())
    assert field in response.json(), response.json()
    assert counts() == before


def test_oversized_batch_message_says_the_limit(service_client, pair):
    woman, man = pair
    body = swipe_batch(woman, [man] * 501)
    response = service_client.post(SWIPES, body, format="json")
    assert "At most 500" in str(response.json()["swipes"])


def test_erased_candidate_is_unknown(service_client, pair):
    woman, man = pair
    assert service_client.delete(f"/internal/v1/profiles/{man.external_id}").status_code == 204
    response = service_client.post(SWIPES, swipe_batch(woman, [man]), format="json")
    assert response.status_code == 400
    assert "Unknown profile" in str(response.json())


BAD_IMPRESSION_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("positions length", {"positions": [0]}, "positions"),
    ("negative position", {"positions": [0, -1]}, "positions"),
    ("future", {"timestamp": "2999-01-01T00:00:00Z"}, "timestamp"),
    ("empty", {"candidate_ids": [], "positions": []}, "candidate_ids"),
    ("unknown candidate", {"candidate_ids": "UNKNOWN"}, "candidate_ids"),
    ("self", {"candidate_ids": "SELF"}, "candidate_ids"),
]


@pytest.mark.parametrize(("case", "change", "field"), BAD_IMPRESSION_CASES, ids=[c[0] for c in BAD_IMPRESSION_CASES])
def test_bad_impression_batches_are_refused(service_client, make_profile, case, change, field):
    user = make_profile()
    c1, c2 = (make_profile(gender="man", seeking=["woman"]) for _ in range(2))
    body: dict[str, Any] = {
        "user_id": str(user.external_id),
        "candidate_ids": [str(c1.external_id), str(c2.external_id)],
        "positions": [0, 1],
        "context_hash": "c",
        "timestamp": "2026-01-01T00:00:00Z",
    }
    body.update(change)
    if change.get("candidate_ids") == "UNKNOWN":
        body["candidate_ids"] = [str(c1.external_id), str(uuid.uuid4())]
    if change.get("candidate_ids") == "SELF":
        body["candidate_ids"] = [str(c1.external_id), str(user.external_id)]
    response = service_client.post(IMPRESSIONS, body, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()
    assert Impression.objects.count() == 0


def test_bad_match_events_are_refused(service_client, pair):
    woman, man = pair
    body = {
        "matches": [
            {"user_id": str(man.external_id), "candidate_id": str(woman.external_id), "timestamp": now_iso()},
            {"user_id": str(man.external_id), "candidate_id": str(uuid.uuid4()), "timestamp": now_iso()},
        ]
    }
    response = service_client.post(MATCHES, body, format="json")
    assert response.status_code == 400
    assert "candidate_id" in response.json()["matches"]["1"]
    assert Match.objects.count() == 0


def test_match_events_need_a_service_key(user_client_for, pair):
    woman, man = pair
    body = {
        "matches": [{"user_id": str(man.external_id), "candidate_id": str(woman.external_id), "timestamp": now_iso()}]
    }
    assert user_client_for(woman).post(MATCHES, body, format="json").status_code == 403
    assert Match.objects.count() == 0


def test_elo_rebuild_from_swipes_equals_incremental(service_client, make_profile, tenant):
    from django.core.management import call_command

    users = [make_profile() for _ in range(3)]
    men = [make_profile(gender="man", seeking=["woman"]) for _ in range(3)]
    for i, user in enumerate(users):
        actions = ["like", "pass", "superlike"]
        body = swipe_batch(user, men, session_id=f"s{i}", timestamp=f"2026-01-0{i + 1}T12:00:00Z")
        for j, item in enumerate(body["swipes"]):
            item["action"] = actions[(i + j) % 3]
            item["event_id"] = f"e-{i}-{j}"
        assert service_client.post(SWIPES, body, format="json").status_code == 201
    incremental = dict(EloRating.objects.values_list("profile_id", "rating"))
    EloRating.objects.update(rating=1500.0)
    call_command("rebuild_elo", tenant=tenant.slug, verbosity=0)
    rebuilt = dict(EloRating.objects.values_list("profile_id", "rating"))
    assert rebuilt.keys() >= {m.pk for m in men}
    for pk in (m.pk for m in men):
        assert rebuilt[pk] == pytest.approx(incremental[pk])
