"""POST /internal/v1/profiles/batch: bulk onboarding with deferred, batched derived work."""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import get_resolver

import recommender.serving.encoder as encoder
from accounts.services import service_key_create
from recommender.models import Profile, ProfileEmbedding, ProfileStatus
from recommender.services import derived
from safety.models import ProfileSafetyScore
from tests.conftest import bearer_client, profile_data

BATCH = "/internal/v1/profiles/batch"
DIM = 16


def fake_encode(texts: Sequence[str]) -> np.ndarray:
    """A unit vector per text (a pure function of it), so no model is loaded."""
    rng = [np.random.default_rng(list(hashlib.sha256(t.encode()).digest()[:8])).standard_normal(DIM) for t in texts]
    out = np.vstack(rng).astype(np.float32) if rng else np.empty((0, DIM), np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True).clip(1e-9)


@pytest.fixture
def tasks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, list[int]]]]:
    """Every derived-work task enqueued, as (task name, profile ids); the tasks still run."""
    from recommender.tasks import embed_profile, embed_profiles
    from safety.tasks import classify_profile, classify_profiles

    # Import every view module first: one that binds encode_texts by name at import (the ML API)
    # must not keep the fake for the rest of the session.
    get_resolver().url_patterns  # noqa: B018
    monkeypatch.setattr(encoder, "encode_texts", fake_encode)
    calls: list[tuple[str, list[int]]] = []
    for task in (embed_profile, embed_profiles, classify_profile, classify_profiles):
        # apply_async: what .delay() calls and what core.tasks.enqueue (enqueue by name) sends with
        original = task.apply_async

        def spy(
            args: Any, kwargs: Any = None, _run: Callable[..., Any] = original, _name: str = task.name, **o: Any
        ) -> Any:
            ids = args[0]
            calls.append((_name, list(ids) if isinstance(ids, list) else [ids]))
            return _run(args, kwargs, **o)

        monkeypatch.setattr(task, "apply_async", spy)
    yield calls


def post(client: Any, profiles: list[Any], **extra: Any) -> Any:
    return client.post(BATCH, {"profiles": profiles, **extra}, format="json")


def test_all_or_nothing_stores_every_profile_and_enqueues_one_task_per_concern(
    service_client, tasks, tenant, django_capture_on_commit_callbacks
):
    items = [profile_data(bio=f"Bio number {i}.", attributes={"diet": "vegan", "height": 160 + i}) for i in range(5)]
    with django_capture_on_commit_callbacks(execute=True):
        response = post(service_client, items)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["created"], body["updated"], body["failed"]) == (5, 0, 0)
    assert [r["status"] for r in body["results"]] == ["created"] * 5
    assert [r["external_id"] for r in body["results"]] == [i["external_id"] for i in items]
    assert body["enqueued"] == {"profiles": 5, "embedding_tasks": 1, "safety_tasks": 1}
    stored = Profile.objects.get(external_id=items[3]["external_id"])
    assert (stored.bio, stored.diet, stored.height, stored.tenant_id) == ("Bio number 3.", "vegan", 163, tenant.pk)
    pks = sorted(Profile.objects.values_list("pk", flat=True))
    # one batched task per concern, with every id; never the per-profile tasks
    assert sorted((name, sorted(ids)) for name, ids in tasks) == [
        ("recommender.tasks.embed_profiles", pks),
        ("safety.tasks.classify_profiles", pks),
    ]
    # and they ran: the derived data exists
    assert ProfileEmbedding.objects.count() == 5
    assert ProfileSafetyScore.objects.count() == 5


def test_the_single_create_keeps_its_per_profile_hooks(service_client, tasks, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert service_client.post("/internal/v1/profiles", profile_data(), format="json").status_code == 201
    assert sorted(name for name, _ids in tasks) == ["recommender.tasks.embed_profile", "safety.tasks.classify_profile"]


def test_a_bad_item_refuses_the_whole_batch_with_errors_keyed_by_index(
    service_client, tasks, django_capture_on_commit_callbacks
):
    items = [profile_data(), profile_data(age=12), profile_data(), profile_data(attributes={"height": 900})]
    with django_capture_on_commit_callbacks(execute=True):
        response = post(service_client, items)
    assert response.status_code == 400
    errors = response.json()["profiles"]
    assert set(errors) == {"1", "3"}
    assert "age" in errors["1"] and "attributes" in errors["3"]
    assert Profile.objects.count() == 0 and tasks == []


def test_per_item_stores_the_valid_ones_and_reports_the_rest(service_client, tasks, django_capture_on_commit_callbacks):
    items: list[Any] = [profile_data(), profile_data(lat=95), "not an object", profile_data(seeking=[])]
    with django_capture_on_commit_callbacks(execute=True):
        response = post(service_client, items, mode="per_item")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["created"], body["failed"]) == (1, 3)
    statuses = [(r["index"], r["status"]) for r in body["results"]]
    assert statuses == [(0, "created"), (1, "error"), (2, "error"), (3, "error")]
    assert "lat" in body["results"][1]["errors"] and "seeking" in body["results"][3]["errors"]
    assert body["results"][2]["external_id"] is None and body["results"][2]["errors"]
    assert list(Profile.objects.values_list("external_id", flat=True)) == [uuid.UUID(items[0]["external_id"])]
    assert [name for name, _ids in tasks] == ["recommender.tasks.embed_profiles", "safety.tasks.classify_profiles"]


