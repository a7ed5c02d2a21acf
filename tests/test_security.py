"""Security review as tests: every API endpoint's credential and tenant scoping, CSRF and session
cookies of the admin and the moderation console, security headers, secrets from the environment.

The endpoint list comes from the URL resolver, so a new endpoint under /api/ or /internal/ fails
``test_every_api_route_is_classified`` until it is added to ROUTES with its credential, and is
then checked by every test below. (Rate limits are tested with the throttles themselves.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from accounts.models import Tenant
from accounts.services import service_key_create, user_token_issue
from recommender.models import Profile, ProfileStatus, Swipe
from tests.conftest import bearer_client

ROOT = Path(__file__).resolve().parent.parent
API_PREFIXES = ("api/", "internal/")

# route (as the resolver spells it) -> (methods, credential): "service" (tenant service key),
# "user" (user token), "either", "appeal" (user token, banned users included), "public".
ROUTES: dict[str, tuple[tuple[str, ...], str]] = {
    "api/v1/health": (("get",), "public"),
    "api/v1/me": (("get", "patch"), "user"),
    "api/v1/events/swipes": (("post",), "either"),
    "api/v1/events/impressions": (("post",), "either"),
    "api/v1/feed": (("get",), "user"),
    "api/v1/reports": (("post",), "user"),
    "api/v1/blocks": (("post",), "user"),
    "api/v1/appeals": (("post",), "appeal"),
    "api/v1/ml/safety/classify": (("post",), "service"),
    "api/v1/ml/embeddings/batch": (("post",), "service"),
    "api/v1/ml/similarity/batch": (("post",), "service"),
    "api/v1/ml/profiles/rank/batch": (("post",), "service"),
    "api/v1/ml/health": (("get",), "service"),
    "internal/v1/profiles": (("post",), "service"),
    "internal/v1/profiles/batch": (("post",), "service"),
    "internal/v1/profiles/<uuid:external_id>": (("get", "patch", "delete"), "service"),
    "internal/v1/users/<uuid:external_id>/tokens": (("post",), "service"),
    "internal/v1/events/matches": (("post",), "service"),
    "internal/ml/recommendations": (("post",), "service"),
}
# The machine-readable API description is public by design (it holds no data); the names of its
# routes are not settled yet, so any route starting with one of these is accepted as public.
PUBLIC_PREFIXES = ("api/schema", "api/docs", "api/redoc", "api/swagger")


def api_routes() -> set[str]:
    routes: set[str] = set()

    def walk(patterns: list[Any], prefix: str) -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                routes.add(prefix + str(p.pattern))

    walk(get_resolver().url_patterns, "")
    return {r.lstrip("^").rstrip("$") for r in routes if r.lstrip("^").startswith(API_PREFIXES)}


def classified() -> list[tuple[str, str, str]]:
    """(route, method, credential) of every endpoint that exists now."""
    present = api_routes()
    return [(route, m, cred) for route, (methods, cred) in ROUTES.items() if route in present for m in methods]


def concrete(route: str, external_id: object | None = None) -> str:
    path = "/" + route
    path = path.replace("<uuid:external_id>", str(external_id or uuid.uuid4()))
    return path


def test_every_api_route_is_classified():
    unknown = {r for r in api_routes() - ROUTES.keys() if not r.startswith(PUBLIC_PREFIXES)}
    assert not unknown, f"classify these endpoints in tests/test_security.py ROUTES: {sorted(unknown)}"
    assert {r for r in ROUTES if r in api_routes()} >= {"api/v1/feed", "internal/v1/profiles", "api/v1/me"}


@pytest.fixture
def keys(db, tenant: Tenant, other_tenant: Tenant, make_profile) -> dict[str, Any]:
    mine = make_profile()
    theirs = make_profile(tenant_=other_tenant)
    banned = make_profile(gender="man", seeking=["woman"])
    k = {
        "service": service_key_create(tenant=tenant, name="sec").raw,
        "user": user_token_issue(profile=mine).raw,
        "other_service": service_key_create(tenant=other_tenant, name="sec").raw,
        "other_user": user_token_issue(profile=theirs).raw,
        "banned_user": user_token_issue(profile=banned).raw,
        "mine": mine,
        "theirs": theirs,
        "banned": banned,
    }
    Profile.objects.filter(pk=banned.pk).update(status=ProfileStatus.BANNED)
    return k


def call(client: Any, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    if method in ("get", "delete"):
        return getattr(client, method)(path)
    return getattr(client, method)(path, body or {}, format="json")


@pytest.mark.django_db
@pytest.mark.parametrize(("route", "method", "credential"), classified())
def test_no_or_bad_credential_is_401(keys, route, method, credential):
    from rest_framework.test import APIClient

    path = concrete(route, keys["mine"].external_id)
    anonymous = call(APIClient(), method, path)
    forged = call(bearer_client("psk_" + "x" * 43), method, path)
    garbage = call(bearer_client("not-a-key"), method, path)
    if credential == "public":
        assert anonymous.status_code == 200
        return
    for response in (anonymous, forged, garbage):
        assert response.status_code == 401, (path, response.status_code, response.content)
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert response["Content-Type"].startswith("application/json")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("route", "method", "credential"), [c for c in classified() if c[2] in ("service", "user", "appeal")]
)
def test_wrong_credential_type_is_403(keys, route, method, credential):
    wrong = keys["user"] if credential == "service" else keys["service"]
    response = call(bearer_client(wrong), method, concrete(route, keys["mine"].external_id))
    assert response.status_code == 403, response.content


@pytest.mark.django_db
@pytest.mark.parametrize(("route", "method", "credential"), [c for c in classified() if c[2] in ("user", "either")])
def test_banned_user_may_only_appeal(keys, route, method, credential):
    response = call(bearer_client(keys["banned_user"]), method, concrete(route))
    assert response.status_code == 403 and "banned" in response.json()["detail"]


@pytest.mark.django_db
def test_revoked_and_expired_credentials_are_401(keys):
    from accounts.models import ServiceKey, UserToken

    ServiceKey.objects.filter(tenant=keys["mine"].tenant).update(revoked_at=timezone.now())
    UserToken.objects.filter(profile=keys["mine"]).update(expires_at=timezone.now())
    assert bearer_client(keys["service"]).get(concrete("internal/v1/profiles/<uuid:external_id>")).status_code == 401
    assert bearer_client(keys["user"]).get("/api/v1/me").status_code == 401


# --- Tenant scoping: another tenant's object answers exactly like one that does not exist ----------


def swipe_body(user_id: object, candidate_id: object) -> dict[str, Any]:
    return {
        "user_id": str(user_id),
        "session_id": "s",
        "timestamp": timezone.now().isoformat(),
        "swipes": [{"candidate_id": str(candidate_id), "action": "like"}],
    }


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "patch", "delete"])
def test_other_tenants_profile_is_404_for_a_service(keys, method):
    client = bearer_client(keys["other_service"])
    mine = keys["mine"]
    response = call(client, method, f"/internal/v1/profiles/{mine.external_id}", {"bio": "taken over"})
    assert response.status_code == 404
    assert call(client, method, f"/internal/v1/profiles/{uuid.uuid4()}", {"bio": "x"}).status_code == 404
    mine.refresh_from_db()
    assert mine.status == ProfileStatus.ACTIVE and mine.bio != "taken over"


@pytest.mark.django_db
def test_other_tenants_user_gets_no_token_and_no_feed(keys):
    client = bearer_client(keys["other_service"])
    mine = keys["mine"]
    assert client.post(f"/internal/v1/users/{mine.external_id}/tokens").status_code == 404
    body = {"tenant_id": "other", "user_id": str(mine.external_id), "count": 5}
    assert client.post("/internal/ml/recommendations", body, format="json").status_code == 404
    body["tenant_id"] = mine.tenant.slug  # naming the other tenant in the body does not help
    assert client.post("/internal/ml/recommendations", body, format="json").status_code == 403


@pytest.mark.django_db
def test_other_tenants_users_events_are_refused_and_not_stored(keys):
    mine, theirs = keys["mine"], keys["theirs"]
    service = bearer_client(keys["other_service"])
    # a service acting for a user of another tenant: 404, as for an unknown user
    assert (
        service.post(
            "/api/v1/events/swipes", swipe_body(mine.external_id, theirs.external_id), format="json"
        ).status_code
        == 404
    )
    # a user swiping on a profile of another tenant: the same 400 as for an unknown profile
    user = bearer_client(keys["other_user"])
    cross = user.post("/api/v1/events/swipes", swipe_body(theirs.external_id, mine.external_id), format="json")
    unknown = user.post("/api/v1/events/swipes", swipe_body(theirs.external_id, uuid.uuid4()), format="json")
    assert cross.status_code == unknown.status_code == 400
    assert "Unknown profile" in str(cross.json()) and "Unknown profile" in str(unknown.json())
    # a user token naming another user (of any tenant) is refused
    forged = bearer_client(keys["user"]).post(
        "/api/v1/events/swipes", swipe_body(theirs.external_id, keys["banned"].external_id), format="json"
    )
    assert forged.status_code == 403
    matches = {
        "matches": [
            {
                "user_id": str(mine.external_id),
                "candidate_id": str(theirs.external_id),
                "timestamp": timezone.now().isoformat(),
            }
        ]
    }
    assert service.post("/internal/v1/events/matches", matches, format="json").status_code == 400
    assert not Swipe.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("route", ["/api/v1/reports", "/api/v1/blocks"])
def test_reports_and_blocks_cannot_reach_another_tenant(keys, route):
    client = bearer_client(keys["user"])
    body = {"profile_id": str(keys["theirs"].external_id), "reason": "spam_scam"}
    cross = client.post(route, body, format="json")
    unknown = client.post(route, {**body, "profile_id": str(uuid.uuid4())}, format="json")
    assert cross.status_code == unknown.status_code == 400
    assert cross.json() == unknown.json()


# --- Admin and moderation console: CSRF, sessions, headers -------------------------------------


@pytest.fixture
def staff(django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser("sec-admin", "sec@example.com", "pw-Sec-12345")


def csrf_token(client: Client, path: str) -> str:
    client.get(path)
    return client.cookies["csrftoken"].value


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("page", "post", "data"),
    [
        ("/admin/login/", "/admin/login/", {"username": "sec-admin", "password": "pw-Sec-12345"}),
        ("/moderation/", "/moderation/next", {"queue": "review"}),
        ("/moderation/", "/moderation/bulk", {"queue": "review", "action": "approve", "items": []}),
        ("/admin/accounts/tenant/add/", "/admin/accounts/tenant/add/", {"slug": "csrf", "name": "CSRF"}),
    ],
)
def test_staff_posts_need_a_csrf_token(staff, page, post, data):
    client = Client(enforce_csrf_checks=True)
    if not post.startswith("/admin/login"):
        client.force_login(staff)
    refused = client.post(post, data)
    assert refused.status_code == 403 and b"CSRF" in refused.content
    token = csrf_token(client, page)
    accepted = client.post(post, {**data, "csrfmiddlewaretoken": token})
    assert accepted.status_code != 403
    assert not Tenant.objects.filter(slug="csrf").exists() or accepted.status_code == 302


@pytest.mark.django_db
def test_session_cookie_flags_and_security_headers(staff):
    client = Client(enforce_csrf_checks=True)
    token = csrf_token(client, "/admin/login/")
    response = client.post(
        "/admin/login/", {"username": "sec-admin", "password": "pw-Sec-12345", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302
    session = response.cookies["sessionid"]
    assert session["httponly"] and session["samesite"] == "Lax"
    assert 0 < int(session["max-age"]) <= 24 * 3600
    assert client.cookies["csrftoken"]["samesite"] == "Lax"
    for path in ("/admin/", "/moderation/", "/api/v1/health"):
        page = client.get(path)
        assert page["X-Content-Type-Options"] == "nosniff"
        assert page["Referrer-Policy"] == "same-origin"
        assert page["Cross-Origin-Opener-Policy"] == "same-origin"
        if path != "/api/v1/health":
            assert page["X-Frame-Options"] == "DENY"
    # Anonymous people never see the console or the admin, only the login page.
    for path in ("/admin/", "/moderation/", "/moderation/health"):
        assert Client().get(path).status_code == 302


def run_production(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "SECURE_", "SECRET"))}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()\n" + code],
        env={
            **clean,
            "DJANGO_SETTINGS_MODULE": "patra.settings",
            "PATRA_ENV": "production",
            "SECRET_KEY": "s" * 50,
            "ALLOWED_HOSTS": "api.example.com",
            **env,
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_sends_hsts_and_secure_cookies():
    code = """
