"""The ML API (issue 7): batch embeddings, similarities and rankings, and ML health.

Every endpoint: the happy path, each limit, each bad input (a clear 4xx and nothing changed), the
credentials (service key, user token, none, another tenant's key), the fallback with ML disabled
or the model missing, and the health states. The real MiniLM model is used (loaded once per
process, as in serving); profile hooks do not run inside a test transaction, so a profile is
embedded only when a test calls ``embeddings_upsert``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts.models import Tenant
from accounts.services import service_key_create
from recommender.feed.pipeline import feed_for
from recommender.feed.rank import user_contexts
from recommender.feed.reads import excluded_profile_ids, swipe_history
from recommender.indexing import index_build
from recommender.models import Impression, Profile, ProfileEmbedding, Swipe
from recommender.services.embeddings import embedding_cache_key, embeddings_upsert
from recommender.services.events import SwipeIn, swipe_batch_ingest
from recommender.serving.encoder import encode_texts
from tests.conftest import bearer_client

EMBED = "/api/v1/ml/embeddings/batch"
SIMILARITY = "/api/v1/ml/similarity/batch"
RANK = "/api/v1/ml/profiles/rank/batch"
HEALTH = "/api/v1/ml/health"
SF = (37.7749, -122.4194)
DIM = 384
MISSING_MODEL = "/nonexistent/patra-test-model"
UNKNOWN = "00000000-0000-0000-0000-0000000000bb"


@pytest.fixture(autouse=True)
def _ml_state(isolated_ml_state: None) -> None:
    """Fresh in-process feed store and index per test (see conftest)."""


@pytest.fixture
def svc(service_client: APIClient) -> APIClient:
    return service_client


@pytest.fixture
def other_svc(other_tenant: Tenant) -> APIClient:
    return bearer_client(service_key_create(tenant=other_tenant, name="other backend").raw)


@pytest.fixture
def woman(make_profile: Callable[..., Profile]) -> Profile:
    return make_profile(
        gender="woman",
        seeking=["man"],
        age=30,
        age_min=25,
        age_max=40,
        lat=SF[0],
        lon=SF[1],
        bio="Trail running at dawn and mountain hikes every weekend.",
        prompts=[],
        interests=["hiking", "coffee"],
    )


@pytest.fixture
def men(make_profile: Callable[..., Profile]) -> list[Profile]:
    bios = [
        "I hike mountains and run trails every weekend.",
        "Video games and anime marathons all night.",
        "Cooking pasta, red wine and jazz records.",
    ]
    return [
        make_profile(
            gender="man",
            seeking=["woman"],
            age=28 + 2 * i,
            age_min=20,
            age_max=50,
            lat=SF[0] + 0.01 * i,
            lon=SF[1],
            bio=bio,
            prompts=[],
            interests=["hiking", "chess"] if i == 0 else ["gaming"],
        )
        for i, bio in enumerate(bios)
    ]


def ids(*profiles: Profile) -> list[str]:
    return [str(p.external_id) for p in profiles]


def unit(vector: list[float]) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float32)
    assert v.shape == (DIM,)
    assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-4
    return v


def stored(profile: Profile) -> np.ndarray:
    return np.frombuffer(bytes(ProfileEmbedding.objects.get(profile=profile).vector), dtype="<f4")


def user_client(user_client_for: Callable[[Profile], APIClient], profile: Profile) -> APIClient:
    return user_client_for(profile)


# --------------------------------------------------------------------------- embeddings


def test_embeddings_of_texts(svc: APIClient) -> None:
    texts = ["I love hiking in the mountains.", "Mountain trails every weekend.", "Tax law and spreadsheets."]
    response = svc.post(EMBED, {"texts": [*texts, texts[0]]}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["model"] == "all-MiniLM-L6-v2"
    assert body["dimension"] == DIM
    assert body["available"] is True and body["fallback"] is None
    assert [item["index"] for item in body["items"]] == [0, 1, 2, 3]
    assert all(item["source"] == "computed" and item["reason"] is None for item in body["items"])
    vectors = [unit(item["vector"]) for item in body["items"]]
    np.testing.assert_array_equal(vectors[0], vectors[3])  # a repeated text is encoded once
    assert body["stats"] == {"computed": 3}
    # meaning, not noise: the two outdoor texts are closer to each other than to tax law
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2]) + 0.2
    np.testing.assert_allclose(vectors[0], encode_texts([texts[0]])[0], atol=1e-5)


def test_embeddings_of_profiles_use_fresh_stored_vectors_then_the_cache(
    svc: APIClient, tenant: Tenant, woman: Profile, men: list[Profile]
) -> None:
    embeddings_upsert(profile_ids=[woman.pk])
    cache.delete(embedding_cache_key(tenant_id=tenant.pk, profile_id=woman.pk))
    body = svc.post(EMBED, {"profile_ids": ids(woman, men[0])}, format="json").json()
    first, second = body["items"]
    assert first["profile_id"] == str(woman.external_id) and first["source"] == "stored"
    np.testing.assert_array_equal(unit(first["vector"]), stored(woman))
    # not embedded yet (its task has not run): encoded now from its current text, not stored
    assert second["source"] == "computed"
    np.testing.assert_allclose(unit(second["vector"]), encode_texts([men[0].bio])[0], atol=1e-5)
    assert not ProfileEmbedding.objects.filter(profile=men[0]).exists()
    assert body["stats"] == {"stored": 1, "cache_hits": 0, "computed": 1}
    # the first read filled the feed's cache key; the second answer comes from there
    assert cache.get(embedding_cache_key(tenant_id=tenant.pk, profile_id=woman.pk)) is not None
    again = svc.post(EMBED, {"profile_ids": ids(woman)}, format="json").json()
    assert again["stats"] == {"stored": 1, "cache_hits": 1, "computed": 0}
    np.testing.assert_array_equal(unit(again["items"][0]["vector"]), stored(woman))


def test_a_stale_stored_embedding_is_not_served(svc: APIClient, woman: Profile) -> None:
    embeddings_upsert(profile_ids=[woman.pk])
    old = stored(woman)
    # the bio changed and the embed task has not run yet (no hook inside a test transaction)
    Profile.objects.filter(pk=woman.pk).update(bio="Opera, ballet and classical piano.")
    body = svc.post(EMBED, {"profile_ids": ids(woman)}, format="json").json()
    item = body["items"][0]
    assert item["source"] == "computed"
    vector = unit(item["vector"])
    np.testing.assert_allclose(vector, encode_texts(["Opera, ballet and classical piano."])[0], atol=1e-5)
    assert float(vector @ old) < 0.9
    np.testing.assert_array_equal(stored(woman), old)  # nothing written


def test_a_profile_without_text_has_no_vector(svc: APIClient, make_profile: Callable[..., Profile]) -> None:
    silent = make_profile(bio="", prompts=[])
    body = svc.post(EMBED, {"profile_ids": ids(silent)}, format="json").json()
    assert body["available"] is True
    assert body["items"][0] == {
        "index": 0,
        "profile_id": str(silent.external_id),
        "vector": None,
        "source": None,
        "reason": "no_text",
    }


def test_embeddings_batch_limit_answers_413_with_the_limit(svc: APIClient, settings: Any) -> None:
    response = svc.post(EMBED, {"texts": ["hello"] * 129}, format="json")
    assert response.status_code == 413
    assert response.json() == {
        "detail": "At most 128 items in texts per request; got 129.",
        "code": "batch_too_large",
        "field": "texts",
        "limit": 128,
        "received": 129,
    }
    settings.ML_BATCH_MAX_ITEMS = 2
    response = svc.post(EMBED, {"profile_ids": [str(i) for i in range(3)]}, format="json")
    assert response.status_code == 413
    assert response.json()["field"] == "profile_ids" and response.json()["limit"] == 2
    assert svc.post(EMBED, {"texts": ["a", "b"]}, format="json").status_code == 200


def test_embeddings_text_length_limit_is_a_field_error(svc: APIClient, settings: Any) -> None:
    response = svc.post(EMBED, {"texts": ["fine", "x" * 2001]}, format="json")
    assert response.status_code == 400
    assert response.json() == {"texts": {"1": ["At most 2000 characters per text; got 2001."]}}
    settings.ML_TEXT_MAX_CHARS = 10
    response = svc.post(EMBED, {"texts": ["x" * 11]}, format="json")
    assert response.json() == {"texts": {"0": ["At most 10 characters per text; got 11."]}}
    assert svc.post(EMBED, {"texts": ["x" * 10]}, format="json").status_code == 200


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({}, {"non_field_errors": ["Give exactly one of texts and profile_ids."]}),
        ({"texts": ["a"], "profile_ids": []}, None),
        ({"texts": []}, {"texts": ["This list may not be empty."]}),
        ({"texts": "hello"}, None),
        ({"texts": ["ok", "   "]}, {"texts": {"1": ["Must not be blank."]}}),
        ({"texts": ["ok", 5, None]}, {"texts": {"1": ["Must be a string."], "2": ["This field may not be null."]}}),
        ({"profile_ids": ["not-a-uuid"]}, {"profile_ids": {"0": ["Must be a valid UUID."]}}),
        ({"texts": ["a"], "normalize": True}, None),
        (["a", "b"], None),
    ],
)
def test_embeddings_bad_input(svc: APIClient, payload: Any, expected: dict[str, Any] | None) -> None:
    response = svc.post(EMBED, payload, format="json")
    assert response.status_code == 400, response.json()
    if expected is not None:
        assert response.json() == expected


def test_embeddings_of_another_tenants_profile_are_refused_and_nothing_changes(
    svc: APIClient, other_tenant: Tenant, make_profile: Callable[..., Profile], woman: Profile
) -> None:
    foreign = make_profile(tenant_=other_tenant)
    embeddings_upsert(profile_ids=[foreign.pk])
    cache.clear()
    response = svc.post(EMBED, {"profile_ids": ids(woman, foreign)}, format="json")
    assert response.status_code == 400
    assert response.json() == {"profile_ids": {"1": [f"No profile {foreign.external_id} in this tenant."]}}
    assert cache.get(embedding_cache_key(tenant_id=other_tenant.pk, profile_id=foreign.pk)) is None
    assert ProfileEmbedding.objects.count() == 1


# --------------------------------------------------------------------------- credentials


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", EMBED, {"texts": ["hi"]}),
        ("post", SIMILARITY, {"pairs": [{"a": {"text": "a"}, "b": {"text": "b"}}]}),
        ("post", RANK, {"requests": []}),
        ("get", HEALTH, None),
    ],
)
def test_ml_endpoints_need_a_service_key(
    method: str,
    path: str,
    body: Any,
    woman: Profile,
    user_client_for: Callable[[Profile], APIClient],
) -> None:
    anonymous = getattr(APIClient(), method)(path, body, format="json")
    assert anonymous.status_code == 401
    user = getattr(user_client_for(woman), method)(path, body, format="json")
    assert user.status_code == 403
    assert "service key" in user.json()["detail"] and "not a user token" in user.json()["detail"]
    bad = getattr(bearer_client("psk_not-a-key"), method)(path, body, format="json")
    assert bad.status_code == 401


def test_another_tenants_key_cannot_reach_this_tenants_profiles(
    other_svc: APIClient, woman: Profile, men: list[Profile]
) -> None:
    embed = other_svc.post(EMBED, {"profile_ids": ids(woman)}, format="json")
    assert embed.status_code == 400 and "in this tenant" in str(embed.json())
    pair = {"a": {"profile_id": str(woman.external_id)}, "b": {"text": "hello"}}
    assert other_svc.post(SIMILARITY, {"pairs": [pair]}, format="json").status_code == 400
    rank = other_svc.post(
        RANK, {"requests": [{"user_id": str(woman.external_id), "candidate_ids": ids(men[0])}]}, format="json"
    )
    assert rank.status_code == 400
    assert set(rank.json()["requests"]["0"]) == {"user_id", "candidate_ids"}


# --------------------------------------------------------------------------- similarity


def pair(a: Profile | str, b: Profile | str) -> dict[str, Any]:
    def side(x: Profile | str) -> dict[str, str]:
        return {"text": x} if isinstance(x, str) else {"profile_id": str(x.external_id)}

    return {"a": side(a), "b": side(b)}


def test_similarities_of_mixed_pairs(svc: APIClient, woman: Profile, men: list[Profile]) -> None:
    embeddings_upsert(profile_ids=[woman.pk, men[0].pk])  # men[1] is encoded on the fly
    pairs = [
        pair("I love hiking.", "I love hiking."),
        pair(woman, men[0]),
        pair(woman, men[1]),
        pair(woman, "Spreadsheets and tax law."),
        pair(men[1], "Anime and video games."),
    ]
    response = svc.post(SIMILARITY, {"pairs": pairs}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["available"] is True and body["fallback"] is None
    results = body["results"]
    assert [r["index"] for r in results] == list(range(5))
    assert all(r["method"] == "embedding" and r["reason"] is None for r in results)
    assert results[0]["similarity"] == pytest.approx(1.0, abs=1e-5)
    # the same vectors the embeddings endpoint serves
    expected = float(stored(woman) @ stored(men[0]))
    assert results[1]["similarity"] == pytest.approx(expected, abs=1e-5)
    # the hiker is closer to the hiker than to the gamer; the gamer closest to games
    assert results[1]["similarity"] > results[2]["similarity"]
    assert results[4]["similarity"] > results[3]["similarity"]


def test_similarity_with_a_profile_without_text(
    svc: APIClient, woman: Profile, make_profile: Callable[..., Profile]
) -> None:
    silent = make_profile(bio="", prompts=[])
    body = svc.post(SIMILARITY, {"pairs": [pair(woman, silent)]}, format="json").json()
    assert body["results"] == [{"index": 0, "similarity": None, "method": None, "reason": "no_text"}]


def test_similarity_limits(svc: APIClient, settings: Any) -> None:
    settings.ML_BATCH_MAX_ITEMS = 2
    response = svc.post(SIMILARITY, {"pairs": [pair("a", "b")] * 3}, format="json")
    assert response.status_code == 413
    assert response.json()["field"] == "pairs" and response.json()["limit"] == 2
    settings.ML_TEXT_MAX_CHARS = 5
    response = svc.post(SIMILARITY, {"pairs": [pair("a", "b"), pair("abc", "toolong")]}, format="json")
    assert response.status_code == 400
    assert response.json() == {"pairs": {"1": {"b": {"text": ["At most 5 characters per text; got 7."]}}}}


@pytest.mark.parametrize(
    "pairs",
    [
        [],
        [{"a": {"text": "x"}}],
        [{"a": {"text": "x", "profile_id": "00000000-0000-0000-0000-000000000001"}, "b": {"text": "y"}}],
        [{"a": {}, "b": {"text": "y"}}],
        [{"a": {"text": "x"}, "b": {"text": "y"}, "c": {"text": "z"}}],
        [{"a": {"texts": "x"}, "b": {"text": "y"}}],
        "not a list",
    ],
)
def test_similarity_bad_input(svc: APIClient, pairs: Any) -> None:
    response = svc.post(SIMILARITY, {"pairs": pairs}, format="json")
    assert response.status_code == 400, response.json()
    assert "pairs" in response.json()


def test_similarity_unknown_profile_is_keyed_by_pair_and_side(svc: APIClient, woman: Profile) -> None:
    unknown = "00000000-0000-0000-0000-0000000000aa"
    pairs = [pair(woman, "x"), {"a": {"text": "x"}, "b": {"profile_id": unknown}}]
    response = svc.post(SIMILARITY, {"pairs": pairs}, format="json")
    assert response.status_code == 400
    assert response.json() == {"pairs": {"1": {"b": {"profile_id": [f"No profile {unknown} in this tenant."]}}}}


# --------------------------------------------------------------------------- fallback


def test_fallback_with_ml_disabled(svc: APIClient, settings: Any, woman: Profile, men: list[Profile]) -> None:
    embeddings_upsert(profile_ids=[woman.pk])
    settings.ML_ENABLED = False
    body = svc.post(EMBED, {"profile_ids": ids(woman, men[0])}, format="json").json()
    assert body["available"] is False and body["fallback"] == "ml_disabled" and body["dimension"] is None
    assert [(i["vector"], i["reason"]) for i in body["items"]] == [(None, "ml_disabled")] * 2
    assert svc.post(EMBED, {"texts": ["hi"]}, format="json").json()["items"][0]["reason"] == "ml_disabled"

    body = svc.post(SIMILARITY, {"pairs": [pair(woman, men[0]), pair(woman, "hiking")]}, format="json").json()
    assert body["available"] is False and body["fallback"] == "ml_disabled"
    # interests hiking+coffee vs hiking+chess: Jaccard 1/3; a text has no interests to compare
    assert body["results"][0] == {
        "index": 0,
        "similarity": pytest.approx(1 / 3, abs=1e-5),
        "method": "interests",
        "reason": "ml_disabled",
    }
    assert body["results"][1] == {"index": 1, "similarity": None, "method": None, "reason": "ml_disabled"}

    body = svc.post(
        RANK, {"requests": [{"user_id": str(woman.external_id), "candidate_ids": ids(*men)}]}, format="json"
    ).json()
    assert body["available"] is False and body["fallback"] == "ml_disabled"
    assert body["model_version"] == "feed-v1-fallback"
    ranked = body["rankings"][0]["candidates"]
    assert len(ranked) == 3 and all(c["components"]["similarity"] is None for c in ranked)
    assert all(c["components"]["structured"] is not None for c in ranked)


def test_fallback_with_the_model_missing(svc: APIClient, settings: Any, woman: Profile, men: list[Profile]) -> None:
    settings.EMBEDDING_MODEL = MISSING_MODEL
    body = svc.post(EMBED, {"texts": ["hi"]}, format="json").json()
    assert body["available"] is False and body["fallback"] == "model_unavailable"
    assert body["model"] == MISSING_MODEL and body["items"][0]["vector"] is None
    body = svc.post(SIMILARITY, {"pairs": [pair(woman, men[0])]}, format="json").json()
    assert body["fallback"] == "model_unavailable" and body["results"][0]["method"] == "interests"
    body = svc.post(
        RANK, {"requests": [{"user_id": str(woman.external_id), "candidate_ids": ids(*men)}]}, format="json"
    ).json()
    assert body["fallback"] == "model_unavailable" and len(body["rankings"][0]["candidates"]) == 3


# --------------------------------------------------------------------------- ranking


def test_rank_scores_with_the_feeds_scoring_and_flags_filtered_candidates(
    svc: APIClient, tenant: Tenant, woman: Profile, men: list[Profile], make_profile: Callable[..., Profile]
) -> None:
    other_woman = make_profile(gender="woman", seeking=["man"], bio="Another woman.", prompts=[])
    far = make_profile(gender="man", seeking=["woman"], lat=SF[0] + 3.0, lon=SF[1], bio="Far away.", prompts=[])
    old = make_profile(gender="man", seeking=["woman"], age=60, age_min=50, age_max=70, bio="Older.", prompts=[])
    swiped = make_profile(gender="man", seeking=["woman"], bio="Already seen.", prompts=[])
    swipe_batch_ingest(
        tenant=tenant,
        user=woman,
        session_id="s",
        timestamp=woman.created_at,
        swipes=[SwipeIn(candidate_id=swiped.external_id, action="pass")],
    )
    # men[2] already liked her: the liked-you boost
    swipe_batch_ingest(
        tenant=tenant,
        user=men[2],
        session_id="s",
        timestamp=woman.created_at,
        swipes=[SwipeIn(candidate_id=woman.external_id, action="like")],
    )
    everyone = [woman, *men, other_woman, far, old, swiped]
    embeddings_upsert(profile_ids=[p.pk for p in everyone])
    index_build(tenant=tenant)
    given = [far, men[1], other_woman, men[0], swiped, old, men[2], woman]
    swipes_before, impressions_before = Swipe.objects.count(), Impression.objects.count()

    response = svc.post(
        RANK, {"requests": [{"user_id": str(woman.external_id), "candidate_ids": ids(*given)}]}, format="json"
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["available"] is True and body["fallback"] is None and body["fusion"] == "harmonic"
    ranking = body["rankings"][0]
    assert ranking["user_id"] == str(woman.external_id)
    ranked = ranking["candidates"]
    assert sorted(c["candidate_id"] for c in ranked) == sorted(ids(*given))  # every candidate, once
    assert [c["rank"] for c in ranked] == list(range(1, 9))
    by_id = {c["candidate_id"]: c for c in ranked}
    failed = {c["candidate_id"]: c["failed_filters"] for c in ranked}
    assert failed[str(far.external_id)] == ["distance"]
    assert failed[str(other_woman.external_id)] == ["gender"]
    assert failed[str(old.external_id)] == ["age"]
    assert failed[str(swiped.external_id)] == ["already_swiped"]
    assert failed[str(woman.external_id)][0] == "self"
    passing = [c for c in ranked if c["passes_filters"]]
    assert {c["candidate_id"] for c in passing} == set(ids(*men))
    assert ranked[:3] == passing  # the eligible first ...
    assert [c["score"] for c in passing] == sorted((c["score"] for c in passing), reverse=True)  # ... best first
    rest = ranked[3:]
    assert [c["score"] for c in rest] == sorted((c["score"] for c in rest), reverse=True)
    for c in ranked:
        assert c["score"] == c["components"]["reciprocal"]  # full precision, not rounded
        assert c["components"]["similarity"] is not None
    assert by_id[str(men[2].external_id)]["components"]["liked_you"] is True
    assert by_id[str(men[0].external_id)]["components"]["liked_you"] is False
    # the hiker is more similar to her than the gamer
    assert (
        by_id[str(men[0].external_id)]["components"]["similarity"]
        > by_id[str(men[1].external_id)]["components"]["similarity"]
    )
    # the same scores as her feed gives the same candidates
    feed = feed_for(tenant=tenant, user=woman, count=10, log_impressions=False)
    assert feed.fallback is None
    served = {str(item.external_id): item for item in feed.items}
    assert set(served) == set(ids(*men))
    for candidate_id, item in served.items():
        assert by_id[candidate_id]["score"] == pytest.approx(item.score, abs=1e-4)
        for name in ("similarity", "structured", "elo", "interaction", "p_candidate_likes"):
            # the feed reads vectors from the index's memory, rank from the cache: equal to float32 rounding
            assert by_id[candidate_id]["components"][name] == pytest.approx(item.components[name], abs=2e-4), name
    # ranking is not serving: nothing was written
    assert (Swipe.objects.count(), Impression.objects.count()) == (swipes_before, impressions_before)


def test_batched_user_reads_agree_with_the_feeds(
    tenant: Tenant, woman: Profile, men: list[Profile], make_profile: Callable[..., Profile]
) -> None:
    """Ranking reads every user's swipes and exclusions in a few queries; they must be exactly
    what the feed's per-user readers (swipe_history, excluded_profile_ids) say."""
    from safety.services import block_create, report_create

    second = make_profile(gender="woman", seeking=["man"], bio="Second.", prompts=[])
    at = woman.created_at
    swipe_batch_ingest(tenant=tenant, user=woman, session_id="a", timestamp=at, swipes=[
        SwipeIn(candidate_id=men[0].external_id, action="like"),
        SwipeIn(candidate_id=men[1].external_id, action="pass"),
        SwipeIn(candidate_id=men[2].external_id, action="superlike"),
    ])  # fmt: skip
    swipe_batch_ingest(
        tenant=tenant,
        user=men[0],
        session_id="b",
        timestamp=at,
        swipes=[SwipeIn(candidate_id=woman.external_id, action="like")],
    )  # a match
    swipe_batch_ingest(tenant=tenant, user=men[1], session_id="c", timestamp=at,
                       swipes=[SwipeIn(candidate_id=second.external_id, action="superlike")])  # fmt: skip
    swipe_batch_ingest(tenant=tenant, user=second, session_id="d", timestamp=at,
                       swipes=[SwipeIn(candidate_id=men[2].external_id, action="pass")])  # fmt: skip
    block_create(blocker=men[2], blocked=second)
    report_create(reporter=second, reported=men[1], reason="spam_scam")
    users = [woman, second, *men]
    contexts = user_contexts(tenant=tenant, users=users)
    for user in users:
        history = swipe_history(user_id=user.pk)
        ctx = contexts[user.pk]
        assert ctx.swiped == set(history.swiped.tolist()), user
        assert ctx.likers == set(history.likers.tolist()), user
        assert ctx.history == (history.liked, history.superliked, history.passed), user
        assert ctx.excluded == excluded_profile_ids(tenant.pk, user.pk), user
    assert contexts[woman.pk].excluded == {woman.pk, men[0].pk}  # the match
    assert contexts[second.pk].excluded == {second.pk, men[2].pk, men[1].pk}  # blocked by, reported