def test_duplicates_in_the_batch_and_existing_profiles_are_errors(service_client, make_profile, other_tenant):
    existing = make_profile()
    elsewhere = make_profile(other_tenant)
    twice = profile_data()
    items = [twice, dict(twice, bio="again"), profile_data(external_id=str(existing.external_id)),
             profile_data(external_id=str(elsewhere.external_id))]  # fmt: skip
    response = post(service_client, items, mode="per_item")
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["created", "error", "error", "created"]
    assert results[1]["errors"] == {"external_id": ["Duplicate external_id: first given at index 0."]}
    assert results[2]["errors"] == {"external_id": ["A profile with this external_id already exists in this tenant."]}
    assert Profile.objects.get(external_id=twice["external_id"]).bio == twice["bio"]  # the first one won
    # all_or_nothing refuses the same batch whole
    again = post(service_client, [profile_data(), profile_data(external_id=str(existing.external_id))])
    assert again.status_code == 400 and set(again.json()["profiles"]) == {"1"}


def test_the_same_id_in_another_spelling_is_the_same_id(service_client, make_profile):
    """The serializer reads 5, "00000000-...-000000000005" and its hex form as one UUID: the batch
    must see them as one id too (found by fuzzing: this was a 503 from the unique constraint)."""
    existing = make_profile(external_id=str(uuid.UUID(int=7)))
    items = [profile_data(external_id=5), profile_data(external_id=str(uuid.UUID(int=5))),
             profile_data(external_id=uuid.UUID(int=5).hex.upper()), profile_data(external_id=7)]  # fmt: skip
    response = post(service_client, items, mode="per_item")
    assert response.status_code == 200, response.json()
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["created", "error", "error", "error"]
    assert {r["external_id"] for r in results} == {str(uuid.UUID(int=5)), str(existing.external_id)}
    assert "Duplicate external_id" in str(results[1]["errors"]) and "already exists" in str(results[3]["errors"])


def test_update_existing_changes_only_the_given_fields(service_client, make_profile):
    banned = make_profile(bio="old bio", status=ProfileStatus.BANNED, attributes={"diet": "vegan", "pets": "cats"})
    new = profile_data()
    items = [{"external_id": str(banned.external_id), "bio": "new bio", "attributes": {"pets": "dogs"}}, new]
    response = post(service_client, items, update_existing=True)
    assert response.status_code == 201, response.json()
    assert [r["status"] for r in response.json()["results"]] == ["updated", "created"]
    banned.refresh_from_db()
    # given fields changed; defaults (status active, empty diet) did not overwrite anything
    assert (banned.bio, banned.pets, banned.diet, banned.status) == ("new bio", "dogs", "vegan", ProfileStatus.BANNED)
    bad = post(service_client, [{"external_id": str(banned.external_id), "age": 7}], update_existing=True)
    assert bad.status_code == 400 and "age" in bad.json()["profiles"]["0"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"profiles": []}, "profiles"),
        ({"profiles": "x"}, "profiles"),
        ({"profiles": [{}], "mode": "some"}, "mode"),
        ({"profiles": [{}], "mod": "per_item"}, "mod"),
        ({}, "profiles"),
    ],
)
def test_bad_requests_are_400_and_store_nothing(service_client, body, field):
    response = service_client.post(BATCH, body, format="json")
    assert response.status_code == 400 and field in response.json(), response.json()
    assert Profile.objects.count() == 0


def test_more_than_the_limit_is_413(service_client, settings):
    settings.PROFILE_BATCH_MAX = 3
    response = post(service_client, [profile_data() for _ in range(4)])
    assert response.status_code == 413
    assert response.json() == {
        "detail": "At most 3 profiles per request; got 4.",
        "code": "batch_too_large",
        "field": "profiles",
        "limit": 3,
        "received": 4,
    }
    assert post(service_client, [profile_data() for _ in range(3)]).status_code == 201


def test_service_key_only(user_client_for, make_profile, other_tenant):
    assert post(user_client_for(make_profile()), [profile_data()]).status_code == 403
    other = bearer_client(service_key_create(tenant=other_tenant, name="b").raw)
    assert post(other, [profile_data()]).status_code == 201
    assert Profile.objects.get(tenant=other_tenant, bio=profile_data()["bio"]).tenant == other_tenant


def test_the_batch_is_stored_in_a_few_statements(service_client):
    items = [profile_data() for _ in range(200)]
    with CaptureQueriesContext(connection) as queries:
        assert post(service_client, items).status_code == 201
    # credential, existing ids, one INSERT, savepoints, throttle bookkeeping: not one per profile
    assert len(queries) < 25, [q["sql"][:80] for q in queries]
    assert Profile.objects.count() == 200