from django.conf import settings
from django.test import Client
r = Client().get("/api/v1/no-such-route", secure=True, HTTP_HOST="api.example.com")
print(r.status_code, r["Strict-Transport-Security"], r["X-Content-Type-Options"])
print(settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE, settings.SECRET_KEY == "s" * 50)
"""
    result = run_production(code)
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.split("\n")[:2]
    assert first == "404 max-age=31536000 nosniff"
    assert second == "True True True"


def test_secrets_come_only_from_the_environment():
    """No credential in the code: the secret key, database and cache passwords are read from the
    environment (production refuses the development key, tests/test_health_and_settings.py)."""
    code = """
from django.conf import settings
print(settings.SECRET_KEY, settings.DATABASES["default"]["PASSWORD"], settings.CACHES["default"]["LOCATION"])
"""
    result = run_production(
        code,
        SECRET_KEY="k" * 40 + "-from-env",
        DATABASE_URL="postgres://app:db-pass-from-env@db:5432/patra",
        REDIS_URL="redis://:cache-pass-from-env@cache:6379/0",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "k" * 40 + "-from-env",
        "db-pass-from-env",
        "redis://:cache-pass-from-env@cache:6379/0",
    ]
    source = (ROOT / "patra" / "settings.py").read_text()
    assert 'SECRET_KEY = env.str("SECRET_KEY"' in source
    # No setting named like a secret is assigned a literal (the development placeholder aside).
    literal = re.compile(r"^\s*(\w*(PASSWORD|SECRET|ACCESS_KEY|TOKEN)\w*)\s*=\s*[\"']", re.MULTILINE)
    assert [m.group(1) for m in literal.finditer(source)] == ["_DEFAULT_SECRET_KEY"]
