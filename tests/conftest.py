"""Shared fixtures.

Tests marked ``postgres`` or ``redis`` need the real services (``DATABASE_URL``/``REDIS_URL``),
and tests marked ``browser`` need Debian's Chromium. Without them they skip, except when
``PATRA_REQUIRE_REAL_SERVICES=1`` (set by .ci/run): then a skip of that kind is an error, so CI
can never go green by skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from accounts.models import DEFAULT_TENANT_SLUG, Tenant
from accounts.services import service_key_create, tenant_create, user_token_issue
from recommender.models import Profile
from recommender.services.profiles import profile_create

REQUIRE_REAL = os.environ.get("PATRA_REQUIRE_REAL_SERVICES") == "1"


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Checked per test that actually runs (after -m deselection), not at collection time.
    from tests.browser import chromium_available

    have = {"postgres": settings.USING_POSTGRES, "redis": bool(settings.REDIS_URL), "browser": chromium_available()}
    for marker, available in have.items():
        if item.get_closest_marker(marker) and not available:
            if REQUIRE_REAL:
                pytest.fail(f"needs {marker}, which is not available, and PATRA_REQUIRE_REAL_SERVICES=1 forbids a skip")
            pytest.skip(f"needs {marker}: see README, 'Two commands'")


@pytest.fixture(autouse=True, scope="session")
def _fresh_cache() -> None:
    """Start every test session with an empty cache: Redis outlives test databases, and a row id
    cached by an earlier run would otherwise answer for a different row now."""
    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        for key in client.scan_iter(f"{settings.CACHE_KEY_PREFIX}:*", count=1000):
            client.delete(key)


@pytest.fixture(autouse=True)
def _inline_refreshes(settings: Any) -> None:
    """Serving-state refreshes run inline in tests: a test's rows live in its transaction, which
    the refresher thread's own connection cannot see. tests/test_refresher.py turns it back on."""
    settings.SERVING_REFRESH_IN_BACKGROUND = False


@pytest.fixture(autouse=True)
def _clear_locmem_cache() -> None:
    """Tests share one process-wide local-memory cache in embedded mode; clear it between tests."""
    if not settings.REDIS_URL:
        from django.core.cache import cache

        cache.clear()


@pytest.fixture
def tenant(db: None) -> Tenant:
    # get_or_create: transactional tests flush the table the data migration filled.
    return Tenant.objects.get_or_create(slug=DEFAULT_TENANT_SLUG, defaults={"name": "Default tenant"})[0]


@pytest.fixture
def other_tenant(db: None) -> Tenant:
    return tenant_create(slug="other", name="Other tenant")


def profile_data(**overrides: Any) -> dict[str, Any]:
    """A valid profile payload (API field names); San Francisco, 30, a woman seeking men."""
    data: dict[str, Any] = {
        "external_id": str(uuid.uuid4()),
        "age": 30,
        "gender": "woman",
        "seeking": ["man"],
        "age_min": 25,
        "age_max": 40,
        "max_distance_km": 30.0,
        "lat": 37.7749,
        "lon": -122.4194,
        "bio": "I love hiking and coffee.",
        "prompts": [{"question": "My ideal Sunday", "answer": "Farmers market, then a long walk."}],
        "interests": ["hiking", "coffee"],
        "attributes": {"diet": "vegetarian", "height": 168, "smokes": "no"},
    }
    data.update(overrides)
    return data


@pytest.fixture
def make_profile(tenant: Tenant) -> Callable[..., Profile]:
    def make(tenant_: Tenant | None = None, **overrides: Any) -> Profile:
        data = profile_data(**overrides)
        data["external_id"] = uuid.UUID(str(data["external_id"]))
        return profile_create(tenant=tenant_ or tenant, data=data)

    return make


def bearer_client(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


@pytest.fixture
def service_key(tenant: Tenant) -> str:
    return service_key_create(tenant=tenant, name="backend").raw


@pytest.fixture
def service_client(service_key: str) -> APIClient:
    return bearer_client(service_key)


@pytest.fixture
def user_client_for() -> Callable[[Profile], APIClient]:
    def make(profile: Profile) -> APIClient:
        return bearer_client(user_token_issue(profile=profile).raw)

    return make


@pytest.fixture
def isolated_ml_state(settings: Any, tmp_path: Any) -> Iterator[None]:
    """Artifacts in the test's own folder, deltas applied on every call, and no process-local
    feed store or serving index carried over: those cache a database each test rolls back."""
    from recommender.feed.pipeline import feed_reset_for_tests
    from recommender.serving.index import index_reset_for_tests

    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.ARTIFACT_CACHE_DIR = tmp_path / "artifact-cache"  # index builds are registry artifacts
    settings.FEED_STORE_REFRESH_SECONDS = 0
    settings.INDEX_REFRESH_SECONDS = 0
    settings.REGISTRY_REFRESH_SECONDS = 0
    feed_reset_for_tests()
    index_reset_for_tests()
    yield
    feed_reset_for_tests()
    index_reset_for_tests()