# --- The embedded mode: derived work on the in-process worker thread ----------------------------


def test_work_in_the_block_runs_on_the_embedded_worker_thread(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    ran: list[str] = []
    with derived.derived_work_in_background():
        derived._in_background_or_now(lambda: ran.append(threading.current_thread().name))
    assert derived.wait_idle(10)
    assert len(ran) == 1 and ran[0].startswith(derived.THREAD_NAME)
    derived._in_background_or_now(lambda: ran.append(threading.current_thread().name))  # outside: at once
    assert ran[1] == threading.current_thread().name


def test_with_a_broker_nothing_goes_to_the_thread(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    ran: list[str] = []
    with derived.derived_work_in_background():
        derived._in_background_or_now(lambda: ran.append(threading.current_thread().name))
    assert ran == [threading.current_thread().name]


@pytest.mark.django_db(transaction=True)
def test_committed_batch_answers_before_its_derived_work_which_then_runs(tasks, tenant, service_key, monkeypatch):
    """A real commit inside the request: the answer does not wait for the batched tasks, which
    run on the embedded worker thread and store the embeddings and safety scores."""
    gate = threading.Event()
    slow_encode = fake_encode

    def encode_when_allowed(texts: Sequence[str]) -> np.ndarray:
        assert gate.wait(30), "the request should have answered first"
        return slow_encode(texts)

    monkeypatch.setattr(encoder, "encode_texts", encode_when_allowed)
    items = [profile_data(bio=f"Committed {i}.") for i in range(3)]
    response = post(bearer_client(service_key), items)
    assert response.status_code == 201  # answered while the worker is still blocked in the model
    assert ProfileEmbedding.objects.count() == 0
    gate.set()
    assert derived.wait_idle(60)
    assert [name for name, _ids in tasks] == ["recommender.tasks.embed_profiles", "safety.tasks.classify_profiles"]
    assert ProfileEmbedding.objects.count() == 3 and ProfileSafetyScore.objects.count() == 3


# --- The batched safety classification -----------------------------------------------------------

SCAM_BIO = "Text me on whatsapp +1 415 555 0199, and send me money via cashapp $lovely22"


@pytest.fixture
def rules_only(settings: Any, tmp_path: Any) -> Iterator[None]:
    """No safety checkpoint: the rules answer, exactly and fast (as tests/test_safety_flow.py)."""
    from safety import serving

    settings.SAFETY_CHECKPOINT_DIR = tmp_path / "no-checkpoint"
    serving.reset_for_tests()
    yield
    serving.reset_for_tests()


def test_batched_classification_decides_as_the_single_one(
    service_client, tasks, rules_only, make_profile, other_tenant, django_capture_on_commit_callbacks
):
    from safety.models import Action, Decision, QueueItem
    from safety.services import profiles_classify

    bios = [SCAM_BIO, "Find me on telegram", "I love hiking and coffee."]
    with django_capture_on_commit_callbacks(execute=True):
        response = post(service_client, [profile_data(bio=b, prompts=[]) for b in bios])
    assert response.status_code == 201
    batch = [Profile.objects.get(external_id=r["external_id"]) for r in response.json()["results"]]
    # the same profiles one by one, through the single create and its per-profile hook (in another
    # tenant: a bio copied within a tenant is itself a fake-profile signal)
    with django_capture_on_commit_callbacks(execute=True):
        single = [make_profile(other_tenant, bio=b, prompts=[]) for b in bios]
    for one, other in zip(batch, single, strict=True):
        other.refresh_from_db()
        assert one.status == other.status
        scores = ProfileSafetyScore.objects.filter(profile__in=[one, other]).values_list("scores", flat=True)
        assert len(scores) == 2 and scores[0] == scores[1]
        items = [(i.flagged_labels, i.auto_hidden) for i in QueueItem.objects.filter(profile__in=[one, other])]
        assert len(items) in (0, 2) and len(set(map(str, items))) <= 1
    assert [p.status for p in batch] == ["hidden", "active", "active"]
    assert Decision.objects.get(profile=batch[0]).action == Action.AUTO_HIDE
    # a second run finds the same text and model: nothing to do
    again = profiles_classify(profile_ids=[p.pk for p in batch])
    assert [o.skipped for o in again] == ["unchanged"] * 3
    assert [name for name, _ids in tasks].count("safety.tasks.classify_profiles") == 1


def test_the_batched_tasks_go_to_the_model_queues():
    """Workers are started per queue (README): the batch variants must land where the single ones do."""
    from patra.celery import app
    from recommender.tasks import embed_profiles
    from safety.tasks import classify_profiles

    assert {t.name: app.amqp.router.route({}, t.name)["queue"].name for t in (embed_profiles, classify_profiles)} == {
        "recommender.tasks.embed_profiles": "embeddings",
        "safety.tasks.classify_profiles": "safety",
    }
