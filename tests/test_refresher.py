"""Serving-state refreshes run on the process's refresher thread, never on the request.

The rest of the suite runs refreshes inline (tests/conftest.py); here they run as in production.
Tests that touch the database commit their rows (``transaction=True``): the refresher thread has
its own connection and sees only committed data, as a serving process does.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from pytest_django import Settings

from accounts.models import Tenant
from accounts.services import user_token_issue
from core import refresher
from recommender import indexing
from recommender.feed import store as store_module
from recommender.feed.store import candidate_store, stores_reset
from recommender.indexing import index_build
from recommender.models import Profile
from recommender.services.embeddings import embeddings_upsert
from recommender.services.profiles import profile_create
from recommender.serving import encoder
from recommender.serving import index as index_service
from recommender.serving.index import index_reset_for_tests, serving_index
from registry.serving import ActiveModel
from tests.conftest import bearer_client, profile_data

DIM = 384
WAIT = 10.0  # seconds a test waits for the refresher thread before failing instead of hanging


@pytest.fixture
def background(settings: Settings) -> Iterator[None]:
    settings.SERVING_REFRESH_IN_BACKGROUND = True
    yield
    assert refresher.wait_idle(WAIT), "a refresh was still running when the test ended"
    # Its connection would outlive the test's database (PostgreSQL refuses to drop a database
    # in use) and trip pytest-django's guard in the next test that has no database.
    assert refresher.close_connections(WAIT)


def on_refresher_thread() -> bool:
    return threading.current_thread().name.startswith(refresher.THREAD_NAME)


# --- the mechanism ----------------------------------------------------------------------------------


def test_work_runs_on_the_refresher_thread_once_per_key_and_the_caller_does_not_wait(background: None) -> None:
    release = threading.Event()
    ran: list[tuple[str, bool]] = []

    def slow(name: str) -> Callable[[], None]:
        def work() -> None:
            assert release.wait(WAIT)
            ran.append((name, on_refresher_thread()))

        return work

    first = refresher.refresh_later("a", slow("a1"))
    # Still blocked on the event, so it cannot have run on this thread.
    assert first is not None and not first.done()
    assert refresher.refresh_later("a", slow("a2")) is None  # queued or running already: dropped
    assert refresher.refresh_later("b", slow("b")) is not None
    assert refresher.pending_keys() == {"a", "b"}
    release.set()
    assert refresher.wait_idle(WAIT)
    assert ran == [("a1", True), ("b", True)]
    assert refresher.pending_keys() == set()
    assert refresher.refresh_later("a", slow("a3")) is not None  # the key is free again
    assert refresher.wait_idle(WAIT) and ran[-1] == ("a3", True)


def test_a_failing_refresh_is_logged_and_the_next_one_still_runs(
    background: None, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise RuntimeError("database went away")

    ran: list[bool] = []
    with caplog.at_level(logging.ERROR, logger="core.refresher"):
        refresher.refresh_later("k", broken)
        assert refresher.wait_idle(WAIT)
    assert "background refresh 'k' failed" in caplog.text and "database went away" in caplog.text
    refresher.refresh_later("k", lambda: ran.append(on_refresher_thread()))
    assert refresher.wait_idle(WAIT) and ran == [True]


def test_turned_off_the_work_runs_inline(settings: Settings) -> None:
    settings.SERVING_REFRESH_IN_BACKGROUND = False
    ran: list[bool] = []
    assert refresher.refresh_later("k", lambda: ran.append(on_refresher_thread())) is None
    assert ran == [False]


def test_first_loads_are_waited_for_in_full_only_inline(background: None, settings: Settings) -> None:
    settings.SERVING_FIRST_LOAD_WAIT_SECONDS = 10.0
    assert refresher.first_load_wait(30.0) == 10.0  # a request: bounded, under the worker timeout
    assert refresher.first_load_wait(5.0) == 5.0
    with refresher.inline():
        assert refresher.first_load_wait(30.0) == 30.0  # a command: as long as the load takes


def test_inside_inline_this_thread_does_the_work_itself(background: None) -> None:
    ran: list[bool] = []
    with refresher.inline():
        assert not refresher.in_background()
        assert refresher.refresh_later("k", lambda: ran.append(on_refresher_thread())) is None
    assert ran == [False]
    assert refresher.in_background()  # only for the block


# --- the candidate store -----------------------------------------------------------------------------


def make(tenant: Tenant, **overrides: Any) -> Profile:
    data = profile_data(**overrides)
    data["external_id"] = uuid.UUID(str(data["external_id"]))
    return profile_create(tenant=tenant, data=data)


def fake_encode(texts: Sequence[str]) -> np.ndarray:
    rows = [
        np.random.default_rng(int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")).standard_normal(DIM)
        for t in texts
    ]
    vectors = np.vstack(rows).astype(np.float32) if rows else np.empty((0, DIM), np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


@pytest.fixture
def fake_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Profile hooks and index builds embed with :func:`fake_encode` instead of MiniLM."""
    monkeypatch.setattr(encoder, "encode_texts", fake_encode)
    monkeypatch.setattr(indexing, "embedding_dim", lambda: DIM)


