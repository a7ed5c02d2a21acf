"""Profile CRUD, /me, user tokens, erasure, and the credential and tenant boundaries."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import UserToken
from accounts.services import service_key_create, service_key_revoke
from recommender.models import Match, Profile, ProfileStatus, Swipe
from tests.conftest import bearer_client, profile_data

PROFILES = "/internal/v1/profiles"


def detail(profile: Profile | str) -> str:
    ext = profile.external_id if isinstance(profile, Profile) else profile
    return f"{PROFILES}/{ext}"


def test_create_and_read_profile(service_client):
    data = profile_data(attributes={"diet": "vegan", "height": 180, "relationship_status": "single"})
    response = service_client.post(PROFILES, data, format="json")
    assert response.status_code == 201, response.json()
    body = service_client.get(detail(data["external_id"])).json()
    assert body["external_id"] == data["external_id"]
    assert body["attributes"]["diet"] == "vegan" and body["attributes"]["height"] == 180
    assert body["attributes"]["relationship_status"] == "single"
    assert body["prompts"] == data["prompts"] and body["interests"] == data["interests"]
    assert body["status"] == "active"


def test_duplicate_external_id_is_a_conflict(service_client):
    data = profile_data()
    service_client.post(PROFILES, data, format="json")
    response = service_client.post(PROFILES, data, format="json")
    assert response.status_code == 409
    assert "external_id" in response.json()
    assert Profile.objects.count() == 1


def test_same_external_id_in_two_tenants(service_client, other_tenant):
    data = profile_data()
    other = bearer_client(service_key_create(tenant=other_tenant, name="b").raw)
    assert service_client.post(PROFILES, data, format="json").status_code == 201
    assert other.post(PROFILES, data, format="json").status_code == 201
    assert Profile.objects.filter(external_id=data["external_id"]).count() == 2


BAD_PROFILES: list[tuple[str, dict[str, Any], str]] = [
    ("age below 18", {"age": 17}, "age"),
    ("age above 120", {"age": 121}, "age"),
    ("lat out of bounds", {"lat": 91}, "lat"),
    ("lon out of bounds", {"lon": -181}, "lon"),
    ("min age above max age", {"age_min": 40, "age_max": 30}, "age_min"),
    ("unknown gender", {"gender": "robot"}, "gender"),
    ("unknown seeking value", {"seeking": ["man", "robot"]}, "seeking"),
    ("empty seeking", {"seeking": []}, "seeking"),
    ("bad external id", {"external_id": "not-a-uuid"}, "external_id"),
    ("prompt without answer", {"prompts": [{"question": "Q"}]}, "prompts"),
    ("interests not strings", {"interests": [{"a": 1}]}, "interests"),
    ("unknown attribute", {"attributes": {"star_sign": "leo"}}, "attributes"),
    ("height out of range", {"attributes": {"height": 400}}, "attributes"),
    ("banned status is not a choice", {"status": "erased"}, "status"),
    ("zero distance", {"max_distance_km": 0}, "max_distance_km"),
    ("bio too long", {"bio": "x" * 5001}, "bio"),
]


@pytest.mark.parametrize(("case", "change", "field"), BAD_PROFILES, ids=[c[0] for c in BAD_PROFILES])
def test_bad_profiles_are_refused(service_client, case, change, field):
    response = service_client.post(PROFILES, profile_data(**change), format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json(), response.json()
    assert Profile.objects.count() == 0


def test_missing_required_fields(service_client):
    response = service_client.post(PROFILES, {}, format="json")
    assert response.status_code == 400
    assert {"external_id", "age", "gender", "seeking", "lat", "lon"} <= set(response.json())


def test_patch_updates_only_given_fields(service_client, make_profile):
    profile = make_profile(bio="old")
    response = service_client.patch(detail(profile), {"bio": "new", "attributes": {"pets": "has cats"}}, format="json")
    assert response.status_code == 200, response.json()
    profile.refresh_from_db()
    assert (profile.bio, profile.pets, profile.diet, profile.age) == ("new", "has cats", "vegetarian", 30)


def test_patch_cannot_break_age_range(service_client, make_profile):
    profile = make_profile(age_min=25, age_max=40)
    response = service_client.patch(detail(profile), {"age_min": 50}, format="json")
    assert response.status_code == 400 and "age_min" in response.json()
    profile.refresh_from_db()
    assert profile.age_min == 25


def test_no_age_preference_is_null_or_absent(service_client, make_profile):
    """Null (or leaving the fields out) states no age preference: the full 18..120 range, which
    filters nobody and is neutral in scoring."""
    data = profile_data(age_min=None, age_max=None)
    response = service_client.post(PROFILES, data, format="json")
    assert response.status_code == 201, response.json()
    body = service_client.get(detail(data["external_id"])).json()
    assert (body["age_min"], body["age_max"]) == (18, 120)
    profile = make_profile(age_min=25, age_max=40)
    assert service_client.patch(detail(profile), {"age_max": None}, format="json").status_code == 200
    profile.refresh_from_db()
    assert (profile.age_min, profile.age_max) == (25, 120)


def test_patch_cannot_change_external_id(service_client, make_profile):
    profile = make_profile()
    response = service_client.patch(detail(profile), {"external_id": str(uuid.uuid4())}, format="json")
    assert response.status_code == 400


def test_unknown_profile_is_404(service_client):
    assert service_client.get(detail(str(uuid.uuid4()))).status_code == 404
    assert service_client.patch(detail(str(uuid.uuid4())), {"bio": "x"}, format="json").status_code == 404
    assert service_client.delete(detail(str(uuid.uuid4()))).status_code == 404


def test_user_token_reads_and_updates_me(service_client, make_profile):
    profile = make_profile()
    response = service_client.post(f"/internal/v1/users/{profile.external_id}/tokens")
    assert response.status_code == 201
    token = response.json()["token"]
    assert token.startswith("put_")
    assert UserToken.objects.get().key_hash != token  # only the hash is stored
    user = bearer_client(token)
    assert user.get("/api/v1/me").json()["external_id"] == str(profile.external_id)
    assert user.patch("/api/v1/me", {"bio": "hello", "status": "hidden"}, format="json").status_code == 200
    profile.refresh_from_db()
    assert (profile.bio, profile.status) == ("hello", "hidden")


def test_user_cannot_ban_themself(user_client_for, make_profile):
    profile = make_profile()
    response = user_client_for(profile).patch("/api/v1/me", {"status": "banned"}, format="json")
    assert response.status_code == 400
    profile.refresh_from_db()
    assert profile.status == "active"


def test_user_token_is_scoped_to_its_profile(user_client_for, make_profile):
    me, other = make_profile(), make_profile()
    client = user_client_for(me)
    # The internal API is for services only.
    assert client.get(detail(other)).status_code == 403
    assert client.get(detail(me)).status_code == 403
    assert client.patch(detail(other), {"bio": "pwned"}, format="json").status_code == 403
    assert client.delete(detail(other)).status_code == 403
    assert client.post(PROFILES, profile_data(), format="json").status_code == 403
    assert client.post(f"/internal/v1/users/{other.external_id}/tokens").status_code == 403
    other.refresh_from_db()
    assert other.bio != "pwned" and other.status == "active"
    assert Profile.objects.count() == 2


def test_user_token_cannot_send_events_for_someone_else(user_client_for, make_profile):
    me, other, candidate = make_profile(), make_profile(), make_profile(gender="man", seeking=["woman"])
    body = {
        "user_id": str(other.external_id),
        "session_id": "s",
        "timestamp": "2026-01-01T00:00:00Z",
        "swipes": [{"candidate_id": str(candidate.external_id), "action": "like"}],
    }
    response = user_client_for(me).post("/api/v1/events/swipes", body, format="json")
    assert response.status_code == 403
    assert Swipe.objects.count() == 0
    impressions = {
        "user_id": str(other.external_id),
        "candidate_ids": [str(candidate.external_id)],
        "positions": [0],
        "timestamp": "2026-01-01T00:00:00Z",
    }
    assert user_client_for(me).post("/api/v1/events/impressions", impressions, format="json").status_code == 403


def test_service_key_never_reaches_another_tenant(service_client, make_profile, other_tenant):
    foreign = make_profile(other_tenant)
    assert service_client.get(detail(foreign)).status_code == 404
    assert service_client.patch(detail(foreign), {"bio": "x"}, format="json").status_code == 404
    assert service_client.delete(detail(foreign)).status_code == 404
    assert service_client.post(f"/internal/v1/users/{foreign.external_id}/tokens").status_code == 404
    foreign.refresh_from_db()
    assert foreign.bio != "x" and foreign.status == "active"


def test_service_key_is_not_a_user_token(service_client):
    assert service_client.get("/api/v1/me").status_code == 403


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer psk_wrong", "Bearer put_wrong", "Token abc", "Bearer something"],
    ids=["none", "empty bearer", "unknown service key", "unknown user token", "wrong scheme", "unknown format"],
)
def test_bad_credentials_are_401(header, db):
    from rest_framework.test import APIClient

    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)
    assert client.get("/api/v1/me").status_code == 401
    assert client.post(PROFILES, profile_data(), format="json").status_code == 401
    assert Profile.objects.count() == 0


def test_revoked_service_key_and_expired_token(service_key, service_client, make_profile, user_client_for, tenant):
    profile = make_profile()
    user = user_client_for(profile)
    UserToken.objects.update(expires_at=timezone.now())
    assert user.get("/api/v1/me").status_code == 401
    key = tenant.service_keys.get()
    service_key_revoke(key=key)
    assert service_client.get(detail(profile)).status_code == 401


def test_erasure_wipes_personal_fields_and_keeps_anonymised_events(service_client, make_profile, user_client_for):
    woman = make_profile(bio="Find me on the beach", interests=["surfing"])
    man = make_profile(gender="man", seeking=["woman"])
    token_client = user_client_for(woman)
    for user, cand in ((woman, man), (man, woman)):
        body = {
            "user_id": str(user.external_id),
            "session_id": "s",
            "timestamp": "2026-01-01T00:00:00Z",
            "swipes": [{"candidate_id": str(cand.external_id), "action": "like"}],
        }
        service_client.post("/api/v1/events/swipes", body, format="json")
    old_id = woman.external_id

    assert service_client.delete(detail(woman)).status_code == 204

    tomb = Profile.objects.get(pk=woman.pk)
    assert tomb.status == ProfileStatus.ERASED and tomb.erased_at is not None
    assert tomb.external_id != old_id
    assert (tomb.bio, tomb.prompts, tomb.interests, tomb.seeking) == ("", [], [], [])
    assert (tomb.lat, tomb.lon, tomb.diet, tomb.height) == (0.0, 0.0, "", None)
    assert tomb.age == 30  # the decade only
    # Events survive, attached to the anonymous tombstone.
    assert Swipe.objects.filter(user=tomb).count() == 1 and Match.objects.count() == 1
    assert not Profile.objects.filter(external_id=old_id).exists()
    # The profile is gone for every API, and its tokens no longer work.
    assert service_client.get(detail(old_id)).status_code == 404
    assert token_client.get("/api/v1/me").status_code == 401
    # The app may register the same user again from scratch.
    assert service_client.post(PROFILES, profile_data(external_id=str(old_id)), format="json").status_code == 201


def test_patch_refuses_prompts_without_keys(service_client, make_profile):
    profile = make_profile()
    response = service_client.patch(detail(profile), {"prompts": [{"nope": 1}]}, format="json")
    assert response.status_code == 400 and "prompts" in response.json()
    profile.refresh_from_db()
    assert profile.prompts[0]["question"] == "My ideal Sunday"


def test_status_erased_only_through_erasure(make_profile):
    from recommender.services.profiles import profile_set_status

    profile = make_profile()
    with pytest.raises(ValueError, match="profile_erase"):
        profile_set_status(profile=profile, status="erased")
    profile.refresh_from_db()
    assert profile.status == "active"


@pytest.mark.parametrize("path", ["/internal/v1/profiles/not-a-uuid", "/api/v1/nope", "/internal/v1/users/42/tokens"])
def test_unknown_api_paths_answer_json_404(service_client, path):
    response = service_client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert path in response.json()["detail"]
