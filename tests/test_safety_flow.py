"""Safety flow end to end through services, API and console (rules-only classifier: no
checkpoint, so results are exact and fast)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.urls import reverse

from accounts.groups import MODERATORS
from recommender.models import Profile
from safety import serving
from safety.models import Action, Appeal, Block, Decision, ItemStatus, ProfileSafetyScore, Queue, QueueItem, Report
from safety.selectors import blocked_or_reported_ids
from safety.services import SafetyError, decision_record, profile_classify, queue_item_claim_next

pytestmark = pytest.mark.django_db

SCAM_BIO = "Text me on whatsapp +1 415 555 0199, and send me money via cashapp $lovely22"


@pytest.fixture(autouse=True)
def rules_only(settings: Any, tmp_path: Path) -> Iterator[None]:
    settings.SAFETY_CHECKPOINT_DIR = tmp_path / "no-checkpoint"
    serving.reset_for_tests()
    yield
    serving.reset_for_tests()


def make_moderator(django_user_model: Any, name: str = "mod") -> Any:
    group, _ = Group.objects.get_or_create(name=MODERATORS)
    group.permissions.add(
        *Permission.objects.filter(content_type__app_label="safety", codename__in=["add_decision", "view_queueitem"])
    )
    user = django_user_model.objects.create_user(name, password="pw-Patra-2026!", is_staff=True)
    user.groups.add(group)
    return user


def login(user: Any) -> Client:
    c = Client()
    c.force_login(user)
    return c


@pytest.fixture
def moderator(django_user_model: Any) -> Any:
    return make_moderator(django_user_model)


@pytest.fixture
def create(make_profile: Callable[..., Profile], django_capture_on_commit_callbacks: Any) -> Callable[..., Profile]:
    def make(**kw: Any) -> Profile:
        with django_capture_on_commit_callbacks(execute=True):
            p = make_profile(**kw)
        p.refresh_from_db()
        return p

    return make


def test_scam_profile_is_scored_queued_and_auto_hidden(create: Callable[..., Profile]) -> None:
    p = create(bio=SCAM_BIO)
    assert p.status == "hidden"
    score = ProfileSafetyScore.objects.get(profile=p)
    assert score.model_version == serving.RULES_ONLY_VERSION
    assert score.scores["spam_scam"] > 0.97
    rules = {r["rule"] for r in score.evidence["spam_scam"]["rules"]}
    assert {"off_platform_contact", "phone_number", "payment_request"} <= rules
    item = QueueItem.objects.get(profile=p, status=ItemStatus.OPEN)
    assert item.auto_hidden and "spam_scam" in item.flagged_labels
    auto = Decision.objects.get(profile=p)
    assert auto.automated and auto.action == Action.AUTO_HIDE and auto.status_after == "hidden"


def test_review_threshold_queues_without_hiding(create: Callable[..., Profile]) -> None:
    p = create(bio="Find me on telegram", prompts=[])
    assert p.status == "active"
    item = QueueItem.objects.get(profile=p)
    assert item.flagged_labels == ["spam_scam"] and not item.auto_hidden


def test_benign_profile_is_scored_but_not_queued(create: Callable[..., Profile]) -> None:
    p = create()
    assert ProfileSafetyScore.objects.filter(profile=p).exists()
    assert not QueueItem.objects.filter(profile=p).exists() and p.status == "active"


def test_reports_and_model_flag_merge_into_one_item(create, user_client_for) -> None:
    target = create(bio="Find me on telegram")
    a, b = create(), create()
    for reporter, reason in ((a, "spam_scam"), (b, "harassment")):
        r = user_client_for(reporter).post(
            "/api/v1/reports", {"profile_id": str(target.external_id), "reason": reason, "text": "rude"}, format="json"
        )
        assert r.status_code == 201, r.content
    items = QueueItem.objects.filter(profile=target, queue=Queue.REVIEW, status=ItemStatus.OPEN)
    assert items.count() == 1
    item = items.get()
    assert item.report_count == 2 and "spam_scam" in item.flagged_labels
    assert Report.objects.filter(item=item).count() == 2


def test_report_and_block_validation(create, user_client_for, service_client) -> None:
    me, other = create(), create()
    c = user_client_for(me)
    assert (
        c.post("/api/v1/reports", {"profile_id": str(me.external_id), "reason": "spam_scam"}, format="json").status_code
        == 400
    )
    bad = c.post("/api/v1/reports", {"profile_id": "nope", "reason": "bogus"}, format="json")
    assert bad.status_code == 400 and {"profile_id", "reason"} <= set(bad.json())
    assert c.post("/api/v1/blocks", {}, format="json").json() == {"profile_id": ["This field is required."]}
    assert (
        service_client.post("/api/v1/blocks", {"profile_id": str(other.external_id)}, format="json").status_code == 403
    )
    assert not Report.objects.exists() and not Block.objects.exists()


def test_blocks_and_reports_feed_the_exclusion_selector(create, user_client_for) -> None:
    me, blocked, blocker, reported, stranger = (create() for _ in range(5))
    assert (
        user_client_for(me).post("/api/v1/blocks", {"profile_id": str(blocked.external_id)}, format="json").status_code
        == 201
    )
    again = user_client_for(me).post("/api/v1/blocks", {"profile_id": str(blocked.external_id)}, format="json")
    assert again.status_code == 200
    user_client_for(blocker).post("/api/v1/blocks", {"profile_id": str(me.external_id)}, format="json")
    user_client_for(me).post(
        "/api/v1/reports", {"profile_id": str(reported.external_id), "reason": "other"}, format="json"
    )
    ids = blocked_or_reported_ids(tenant_id=me.tenant_id, user_id=me.pk)
    assert ids == {blocked.pk, blocker.pk, reported.pk}
    assert stranger.pk not in ids
    assert blocked_or_reported_ids(tenant_id=me.tenant_id, user_id=blocked.pk) == {me.pk}


def test_classify_endpoint_contract(service_client, user_client_for, create, settings) -> None:
    texts = ["I love hiking", SCAM_BIO, "go kill yourself"]
    r = service_client.post("/api/v1/ml/safety/classify", {"texts": texts}, format="json")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["model_version"] == serving.RULES_ONLY_VERSION
    assert len(body["results"]) == 3
    for res in body["results"]:
        assert set(res["labels"]) == {"inappropriate", "spam_scam", "harassment", "fake_profile"}
        assert all(0.0 <= v <= 1.0 for v in res["labels"].values())
    assert body["results"][0]["labels"]["spam_scam"] == 0.0
    assert body["results"][1]["labels"]["spam_scam"] > 0.97  # input order kept
    assert body["results"][2]["labels"]["harassment"] > 0.8
    assert body["results"][2]["evidence"]["harassment"]["rules"][0]["rule"] == "threat"
    settings.SAFETY_CLASSIFY_MAX_TEXTS = 2
    too_many = service_client.post("/api/v1/ml/safety/classify", {"texts": texts}, format="json")
    assert too_many.status_code == 400 and "texts" in too_many.json()
    settings.SAFETY_CLASSIFY_MAX_CHARS = 10
    assert service_client.post("/api/v1/ml/safety/classify", {"texts": ["x" * 11]}, format="json").status_code == 413
    bad = service_client.post("/api/v1/ml/safety/classify", {"texts": ["ok", 3]}, format="json")
    assert bad.status_code == 400 and bad.json() == {"texts": {"1": ["Must be a string."]}}
    assert service_client.post("/api/v1/ml/safety/classify", {"texts": []}, format="json").status_code == 400
    user = user_client_for(create())
    assert user.post("/api/v1/ml/safety/classify", {"texts": ["hi"]}, format="json").status_code == 403


def test_decision_needs_policy_and_rationale(create, moderator) -> None:
    p = create(bio="Find me on telegram")
    item = QueueItem.objects.get(profile=p)
    with pytest.raises(SafetyError) as err:
        decision_record(item=item, user=moderator, action="ban", policy_label="", rationale=" ")
    assert set(err.value.errors) == {"policy_label", "rationale"}
    client = login(moderator)
    r = client.post(reverse("safety_console:item", args=[item.pk]), {"action": "ban"})
    assert r.status_code == 400
    p.refresh_from_db()
    item.refresh_from_db()
    assert p.status == "active" and item.status == ItemStatus.OPEN and not Decision.objects.exists()


def test_ban_removes_and_approve_restores(create, moderator, django_capture_on_commit_callbacks) -> None:
    p = create(bio="Find me on telegram")
    item = QueueItem.objects.get(profile=p)
    with django_capture_on_commit_callbacks(execute=True):
        d = decision_record(item=item, user=moderator, action="ban", policy_label="spam_scam", rationale="scammer")
    p.refresh_from_db()
    assert p.status == "banned" and d.status_before == "active" and d.status_after == "banned"
    assert not Profile.objects.filter(pk=p.pk, status="active").exists()  # feeds and the index serve active only
    # A later report opens a new item; approving it restores the profile.
    reporter = create()
    from safety.services import report_create

    with django_capture_on_commit_callbacks(execute=True):
        report_create(reporter=reporter, reported=p, reason="other", text="appealed offline")
    item2 = QueueItem.objects.get(profile=p, status=ItemStatus.OPEN)
    with django_capture_on_commit_callbacks(execute=True):
        decision_record(item=item2, user=moderator, action="approve", policy_label="no_violation", rationale="fine now")
    p.refresh_from_db()
    assert p.status == "active"
    assert list(Decision.objects.filter(profile=p).values_list("action", flat=True)) == ["approve", "ban"]


def test_approved_text_is_not_re_flagged(create, moderator) -> None:
    p = create(bio=SCAM_BIO)
    item = QueueItem.objects.get(profile=p)
    decision_record(item=item, user=moderator, action="approve", policy_label="no_violation", rationale="joke")
    p.refresh_from_db()
    assert p.status == "active"
    out = profile_classify(profile_id=p.pk, force=True)
    p.refresh_from_db()
    assert out.skipped == "approved text" and p.status == "active"
    assert not QueueItem.objects.filter(profile=p, status=ItemStatus.OPEN).exists()


def test_appeal_is_queued_and_accepting_reverses(create, moderator, user_client_for) -> None:
    p = create(bio="Find me on telegram")
    item = QueueItem.objects.get(profile=p)
    hide = decision_record(item=item, user=moderator, action="hide", policy_label="spam_scam", rationale="contact")
    client = user_client_for(p)
    assert client.post("/api/v1/appeals", {"text": ""}, format="json").status_code == 400
    r = client.post("/api/v1/appeals", {"decision_id": hide.pk, "text": "It is my band's channel"}, format="json")
    assert r.status_code == 201, r.content
    dup = client.post("/api/v1/appeals", {"decision_id": hide.pk, "text": "again"}, format="json")
    assert dup.status_code == 400
    appeal_item = QueueItem.objects.get(queue=Queue.APPEALS, status=ItemStatus.OPEN)
    console = login(moderator)
    assert console.post(reverse("safety_console:item", args=[appeal_item.pk]), {"outcome": "accept"}).status_code == 400
    ok = console.post(
        reverse("safety_console:item", args=[appeal_item.pk]),
        {"outcome": "accept", "policy_label": "no_violation", "rationale": "legit channel"},
    )
    assert ok.status_code == 302
    p.refresh_from_db()
    assert p.status == "active"
    accepted = Decision.objects.get(action=Action.APPEAL_ACCEPT)
    assert accepted.reverses_id == hide.pk and accepted.moderator == moderator
    assert Appeal.objects.get().status == "accepted"


def test_claims_are_exclusive_and_expire(create, django_user_model, settings) -> None:
    from datetime import timedelta

    from django.utils import timezone

    m1, m2 = make_moderator(django_user_model, "m1"), make_moderator(django_user_model, "m2")
    create(bio="Find me on telegram")
    first = queue_item_claim_next(user=m1)
    assert first is not None and queue_item_claim_next(user=m2) is None
    assert queue_item_claim_next(user=m1).pk == first.pk  # one's own claim comes back
    later = timezone.now() + timedelta(minutes=settings.SAFETY_CLAIM_MINUTES + 1)
    again = queue_item_claim_next(user=m2, now=later)
    assert again is not None and again.pk == first.pk and again.claimed_by == m2


def test_queue_ordering_by_severity_and_reports(create) -> None:
    mild = create(bio="Find me on telegram")
    severe = create(bio=SCAM_BIO)
    items = list(QueueItem.objects.filter(status="open").order_by("-rank_key"))
    assert [i.profile_id for i in items] == [severe.pk, mild.pk]


def test_console_access(create, moderator, django_user_model, user_client_for) -> None:
    p = create(bio="Find me on telegram")
    url = reverse("safety_console:queue")
    # An API user token is not a console login.
    api = user_client_for(p)
    r = api.get(url)
    assert r.status_code == 302 and "/admin/login" in r["Location"]
    staff = django_user_model.objects.create_user("staff", password="pw-Patra-2026!", is_staff=True)
    assert login(staff).get(url).status_code == 403
    m = login(moderator)
    page = m.get(url)
    assert page.status_code == 200 and "telegram" not in page.content.decode()  # list hides text
    item = QueueItem.objects.get(profile=p)
    detail = m.get(reverse("safety_console:item", args=[item.pk])).content.decode()
    assert 'data-label="spam_scam"' in detail and "telegram</mark>" in detail
    health = m.get(reverse("safety_console:health"))
    assert health.status_code == 200 and "<svg" in health.content.decode()
    # Moderators get nothing in the registry: they cannot change which model serves.
    from registry.selectors import access_registry_admin

    assert not moderator.has_perm("registry.activate_modelversion")
    with pytest.raises(PermissionDenied):
        access_registry_admin(moderator)


def test_bulk_decisions_skip_items_held_by_others(create, django_user_model) -> None:
    m1, m2 = make_moderator(django_user_model, "m1"), make_moderator(django_user_model, "m2")
    profiles = [create(bio=f"Find me on telegram, I am number {i}") for i in range(3)]
    held = queue_item_claim_next(user=m2)
    ids = list(QueueItem.objects.filter(status="open").values_list("pk", flat=True))
    r = login(m1).post(
        reverse("safety_console:bulk"),
        {"items": ids, "action": "hide", "policy_label": "spam_scam", "rationale": "bulk contact", "queue": "review"},
    )
    assert r.status_code == 302
    assert QueueItem.objects.get(pk=held.pk).status == "open"
    hidden = Profile.objects.filter(pk__in=[p.pk for p in profiles], status="hidden").count()
    assert hidden == 2 and Decision.objects.filter(bulk=True, moderator=m1).count() == 2


def test_a_banned_user_can_appeal_and_do_nothing_else(create, moderator, user_client_for) -> None:
    p = create(bio="Find me on telegram")
    client = user_client_for(p)
    item = QueueItem.objects.get(profile=p)
    ban = decision_record(item=item, user=moderator, action="ban", policy_label="spam_scam", rationale="scam")
    p.refresh_from_db()
    assert p.status == "banned"
    for method, path in (("get", "/api/v1/me"), ("get", "/api/v1/feed"), ("post", "/api/v1/reports")):
        response = getattr(client, method)(path, {}, format="json")
        assert response.status_code == 403, path
        assert "appeal" in response.json()["detail"]
    r = client.post("/api/v1/appeals", {"decision_id": ban.pk, "text": "Telegram is my band's channel"}, format="json")
    assert r.status_code == 201, r.content
    assert QueueItem.objects.filter(queue=Queue.APPEALS, status=ItemStatus.OPEN).exists()
