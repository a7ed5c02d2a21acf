"""The feed endpoints: credentials, tenant isolation, the answer's shape and the bad-input table."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.urls import include, path

from accounts.models import Tenant
from accounts.services import service_key_create
from patra.urls import urlpatterns as project_urlpatterns
from recommender.models import Impression, Profile
from recommender.urls import feed_ml_urlpatterns, feed_urlpatterns
from tests.conftest import bearer_client

# The project's routes plus the feed's, as patra/urls.py includes them; this module is the test
# urlconf, so the tests do not depend on that include being in place.
urlpatterns = [
    *project_urlpatterns,
    path("api/v1/", include((feed_urlpatterns, "feed"))),
    path("internal/ml/", include((feed_ml_urlpatterns, "feed-ml"))),
]
pytestmark = pytest.mark.urls(__name__)

FEED = "/api/v1/feed"
RECOMMENDATIONS = "/internal/ml/recommendations"
SF = (37.7749, -122.4194)


@pytest.fixture(autouse=True)
def _fresh_feed_state(isolated_ml_state: None) -> None:
    """Every test here starts from empty in-process feed and index state (see conftest)."""


@pytest.fixture
def user(make_profile: Callable[..., Profile]) -> Profile:
    return make_profile(gender="woman", seeking=["man"], age=30, age_min=25, age_max=40, lat=SF[0], lon=SF[1])


@pytest.fixture
def men(make_profile: Callable[..., Profile]) -> list[Profile]:
    """Eligible for ``user``, aged 26..38, within a few km."""
    return [
        make_profile(
            gender="man",
            seeking=["woman"],
            age=26 + 2 * i,
            age_min=20,
            age_max=50,
            max_distance_km=50.0,
            lat=SF[0] + 0.01 * i,
            lon=SF[1],
            bio=f"Man number {i}, into {['climbing', 'cooking', 'chess', 'jazz'][i % 4]}.",
        )
        for i in range(7)
    ]


def body(tenant: Tenant, user: Profile, **extra: Any) -> dict[str, Any]:
    return {"tenant_id": tenant.slug, "user_id": str(user.external_id), **extra}


def assert_feed_shape(data: dict[str, Any], expected_ids: set[str]) -> None:
    assert set(data) == {"recommendations", "model_version", "latency_ms", "cache_hit", "fallback"}
    assert {r["user_id"] for r in data["recommendations"]} <= expected_ids
    for rec in data["recommendations"]:
        assert set(rec) == {"user_id", "score", "components"}
        assert {"p_user_likes", "p_candidate_likes", "reciprocal", "explore", "liked_you"} <= set(rec["components"])
    scores = [r["score"] for r in data["recommendations"]]
    assert scores == sorted(scores, reverse=True)


# --------------------------------------------------------------------------- GET /api/v1/feed


def test_user_gets_their_feed_and_it_is_logged(user_client_for, user, men):
    response = user_client_for(user).get(FEED, {"count": 5})
    assert response.status_code == 200, response.json()
    data = response.json()
    assert_feed_shape(data, {str(m.external_id) for m in men})
    assert len(data["recommendations"]) == 5
    assert Impression.objects.filter(user=user).count() == 5
    assert set(Impression.objects.values_list("model_version", flat=True)) == {data["model_version"]}


def test_feed_count_defaults_to_20(user_client_for, user, make_profile):
    for i in range(25):
        make_profile(gender="man", seeking=["woman"], age=30, lat=SF[0] + 0.002 * i, lon=SF[1], bio=f"Guy {i}")
    assert len(user_client_for(user).get(FEED).json()["recommendations"]) == 20


@pytest.mark.parametrize("count", ["0", "101", "-1", "abc", "2.5"])
def test_feed_bad_count(user_client_for, user, count):
    response = user_client_for(user).get(FEED, {"count": count})
    assert response.status_code == 400
    assert set(response.json()) == {"count"}


def test_feed_needs_a_user_token(client, service_client):
    assert client.get(FEED).status_code == 401
    assert service_client.get(FEED).status_code == 403


def test_feed_with_ml_disabled_says_fallback(settings, user_client_for, user, men):
    settings.ML_ENABLED = False
    data = user_client_for(user).get(FEED, {"count": 3}).json()
    assert data["fallback"] == "ml_disabled"
    assert len(data["recommendations"]) == 3


# --------------------------------------------------------------------------- POST /internal/ml/recommendations


def test_service_gets_recommendations(service_client, tenant, user, men):
    response = service_client.post(RECOMMENDATIONS, body(tenant, user, count=4), format="json")
    assert response.status_code == 200, response.json()
    data = response.json()
    assert_feed_shape(data, {str(m.external_id) for m in men})
    assert len(data["recommendations"]) == 4


def test_recommendations_need_a_service_key(client, user_client_for, tenant, user):
    assert client.post(RECOMMENDATIONS, body(tenant, user), format="json").status_code == 401
    assert user_client_for(user).post(RECOMMENDATIONS, body(tenant, user), format="json").status_code == 403


def test_recommendations_never_cross_tenants(service_client, tenant, other_tenant, user, make_profile):
    stranger = make_profile(tenant_=other_tenant, gender="man", seeking=["woman"])
    mismatch = service_client.post(RECOMMENDATIONS, body(other_tenant, user), format="json")
    assert mismatch.status_code == 403
    assert "tenant_id" in mismatch.json()
    # the other tenant's user, named with our slug or theirs, is simply not found
    response = service_client.post(RECOMMENDATIONS, body(tenant, stranger), format="json")
    assert response.status_code == 404
    other_key = bearer_client(service_key_create(tenant=other_tenant, name="theirs").raw)
    assert other_key.post(RECOMMENDATIONS, body(other_tenant, user), format="json").status_code == 404
    # and their own feed never contains our profiles
    data = other_key.post(RECOMMENDATIONS, body(other_tenant, stranger), format="json").json()
    assert data["recommendations"] == []


def test_unknown_user_is_404(service_client, tenant):
    response = service_client.post(
        RECOMMENDATIONS, {"tenant_id": tenant.slug, "user_id": str(uuid.uuid4())}, format="json"
    )
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"count": 0}, "count"),
        ({"count": 101}, "count"),
        ({"count": "many"}, "count"),
        ({"user_id": "not-a-uuid"}, "user_id"),
        ({"user_id": None}, "user_id"),
        ({"tenant_id": None}, "tenant_id"),
        ({"tenant_id": "not a slug!"}, "tenant_id"),
        ({"filters": {"age_min": 17}}, "filters"),
        ({"filters": {"age_max": 121}}, "filters"),
        ({"filters": {"age_min": 40, "age_max": 30}}, "filters"),
        ({"filters": {"max_distance_km": 0}}, "filters"),
        ({"filters": {"max_distance_km": -5}}, "filters"),
        ({"filters": {"genders": ["alien"]}}, "filters"),
        ({"filters": {"genders": []}}, "filters"),
        ({"filters": {"genders": "man"}}, "filters"),
        ({"filters": {"height_min": 170}}, "filters"),
        ({"filters": "young"}, "filters"),
    ],
)
def test_recommendations_bad_input(service_client, tenant, user, change, field):
    payload = body(tenant, user)
    for key, value in change.items():
        if value is None:
            payload.pop(key)
        else:
            payload[key] = value
    response = service_client.post(RECOMMENDATIONS, payload, format="json")
    assert response.status_code == 400, response.json()
    assert set(response.json()) == {field}


def test_filter_errors_are_field_level(service_client, tenant, user):
    payload = body(tenant, user, filters={"age_min": 40, "age_max": 30, "colour": "blue"})
    data = service_client.post(RECOMMENDATIONS, payload, format="json").json()
    assert data == {"filters": {"colour": [data["filters"]["colour"][0]]}}
    assert "Unknown filter" in data["filters"]["colour"][0]
    data = service_client.post(
        RECOMMENDATIONS, body(tenant, user, filters={"age_min": 40, "age_max": 30}), format="json"
    )
    assert set(data.json()["filters"]) == {"age_min"}


def test_filters_narrow_but_never_widen(service_client, tenant, user, men, make_profile):
    too_old = make_profile(gender="man", seeking=["woman"], age=55, age_min=20, age_max=60, lat=SF[0], lon=SF[1])
    payload = body(tenant, user, count=50, filters={"age_min": 18, "age_max": 120, "max_distance_km": 20000})
    wide = {
        r["user_id"] for r in service_client.post(RECOMMENDATIONS, payload, format="json").json()["recommendations"]
    }
    assert str(too_old.external_id) not in wide
    assert wide == {str(m.external_id) for m in men}
    payload = body(tenant, user, count=50, filters={"age_min": 30, "age_max": 34, "genders": ["man"]})
    narrow = service_client.post(RECOMMENDATIONS, payload, format="json").json()["recommendations"]
    assert {r["user_id"] for r in narrow} == {str(m.external_id) for m in men if 30 <= m.age <= 34}