def test_rank_several_users_in_one_request(
    svc: APIClient, woman: Profile, men: list[Profile], make_profile: Callable[..., Profile]
) -> None:
    second = make_profile(gender="woman", seeking=["man"], age=33, bio="Cooking and jazz.", prompts=[])
    requests = [
        {"user_id": str(woman.external_id), "candidate_ids": ids(*men)},
        {"user_id": str(second.external_id), "candidate_ids": ids(men[2], men[0])},
        {"user_id": str(men[0].external_id), "candidate_ids": ids(woman, second)},
    ]
    body = svc.post(RANK, {"requests": requests}, format="json").json()
    assert [r["user_id"] for r in body["rankings"]] == [r["user_id"] for r in requests]
    assert [len(r["candidates"]) for r in body["rankings"]] == [3, 2, 2]
    assert all(c["passes_filters"] for r in body["rankings"] for c in r["candidates"])


def test_rank_limits(svc: APIClient, settings: Any, woman: Profile, men: list[Profile]) -> None:
    user = str(woman.external_id)
    settings.ML_BATCH_MAX_ITEMS = 2
    response = svc.post(RANK, {"requests": [{"user_id": user, "candidate_ids": ids(men[0])}] * 3}, format="json")
    assert response.status_code == 413
    assert response.json()["field"] == "requests" and response.json()["limit"] == 2
    settings.ML_RANK_MAX_CANDIDATES = 2
    response = svc.post(RANK, {"requests": [{"user_id": user, "candidate_ids": ids(*men)}]}, format="json")
    assert response.status_code == 413
    assert response.json() == {
        "detail": "At most 2 candidates per user per request; got 3.",
        "code": "batch_too_large",
        "field": "candidate_ids",
        "limit": 2,
        "received": 3,
    }
    settings.ML_RANK_MAX_PAIRS = 3
    two = {"user_id": user, "candidate_ids": ids(men[0], men[1])}
    response = svc.post(RANK, {"requests": [two, two]}, format="json")
    assert response.status_code == 413
    assert response.json()["limit"] == 3 and response.json()["received"] == 4
    assert svc.post(RANK, {"requests": [two]}, format="json").status_code == 200


