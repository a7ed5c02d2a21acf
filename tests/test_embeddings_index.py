"""Bio embeddings (storage, cache, profile hook) and the per-tenant serving index.

Most tests replace the encoder with a deterministic fake (a random unit vector seeded by the
text's hash) so that they exercise the real services, hook, tasks and index without loading
MiniLM; the tests marked ``slow`` use the real model.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.locmem import LocMemCache
from django.core.management import CommandError, call_command
from django.test import override_settings
from pytest_django import DjangoAssertNumQueries, DjangoCaptureOnCommitCallbacks, Settings

from accounts.models import Tenant
from patra.celery import app as celery_app
from recommender import indexing, tasks
from recommender.indexing import index_build
from recommender.ml.ann import exact_search, recall_at_k
from recommender.models import Profile, ProfileEmbedding, ProfileStatus
from recommender.services import embeddings as embeddings_service
from recommender.services.embeddings import embeddings_upsert, profile_vectors
from recommender.services.profiles import profile_erase, profile_set_status, profile_update, profiles_bulk_create
from recommender.serving import encoder
from recommender.serving import index as index_service
from recommender.serving.encoder import EmbeddingUnavailable, ml_available
from recommender.serving.index import index_reset_for_tests, index_status, serving_index
from registry.models import ModelVersion
from registry.services import model_version_activate
from tests.conftest import profile_data

DIM = 384


def fake_encode(texts: Sequence[str]) -> np.ndarray:
    """A unit vector per text, a pure function of the text (like a real model, minus meaning)."""
    rows = []
    for text in texts:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
        rows.append(v / np.linalg.norm(v))
    return np.vstack(rows) if rows else np.empty((0, DIM), np.float32)


@pytest.fixture(autouse=True)
def isolated(settings: Settings, tmp_path: Path) -> Iterator[None]:
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.ARTIFACT_CACHE_DIR = tmp_path / "artifact-cache"  # builds are registry artifacts, unpacked here
    settings.INDEX_REFRESH_SECONDS = 0
    # Hooks enqueue tasks; run them inline in both modes (real mode would send them to Redis).
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    if isinstance(caches["default"], LocMemCache):
        cache.clear()  # SQLite reuses ids after a rollback: stale keys would read as hits
    index_reset_for_tests()
    yield
    index_reset_for_tests()
    celery_app.conf.task_always_eager = eager


@pytest.fixture
def fake_encoder(monkeypatch: pytest.MonkeyPatch) -> Callable[[Sequence[str]], np.ndarray]:
    calls: list[int] = []

    def encode(texts: Sequence[str]) -> np.ndarray:
        calls.append(len(texts))
        return fake_encode(texts)

    monkeypatch.setattr(encoder, "encode_texts", encode)
    monkeypatch.setattr(indexing, "embedding_dim", lambda: DIM)
    encode.calls = calls  # type: ignore[attr-defined]
    return encode


def seed_profiles(tenant: Tenant, n: int, prefix: str = "bio") -> list[Profile]:
    """n active profiles with distinct bios, created in bulk (no hooks), then embedded."""
    rows = []
    for i in range(n):
        data = profile_data(bio=f"{prefix} {i}: {uuid.uuid4().hex}", prompts=[])
        data["external_id"] = uuid.UUID(data["external_id"])
        rows.append(data)
    profiles = profiles_bulk_create(tenant=tenant, rows=rows)
    embeddings_upsert(profile_ids=[p.pk for p in profiles])
    return profiles


def stored_vector(profile_id: int) -> np.ndarray:
    return np.frombuffer(bytes(ProfileEmbedding.objects.get(profile_id=profile_id).vector), dtype="<f4")


def cache_key(tenant: Tenant, profile_id: int) -> str:
    return f"embedding:profile:{tenant.pk}:{profile_id}"


def activate(version_id: uuid.UUID | None) -> None:
    """A later build serves only once activated (registry rule); the first activates itself."""
    model_version_activate(version=ModelVersion.objects.get(pk=version_id), actor="system:test", reason="test")


def damage_stored_artifact(version_id: uuid.UUID | None) -> None:
    version = ModelVersion.objects.get(pk=version_id)
    (Path(settings.ARTIFACT_ROOT) / version.artifact_uri.removeprefix("local://")).write_bytes(b"junk")


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


# --- Embeddings: write path ---------------------------------------------------------------------


def test_hook_embeds_new_profile_then_skips_unchanged_text(
    fake_encoder: Any,
    make_profile: Callable[..., Profile],
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        profile = make_profile(bio="I restore old motorbikes.")
    row = ProfileEmbedding.objects.get(profile=profile)
    assert (row.model_name, row.dim, row.tenant_id) == (settings.EMBEDDING_MODEL, DIM, profile.tenant_id)
    assert np.allclose(stored_vector(profile.pk), fake_encode([embeddings_service.profile_embedding_text(profile)])[0])
    calls_before = len(fake_encoder.calls)

    with django_capture_on_commit_callbacks(execute=True):
        profile_update(profile=profile, data={"age": 41})  # the hook runs, the text is unchanged
    assert len(fake_encoder.calls) == calls_before
    assert ProfileEmbedding.objects.get(profile=profile).updated_at == row.updated_at
    assert embeddings_upsert(profile_ids=[profile.pk]) == 0


def test_changed_bio_is_recomputed_and_its_cache_key_invalidated(
    fake_encoder: Any,
    make_profile: Callable[..., Profile],
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        profile = make_profile(bio="Chess on Sundays.")
    old = stored_vector(profile.pk).copy()
    profile_vectors(tenant_id=profile.tenant_id, profile_ids=[profile.pk])  # fills the cache
    assert cache.get(cache_key(profile.tenant, profile.pk)) == old.tobytes()

    with django_capture_on_commit_callbacks(execute=True):
        profile_update(profile=profile, data={"bio": "Climbing every weekend."})
    new = stored_vector(profile.pk)
    assert not np.allclose(new, old)
    assert cache.get(cache_key(profile.tenant, profile.pk)) is None
    lookup = profile_vectors(tenant_id=profile.tenant_id, profile_ids=[profile.pk])
    assert np.array_equal(lookup.vectors[profile.pk], new)


def test_upsert_policy_for_empty_text_model_change_and_statuses(
    fake_encoder: Any, tenant: Tenant, django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks
) -> None:
    hidden, erased, emptied, stale = seed_profiles(tenant, 4)
    ProfileEmbedding.objects.filter(profile=stale).update(model_name="some-old-model")
    with django_capture_on_commit_callbacks(execute=True):
        profile_set_status(profile=hidden, status=ProfileStatus.HIDDEN)
        profile_erase(profile=erased)
        profile_update(profile=emptied, data={"bio": "", "prompts": []})
    # hidden keeps its row (restorable), erased and emptied lose theirs
    assert set(ProfileEmbedding.objects.values_list("profile_id", flat=True)) == {hidden.pk, stale.pk}
    assert embeddings_upsert(profile_ids=[stale.pk, hidden.pk]) == 1  # the model changed
    assert ProfileEmbedding.objects.get(profile=stale).model_name == settings.EMBEDDING_MODEL
    assert embeddings_upsert(profile_ids=[stale.pk], force=True) == 1


def test_hook_never_fails_the_request_when_ml_is_off_or_the_model_is_missing(
    settings: Settings,
    make_profile: Callable[..., Profile],
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    settings.ML_ENABLED = False
    with django_capture_on_commit_callbacks(execute=True):
        off = make_profile()
    assert not ml_available()
    settings.ML_ENABLED = True
    settings.EMBEDDING_MODEL = "/nonexistent/model-dir"
    with django_capture_on_commit_callbacks(execute=True):
        missing = make_profile()
    assert not ml_available()
    with pytest.raises(EmbeddingUnavailable, match="could not be loaded"):
        encoder.encode_texts(["hello"])
    assert not ProfileEmbedding.objects.filter(profile__in=[off, missing]).exists()


# --- Embeddings: read path and cache ------------------------------------------------------------


def test_profile_vectors_counts_cache_hits_and_misses(
    fake_encoder: Any, tenant: Tenant, other_tenant: Tenant, make_profile: Callable[..., Profile]
) -> None:
    profiles = seed_profiles(tenant, 3)
    ids = [p.pk for p in profiles]
    no_embedding = make_profile()  # created inside the test transaction: its hook never ran
    [foreign] = seed_profiles(other_tenant, 1)
    for pid in [*ids, no_embedding.pk, foreign.pk]:
        cache.delete(cache_key(tenant, pid))

    first = profile_vectors(tenant_id=tenant.pk, profile_ids=[*ids, no_embedding.pk, foreign.pk])
    assert (first.cache_hits, first.misses) == (0, 5)
    assert set(first.vectors) == set(ids)  # no embedding / other tenant: absent
    for pid in ids:
        raw = cache.get(f"embedding:profile:{tenant.pk}:{pid}")
        assert isinstance(raw, bytes) and raw == stored_vector(pid).tobytes()
        assert first.vectors[pid].dtype == np.float32 and first.vectors[pid].shape == (DIM,)

    second = profile_vectors(tenant_id=tenant.pk, profile_ids=[*ids, no_embedding.pk])
    assert (second.cache_hits, second.misses) == (3, 1)
    for pid in ids:
        assert np.array_equal(second.vectors[pid], first.vectors[pid])


def test_dead_redis_falls_back_to_the_database(
    fake_encoder: Any, tenant: Tenant, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    profiles = seed_profiles(tenant, 2)
    ids = [p.pk for p in profiles]
    monkeypatch.setattr(embeddings_service, "_cache_outage_logged", False)
    dead = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 0.05, "socket_timeout": 0.05},
        }
    }
    with override_settings(CACHES=dead), caplog.at_level("WARNING", logger="recommender.services.embeddings"):
        first = profile_vectors(tenant_id=tenant.pk, profile_ids=ids)
        second = profile_vectors(tenant_id=tenant.pk, profile_ids=ids)
        embeddings_service.embedding_cache_invalidate(tenant_id=tenant.pk, profile_id=ids[0])
    for lookup in (first, second):
        assert lookup.cache_hits == 0 and set(lookup.vectors) == set(ids)
        assert np.array_equal(lookup.vectors[ids[0]], stored_vector(ids[0]))
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "database" in warnings[0].getMessage()


def test_cache_get_many_raising_is_survived(fake_encoder: Any, tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    [profile] = seed_profiles(tenant, 1)

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("redis is down")

    monkeypatch.setattr(cache, "get_many", boom)
    monkeypatch.setattr(cache, "set_many", boom)
    lookup = profile_vectors(tenant_id=tenant.pk, profile_ids=[profile.pk])
    assert (lookup.cache_hits, lookup.misses) == (0, 1)
    assert np.array_equal(lookup.vectors[profile.pk], stored_vector(profile.pk))


@pytest.mark.redis
def test_vector_is_cached_in_redis_with_a_ttl(fake_encoder: Any, tenant: Tenant, settings: Settings) -> None:
    import redis

    settings.EMBEDDING_CACHE_TTL = 321
    [profile] = seed_profiles(tenant, 1)
    key = cache_key(tenant, profile.pk)
    cache.delete(key)
    profile_vectors(tenant_id=tenant.pk, profile_ids=[profile.pk])
    client = redis.Redis.from_url(settings.REDIS_URL)
    redis_key = cache.make_key(key)
    assert client.exists(redis_key)
    assert 0 < client.ttl(redis_key) <= 321
    again = profile_vectors(tenant_id=tenant.pk, profile_ids=[profile.pk])
    assert again.cache_hits == 1 and np.array_equal(again.vectors[profile.pk], stored_vector(profile.pk))
    embeddings_service.embedding_cache_invalidate(tenant_id=tenant.pk, profile_id=profile.pk)
    assert not client.exists(redis_key)


# --- Index build and serving --------------------------------------------------------------------


def test_build_then_serve_nearest_neighbours_by_cosine(fake_encoder: Any, tenant: Tenant) -> None:
    profiles = seed_profiles(tenant, 2000)  # random vectors: the hardest case for HNSW
    result = index_build(tenant=tenant)
    print(f"\nrecall@10 of the build on 2000 random 384-d vectors: {result.recall_at_10:.3f}")
    assert result.size == 2000 and result.dim == DIM and result.recall_at_10 >= 0.9
    assert result.path.parent == Path(settings.ARTIFACT_ROOT) / "indexes" / tenant.slug
    pointer = json.loads((result.path.parent / "current.json").read_text())
    assert pointer["path"] == result.path.name
    assert pointer["watermark"] == ProfileEmbedding.objects.latest("updated_at").updated_at.isoformat()

    served = serving_index(tenant.pk)
    assert served is not None and served.size == 2000 and served.version == result.version_label == "index-v1"
    rows = ProfileEmbedding.objects.filter(profile__in=profiles).values_list("profile_id", "vector")
    ids = np.array([pid for pid, _ in rows], dtype=np.int64)
    vectors = np.vstack([np.frombuffer(bytes(raw), dtype="<f4") for _, raw in rows])
    rng = np.random.default_rng(1)
    queries = rng.standard_normal((100, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    got, sims = served.query(queries, 10)
    recall = recall_at_k(got, exact_search(vectors, ids, queries, 10))
    print(f"serving recall@10 on 100 fresh queries: {recall:.3f}")
    assert recall >= 0.9
    by_id = dict(zip(ids.tolist(), vectors, strict=True))
    assert np.allclose(sims[0], [float(queries[0] @ by_id[int(i)]) for i in got[0]], atol=1e-5)
    assert np.all(np.diff(sims, axis=1) <= 1e-6)  # best first

    self_ids, _ = served.query(vectors[:1], 5, exclude={int(ids[0])})
    assert int(ids[0]) not in self_ids[0].tolist() and self_ids.shape == (1, 5)


def test_new_profile_appears_after_the_refresh_interval(
    fake_encoder: Any,
    tenant: Tenant,
    make_profile: Callable[..., Profile],
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    seed_profiles(tenant, 50)
    index_build(tenant=tenant)
    assert serving_index(tenant.pk).size == 50

    with django_capture_on_commit_callbacks(execute=True):
        newcomer = make_profile(bio="Just moved here, looking for a climbing partner.")
    served = serving_index(tenant.pk)  # INDEX_REFRESH_SECONDS = 0
    assert served.size == 51
    ids, sims = served.query(stored_vector(newcomer.pk), 3)
    assert ids[0, 0] == newcomer.pk and sims[0, 0] == pytest.approx(1.0, abs=1e-4)


def test_refresh_interval_throttles_delta_queries(
    fake_encoder: Any,
    tenant: Tenant,
    settings: Settings,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    seed_profiles(tenant, 5)
    index_build(tenant=tenant)
    settings.INDEX_REFRESH_SECONDS = 3600
    assert serving_index(tenant.pk) is not None
    with django_assert_num_queries(0):
        for _ in range(10):
            serving_index(tenant.pk)


def test_hidden_banned_and_erased_profiles_leave_after_refresh_and_restore_returns(
    fake_encoder: Any, tenant: Tenant, django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks
) -> None:
    profiles = seed_profiles(tenant, 30)
    index_build(tenant=tenant)
    hidden, banned, erased = profiles[:3]
    vectors = {p.pk: stored_vector(p.pk).copy() for p in (hidden, banned, erased)}
    served = serving_index(tenant.pk)
    assert all(pid in served for pid in vectors)

    with django_capture_on_commit_callbacks(execute=True):
        profile_set_status(profile=hidden, status=ProfileStatus.HIDDEN)
        profile_set_status(profile=banned, status=ProfileStatus.BANNED)
        profile_erase(profile=erased)
    served = serving_index(tenant.pk)
    assert served.size == 27
    for pid, vec in vectors.items():
        ids, _ = served.query(vec, 30)
        assert pid not in ids[0].tolist()

    with django_capture_on_commit_callbacks(execute=True):
        profile_set_status(profile=hidden, status=ProfileStatus.ACTIVE)
    served = serving_index(tenant.pk)
    assert served.size == 28 and served.query(vectors[hidden.pk], 1)[0][0, 0] == hidden.pk


def test_late_commits_inside_the_overlap_are_applied_and_the_build_is_not_replayed(
    fake_encoder: Any, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    profiles = seed_profiles(tenant, 20)
    result = index_build(tenant=tenant)
    added: list[list[int]] = []
    original = index_service.ServingIndex._add_stored

    def spy(self: index_service.ServingIndex, profile_ids: list[int], *, active_only: bool) -> None:
        added.append(sorted(profile_ids))
        original(self, profile_ids, active_only=active_only)

    monkeypatch.setattr(index_service.ServingIndex, "_add_stored", spy)
    served = serving_index(tenant.pk)
    assert added == []  # every row of the overlap window is already in the build

    # A transaction that took its timestamp before the build's watermark but committed after it.
    watermark = datetime.fromisoformat(json.loads((result.path.parent / "current.json").read_text())["watermark"])
    moved, hidden = profiles[0], profiles[1]
    target = fake_encode(["somewhere else entirely"])[0]
    ProfileEmbedding.objects.filter(profile=moved).update(
        vector=target.astype("<f4").tobytes(), updated_at=watermark - timedelta(seconds=5)
    )
    Profile.objects.filter(pk=hidden.pk).update(
        status=ProfileStatus.HIDDEN, updated_at=hidden.updated_at - timedelta(seconds=5)
    )
    served = serving_index(tenant.pk)
    assert added == [[moved.pk]] and hidden.pk not in served
    assert served.query(target, 1)[0][0, 0] == moved.pk


def test_newer_build_is_picked_up_without_restart(fake_encoder: Any, tenant: Tenant) -> None:
    seed_profiles(tenant, 20)
    first = index_build(tenant=tenant)
    old = serving_index(tenant.pk)
    assert old.version == first.version_label

    seed_profiles(tenant, 5, prefix="later")
    second = index_build(tenant=tenant)
    assert second.path.name > first.path.name
    activate(second.version_id)
    wait_for(lambda: serving_index(tenant.pk).version == second.version_label)
    assert serving_index(tenant.pk).size == 25
    assert old.query(np.ones(DIM, np.float32), 3)[0].shape == (1, 3)  # a held reference still works
    assert index_status(tenant.pk)["last_error"] is None


def test_corrupt_newer_build_keeps_the_old_one_serving(fake_encoder: Any, tenant: Tenant) -> None:
    seed_profiles(tenant, 20)
    first = index_build(tenant=tenant)
    assert serving_index(tenant.pk).version == first.version_label

    second = index_build(tenant=tenant)
    activate(second.version_id)
    damage_stored_artifact(second.version_id)  # after activation, which verifies the checksum
    wait_for(lambda: serving_index(tenant.pk) is not None and index_status(tenant.pk)["last_error"] is not None)
    status = index_status(tenant.pk)
    assert "checksum" in status["last_error"] and status["version"] == first.version_label
    assert status["loaded"] and status["size"] == 20 and status["age_seconds"] >= 0
    assert serving_index(tenant.pk).query(np.ones(DIM, np.float32), 5)[0].shape == (1, 5)

    third = index_build(tenant=tenant)
    activate(third.version_id)
    wait_for(lambda: serving_index(tenant.pk).version == third.version_label)
    assert index_status(tenant.pk)["last_error"] is None


def test_no_build_or_corrupt_first_build(fake_encoder: Any, tenant: Tenant) -> None:
    assert serving_index(tenant.pk) is None
    assert index_status(tenant.pk) | {"age_seconds": None} == {
        "loaded": False,
        "version": None,
        "size": 0,
        "built_at": None,
        "age_seconds": None,
        "last_error": None,
    }
    seed_profiles(tenant, 3)
    result = index_build(tenant=tenant)
    damage_stored_artifact(result.version_id)
    assert serving_index(tenant.pk) is None
    assert "checksum mismatch" in index_status(tenant.pk)["last_error"]


def test_old_builds_are_pruned_and_an_empty_tenant_builds(fake_encoder: Any, other_tenant: Tenant) -> None:
    results = [index_build(tenant=other_tenant) for _ in range(5)]
    assert results[0].size == 0 and results[0].recall_at_10 is None
    directory = results[0].path.parent
    kept = sorted(p.name for p in directory.iterdir() if p.is_dir())
    assert kept == [r.path.name for r in results[-3:]]
    assert json.loads((directory / "current.json").read_text())["version"] == results[-1].path.name
    assert serving_index(other_tenant.pk).size == 0


def test_build_reports_embedding_progress_and_needs_ml(fake_encoder: Any, tenant: Tenant, settings: Settings) -> None:
    rows = [profile_data(bio=f"person {i}") for i in range(300)]
    for r in rows:
        r["external_id"] = uuid.UUID(r["external_id"])
    profiles_bulk_create(tenant=tenant, rows=rows)  # no hooks: nothing embedded yet
    seen: list[tuple[int, int]] = []
    result = index_build(tenant=tenant, on_progress=lambda done, total: seen.append((done, total)))
    assert result.size == 300 and seen == [(256, 300), (300, 300)]
    settings.ML_ENABLED = False
    with pytest.raises(EmbeddingUnavailable):
        index_build(tenant=tenant)


# --- Commands and tasks -------------------------------------------------------------------------


def test_commands_run_and_fail_clearly(fake_encoder: Any, tenant: Tenant, settings: Settings) -> None:
    seed_profiles(tenant, 12)
    out = StringIO()
    call_command("build_index", "--tenant", tenant.slug, stdout=out, stderr=StringIO())
    text = out.getvalue()
    assert "12 profiles" in text and "recall@10 1.000" in text and str(settings.ARTIFACT_ROOT) in text
    out = StringIO()
    call_command("build_index", "--all-tenants", stdout=out, stderr=StringIO())
    assert f"{tenant.slug}: 12 profiles" in out.getvalue()
    with pytest.raises(CommandError, match="Unknown tenant 'nope'"):
        call_command("build_index", "--tenant", "nope")
    with pytest.raises(CommandError, match="Unknown tenant 'nope'"):
        call_command("embed_profiles", "--tenant", "nope")
    settings.ML_ENABLED = False
    with pytest.raises(CommandError, match="ML is disabled"):
        call_command("build_index", stdout=StringIO(), stderr=StringIO())
    with pytest.raises(CommandError, match="unavailable"):
        call_command("embed_profiles", stdout=StringIO(), stderr=StringIO())


def test_task_names_and_queues() -> None:
    expected = {
        "recommender.tasks.embed_profile": "embeddings",
        "recommender.tasks.build_index": "indexing",
        "recommender.tasks.rebuild_indexes": "indexing",
        "recommender.tasks.rebuild_elo_all_tenants": "default",
        "recommender.tasks.purge_expired_user_tokens": "default",
    }
    for name, queue in expected.items():
        assert name in celery_app.tasks
        route = celery_app.amqp.router.route({}, name)
        assert route["queue"].name == queue, name
    beat_tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert set(expected) - {"recommender.tasks.embed_profile", "recommender.tasks.build_index"} <= beat_tasks
    assert tasks.embed_profile.acks_late and tasks.build_index.max_retries == 5


def test_tasks_run_eagerly(fake_encoder: Any, tenant: Tenant, other_tenant: Tenant) -> None:
    [profile] = seed_profiles(tenant, 1)
    ProfileEmbedding.objects.all().delete()
    assert tasks.embed_profile.delay(profile.pk).get() == 1
    assert tasks.embed_profile.delay(profile.pk).get() == 0  # idempotent
    assert tasks.rebuild_indexes.delay().get() == 2
    for t in (tenant, other_tenant):
        assert (Path(settings.ARTIFACT_ROOT) / "indexes" / t.slug / "current.json").is_file()
    summary = tasks.build_index.delay(tenant.pk).get()
    assert summary["size"] == 1 and summary["tenant"] == tenant.slug
    assert tasks.rebuild_elo_all_tenants.delay().get() == Tenant.objects.count()
    assert tasks.purge_expired_user_tokens.delay().get() == 0


def test_build_index_task_reports_progress_when_run_by_a_worker(
    fake_encoder: Any, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [profile_data(bio=f"person {i}") for i in range(260)]
    for r in rows:
        r["external_id"] = uuid.UUID(r["external_id"])
    profiles_bulk_create(tenant=tenant, rows=rows)
    states: list[tuple[str, dict[str, int]]] = []
    monkeypatch.setattr(tasks.build_index, "update_state", lambda state, meta: states.append((state, meta)))
    tasks.build_index.push_request(id="worker-task-1", is_eager=False)  # as a worker would
    try:
        summary = tasks.build_index.run(tenant.pk)
    finally:
        tasks.build_index.pop_request()
    assert summary["size"] == 260
    assert states == [("PROGRESS", {"done": 256, "total": 260}), ("PROGRESS", {"done": 260, "total": 260})]


# --- The real model -----------------------------------------------------------------------------


@pytest.mark.slow
def test_real_model_hook_lifecycle(
    make_profile: Callable[..., Profile], django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks
) -> None:
    if not ml_available():
        pytest.fail("the bundled MiniLM model should load offline")
    with django_capture_on_commit_callbacks(execute=True):
        hiker = make_profile(bio="I love hiking in the mountains and camping under the stars.")
        coder = make_profile(bio="Software engineer who writes compilers for fun.")
    with django_capture_on_commit_callbacks(execute=True):
        profile_update(profile=coder, data={"age": 33})
    assert ProfileEmbedding.objects.filter(profile__in=[hiker, coder], dim=384).count() == 2
    first = stored_vector(hiker.pk).copy()
    assert np.linalg.norm(first) == pytest.approx(1.0, abs=1e-4)
    [query] = encoder.encode_texts(["Outdoor trekking and nights in a tent."])
    assert float(query @ first) > float(query @ stored_vector(coder.pk))
    profile_vectors(tenant_id=hiker.tenant_id, profile_ids=[hiker.pk])
    with django_capture_on_commit_callbacks(execute=True):
        profile_update(profile=hiker, data={"bio": "Opera, ballet and museums."})
    assert cache.get(cache_key(hiker.tenant, hiker.pk)) is None
    assert float(stored_vector(hiker.pk) @ first) < 0.9


@pytest.mark.slow
def test_real_model_index_recall_on_okcupid_bios(tenant: Tenant) -> None:
    from recommender.simulation.okcupid import load_sample

    bios = [r.essay0 for r in load_sample(limit=400) if r.essay0][:200]
    rows = [profile_data(bio=bio, prompts=[]) for bio in bios]
    for r in rows:
        r["external_id"] = uuid.UUID(r["external_id"])
    profiles_bulk_create(tenant=tenant, rows=rows)
    out = StringIO()
    call_command("embed_profiles", "--tenant", tenant.slug, stdout=out, stderr=StringIO())
    assert f"{len(bios)} of {len(bios)}" in out.getvalue()
    result = index_build(tenant=tenant)
    print(f"\nrecall@10 on {result.size} MiniLM OkCupid bios: {result.recall_at_10:.3f}")
    assert result.size == len(bios) and result.recall_at_10 >= 0.9