@pytest.fixture
def fresh_stores(fake_encoder: None) -> Iterator[None]:
    stores_reset()
    yield
    refresher.wait_idle(WAIT)
    stores_reset()


@pytest.mark.django_db(transaction=True)
def test_store_refresh_runs_off_the_request_and_a_new_profile_arrives(
    background: None,
    fresh_stores: None,
    tenant: Tenant,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.FEED_STORE_REFRESH_SECONDS = 0
    first = make(tenant)
    store = candidate_store(tenant.pk)  # the first build is inline: the request needs it
    assert store.snapshot().row_of_pk(first.pk) >= 0
    assert refresher.wait_idle(WAIT)

    release = threading.Event()
    threads: list[bool] = []
    original = store_module.CandidateStore._refresh_profiles

    def held_refresh(self: store_module.CandidateStore) -> None:
        threads.append(on_refresher_thread())
        assert release.wait(WAIT)
        original(self)

    monkeypatch.setattr(store_module.CandidateStore, "_refresh_profiles", held_refresh)
    newcomer = make(tenant)
    # The refresh is due and blocked on the event: were it inline, this call could not return.
    assert candidate_store(tenant.pk) is store
    assert store.snapshot().row_of_pk(newcomer.pk) == -1  # not yet: the request got the old state
    release.set()
    assert refresher.wait_idle(WAIT)
    assert store.snapshot().row_of_pk(newcomer.pk) >= 0
    assert threads and all(threads)


@pytest.mark.django_db(transaction=True)
def test_store_pools_are_recomputed_by_the_refresher(
    background: None, fresh_stores: None, tenant: Tenant, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.FEED_STORE_REFRESH_SECONDS = 0
    make(tenant)
    store = candidate_store(tenant.pk)
    store.pools()  # the first pools are computed inline
    assert refresher.wait_idle(WAIT)
    monkeypatch.setattr(store_module, "POOL_SECONDS", 0.0)
    threads: list[bool] = []
    original = store_module.CandidateStore._compute_pools

    def spy(self: store_module.CandidateStore) -> tuple[np.ndarray, np.ndarray]:
        threads.append(on_refresher_thread())
        return original(self)

    monkeypatch.setattr(store_module.CandidateStore, "_compute_pools", spy)
    newcomer = make(tenant)
    for _ in range(3):
        candidate_store(tenant.pk).pools()
        assert refresher.wait_idle(WAIT)
    _popular, fresh = store.pools()
    assert threads and all(threads)
    assert store.snapshot().row_of_pk(newcomer.pk) in fresh.tolist()


@pytest.mark.django_db(transaction=True)
def test_a_slow_first_build_answers_503_until_the_store_is_ready(
    background: None, fresh_stores: None, tenant: Tenant, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At a million profiles the first build outlasts a web worker's timeout: the request must not
    wait for it (the worker would be killed and the build start over), it answers 503."""
    settings.ML_ENABLED = False
    settings.SERVING_FIRST_LOAD_WAIT_SECONDS = 0.05
    user = make(tenant)
    for _ in range(3):
        make(tenant, gender="man", seeking=["woman"])
    release = threading.Event()
    threads: list[str] = []
    original = store_module.CandidateStore.build

    def slow_build(self: store_module.CandidateStore) -> None:
        threads.append(threading.current_thread().name)
        assert release.wait(WAIT)
        original(self)

    monkeypatch.setattr(store_module.CandidateStore, "build", slow_build)
    client = bearer_client(user_token_issue(profile=user).raw)
    first = client.get("/api/v1/feed?count=5")
    assert first.status_code == 503, first.content
    assert first.json()["code"] == "warming_up" and first["Retry-After"] == "1"
    assert client.get("/api/v1/feed?count=5").status_code == 503  # the same build, not a second one
    health = client.get("/api/v1/health").json()
    assert health["status"] == "degraded"
    assert health["reason"] == f"warming up: building the candidate store of tenant {tenant.pk}"
    release.set()
    deadline = time.monotonic() + WAIT
    while (answer := client.get("/api/v1/feed?count=5")).status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert answer.status_code == 200, answer.content
    assert len(answer.json()["recommendations"]) == 3
    assert threads == [f"store-build-{tenant.pk}"]


# --- the ANN index and the registry ------------------------------------------------------------------


@pytest.fixture
def index_env(settings: Settings, tmp_path: Path, fake_encoder: None) -> Iterator[None]:
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.ARTIFACT_CACHE_DIR = tmp_path / "artifact-cache"
    index_reset_for_tests()
    yield
    refresher.wait_idle(WAIT)
    index_reset_for_tests()


@pytest.mark.django_db(transaction=True)
def test_index_deltas_and_registry_polls_run_off_the_request(
    background: None, index_env: None, tenant: Tenant, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    profiles = [make(tenant, bio=f"bio {i} {uuid.uuid4().hex}") for i in range(20)]
    embeddings_upsert(profile_ids=[p.pk for p in profiles])
    index_build(tenant=tenant)
    settings.INDEX_REFRESH_SECONDS = 0
    settings.REGISTRY_REFRESH_SECONDS = 0
    served = serving_index(tenant.pk)  # the first load is inline
    assert served is not None and served.size == 20
    assert refresher.wait_idle(WAIT)

    threads: list[bool] = []
    original = index_service.ServingIndex.apply_deltas

    def spy(self: index_service.ServingIndex) -> None:
        threads.append(on_refresher_thread())
        original(self)

    monkeypatch.setattr(index_service.ServingIndex, "apply_deltas", spy)
    newcomer = make(tenant, bio="Just moved here, looking for a climbing partner.")
    embeddings_upsert(profile_ids=[newcomer.pk])
    # Every call finds deltas and a registry poll due; none of their queries run on this thread.
    with CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            assert serving_index(tenant.pk) is served
    assert len(queries) == 0, [q["sql"] for q in queries]
    assert refresher.wait_idle(WAIT)
    assert threads and all(threads)
    assert newcomer.pk in served


@pytest.mark.django_db(transaction=True)
def test_active_model_polls_after_the_first_on_the_refresher(
    background: None, tenant: Tenant, settings: Settings
) -> None:
    settings.REGISTRY_REFRESH_SECONDS = 0
    holder: ActiveModel[object] = ActiveModel(tenant.pk, "ranker", loader=lambda version, path: object())
    with CaptureQueriesContext(connection) as first:
        assert holder.get() is None  # no version: the first check asks at once, on this thread
    assert len(first) >= 1
    assert refresher.wait_idle(WAIT)
    with CaptureQueriesContext(connection) as later:
        for _ in range(5):
            holder.get()
    assert len(later) == 0
    assert refresher.wait_idle(WAIT)