@pytest.mark.parametrize(
    ("make_body", "expected"),
    [
        (lambda u, c: {"requests": []}, {"requests": {"non_field_errors": ["This list may not be empty."]}}),
        (lambda u, c: {"requests": [{"user_id": u, "candidate_ids": []}]},
         {"requests": {"0": {"candidate_ids": ["This list may not be empty."]}}}),
        (lambda u, c: {"requests": [{"user_id": u, "candidate_ids": [c, c]}]},
         lambda u, c: {"requests": {"0": {"candidate_ids": {"1": [f"Duplicate candidate id {c}."]}}}}),
        (lambda u, c: {"requests": [{"candidate_ids": [c]}]},
         {"requests": {"0": {"user_id": ["This field is required."]}}}),
        (lambda u, c: {"requests": [{"user_id": "nope", "candidate_ids": [c]}]}, None),
        (lambda u, c: {"requests": [{"user_id": u, "candidate_ids": [c], "count": 3}]}, None),
        (lambda u, c: {"requests": [{"user_id": u, "candidate_ids": [c, UNKNOWN]}]},
         {"requests": {"0": {"candidate_ids": {"1": [f"No profile {UNKNOWN} in this tenant."]}}}}),
        (lambda u, c: {"users": []}, None),
    ],
)  # fmt: skip
def test_rank_bad_input(
    svc: APIClient, woman: Profile, men: list[Profile], make_body: Callable[[str, str], Any], expected: Any
) -> None:
    user, candidate = str(woman.external_id), str(men[0].external_id)
    response = svc.post(RANK, make_body(user, candidate), format="json")
    assert response.status_code == 400, response.json()
    if expected is not None:
        assert response.json() == (expected(user, candidate) if callable(expected) else expected)
    assert Impression.objects.count() == 0


