"""Burst and sustained throttles per credential, the stricter ML pair, 429 with Retry-After, and
fail-open when the cache is down. Rates are set per test through the REST_FRAMEWORK setting,
which the throttles read on every request."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.models import Tenant
from accounts.services import service_key_create
from core import throttling
from core.throttling import InvalidRate, parse_rate
from recommender.models import Profile
from tests.conftest import bearer_client

GENEROUS = "1000/s"
EMBED = "/api/v1/ml/embeddings/batch"


@pytest.fixture
def rates(settings: Any) -> Iterator[Callable[..., None]]:
    """Set some throttle rates (the others generous)."""

    def set_rates(**scopes: str) -> None:
        base = dict.fromkeys(
            ("user_burst", "user_sustained", "service_burst", "service_sustained", "ml_burst", "ml_sustained"),
            GENEROUS,
        )
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {**base, **scopes}}

    yield set_rates


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The throttles' clock, at the start of a 3600 s window (so no window ends mid-test)."""
    now = [3600.0 * 600_000]  # far from the real clock: never a window a real request counted in
    monkeypatch.setattr(throttling.time, "time", lambda: now[0])
    return now


def profile_path(profile: Profile) -> str:
    return f"/internal/v1/profiles/{profile.external_id}"


def test_parse_rate() -> None:
    assert parse_rate("100/10s") == (100, 10)
    assert parse_rate("3000/h") == (3000, 3600)
    assert parse_rate("60/min") == (60, 60)
    assert parse_rate("5/2d") == (5, 172800)
    assert parse_rate("off") is None and parse_rate("") is None and parse_rate(None) is None
    for bad in ("fast", "10/x", "10", "-1/s", "0/s", "1/0s"):
        with pytest.raises(InvalidRate):
            parse_rate(bad)


def test_service_key_burst_answers_429_with_retry_after(
    rates: Callable[..., None], clock: list[float], service_client: APIClient, make_profile: Callable[..., Profile]
) -> None:
    rates(service_burst="3/10s")
    profile = make_profile()
    clock[0] += 4.2  # 4.2 s into a 10 s window
    assert [service_client.get(profile_path(profile)).status_code for _ in range(3)] == [200, 200, 200]
    refused = service_client.get(profile_path(profile))
    assert refused.status_code == 429
    assert refused["Retry-After"] == "6"  # ceil(10 - 4.2)
    assert "throttled" in refused.json()["detail"].lower()
    clock[0] += 6  # the next window
    assert service_client.get(profile_path(profile)).status_code == 200


def test_counts_are_per_credential(
    rates: Callable[..., None],
    clock: list[float],
    tenant: Tenant,
    service_client: APIClient,
    make_profile: Callable[..., Profile],
    user_client_for: Callable[[Profile], APIClient],
) -> None:
    rates(service_burst="2/m", user_burst="2/m")
    profile = make_profile()
    for _ in range(2):
        assert service_client.get(profile_path(profile)).status_code == 200
    assert service_client.get(profile_path(profile)).status_code == 429
    second_key = bearer_client(service_key_create(tenant=tenant, name="second").raw)
    assert second_key.get(profile_path(profile)).status_code == 200  # its own count
    user = user_client_for(profile)  # a user token: its own count, at the user rates
    assert [user.get("/api/v1/me").status_code for _ in range(3)] == [200, 200, 429]
    other_user = user_client_for(make_profile())
    assert other_user.get("/api/v1/me").status_code == 200


def test_sustained_window(
    rates: Callable[..., None], clock: list[float], service_client: APIClient, make_profile: Callable[..., Profile]
) -> None:
    rates(service_sustained="4/h")
    profile = make_profile()
    assert [service_client.get(profile_path(profile)).status_code for _ in range(5)] == [200] * 4 + [429]
    refused = service_client.get(profile_path(profile))
    assert refused.status_code == 429 and refused["Retry-After"] == "3600"
    clock[0] += 3600
    assert service_client.get(profile_path(profile)).status_code == 200


def test_model_calling_endpoints_have_the_stricter_ml_limit(
    rates: Callable[..., None], clock: list[float], service_client: APIClient, make_profile: Callable[..., Profile]
) -> None:
    rates(ml_burst="2/10s", service_burst="100/10s")
    profile = make_profile()
    bad = {"texts": []}  # a 400 without a model call: throttles count requests, whatever the answer
    assert [service_client.post(EMBED, bad, format="json").status_code for _ in range(2)] == [400, 400]
    refused = service_client.post(EMBED, bad, format="json")
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    refused = service_client.post("/api/v1/ml/profiles/rank/batch", {"requests": []}, format="json")
    assert refused.status_code == 429  # one ML count for all model-calling endpoints of the key
    assert service_client.get(profile_path(profile)).status_code == 200  # the rest of the API is not


def test_off_disables_a_window(
    rates: Callable[..., None], clock: list[float], service_client: APIClient, make_profile: Callable[..., Profile]
) -> None:
    rates(service_burst="off", service_sustained="off")
    profile = make_profile()
    assert {service_client.get(profile_path(profile)).status_code for _ in range(20)} == {200}


def test_requests_without_a_credential_are_not_throttled(
    rates: Callable[..., None], clock: list[float], db: None
) -> None:
    rates(service_burst="1/h", user_burst="1/h")
    assert {APIClient().get("/api/v1/health").status_code for _ in range(5)} == {200}


def test_the_cache_being_down_lets_requests_through(
    rates: Callable[..., None],
    clock: list[float],
    service_client: APIClient,
    make_profile: Callable[..., Profile],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rates(service_burst="1/h")
    profile = make_profile()

    calls: list[str] = []

    def down(key: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(key)
        raise ConnectionError("cache down")

    # where both cache kinds fail: the Redis pipeline (real mode) or cache.add (embedded)
    monkeypatch.setattr(throttling, "_count", down)
    monkeypatch.setattr(throttling, "_skip_until", 0.0)
    assert {service_client.get(profile_path(profile)).status_code for _ in range(3)} == {200}
    # one failed attempt, then the counters rest for OUTAGE_SKIP_SECONDS: no timeout per request
    assert len(calls) == 1
    monkeypatch.setattr(throttling, "_skip_until", 0.0)  # the pause is over
    service_client.get(profile_path(profile))
    assert len(calls) == 2


def test_default_rates_allow_normal_use(service_client: APIClient, make_profile: Callable[..., Profile]) -> None:
    """The production defaults (patra/settings.py) do not get in the way of a busy client."""
    profile = make_profile()
    assert {service_client.get(profile_path(profile)).status_code for _ in range(40)} == {200}