def test_rank_skips_nothing_for_inactive_candidates(
    svc: APIClient, woman: Profile, men: list[Profile], make_profile: Callable[..., Profile]
) -> None:
    hidden = make_profile(gender="man", seeking=["woman"], status="hidden", bio="Hidden.", prompts=[])
    body = svc.post(
        RANK, {"requests": [{"user_id": str(woman.external_id), "candidate_ids": ids(hidden, men[0])}]}, format="json"
    ).json()
    ranked = body["rankings"][0]["candidates"]
    assert [c["candidate_id"] for c in ranked] == ids(men[0], hidden)
    assert ranked[1]["failed_filters"] == ["inactive"] and ranked[1]["passes_filters"] is False


# --------------------------------------------------------------------------- health


def test_health_ready(svc: APIClient, tenant: Tenant, woman: Profile, men: list[Profile]) -> None:
    embeddings_upsert(profile_ids=[woman.pk, *(m.pk for m in men)])
    index_build(tenant=tenant)
    response = svc.get(HEALTH)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready" and body["reason"] == ""
    assert body["ml_enabled"] is True
    embedding = body["models"]["embedding"]
    assert embedding["available"] is True and embedding["name"] == "all-MiniLM-L6-v2"
    assert embedding["device"] in ("cpu", "cuda", "mps") and embedding["dimension"] == DIM
    assert embedding["error"] is None and embedding["path"]
    assert body["models"]["safety"]["available"] is True
    assert body["active_versions"]["index"] == "index-v1"
    assert body["index"]["loaded"] is True and body["index"]["size"] == 4
    assert body["index"]["age_seconds"] >= 0 and body["index"]["version"]
    assert body["cache"]["ok"] and body["database"]["ok"] and body["broker"]["ok"]


def test_health_degraded_without_an_index(svc: APIClient) -> None:
    body = svc.get(HEALTH).json()
    assert body["status"] == "degraded"
    assert "no serving index" in body["reason"]
    assert body["index"]["loaded"] is False


def test_health_degraded_when_the_cache_fails(
    svc: APIClient, tenant: Tenant, woman: Profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    embeddings_upsert(profile_ids=[woman.pk])
    index_build(tenant=tenant)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("cache down")

    monkeypatch.setattr(cache, "set", broken)
    response = svc.get(HEALTH)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded" and "cache" in body["reason"]
    assert body["cache"]["ok"] is False


def test_health_unavailable_with_ml_disabled(svc: APIClient, settings: Any) -> None:
    settings.ML_ENABLED = False
    response = svc.get(HEALTH)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and "ML_ENABLED=false" in body["reason"]
    assert body["ml_enabled"] is False and body["models"]["embedding"]["available"] is False


def test_health_unavailable_with_the_model_missing(svc: APIClient, settings: Any) -> None:
    settings.EMBEDDING_MODEL = MISSING_MODEL
    response = svc.get(HEALTH)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and "embedding model" in body["reason"]
    assert body["models"]["embedding"]["available"] is False
    assert MISSING_MODEL in body["models"]["embedding"]["error"]


def test_health_unavailable_when_the_database_fails(svc: APIClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from core import health

    def broken() -> None:
        raise RuntimeError("db down")

    monkeypatch.setattr(health, "_check_database", broken)
    response = svc.get(HEALTH)
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable" and "database" in response.json()["reason"]
