"""A moderator's shift in a real (headless) Chromium: log in, take the next item, decide it with
a keyboard shortcut, bulk-decide the rest, and accept an appeal. Screenshots of each step go to
test-artifacts/screenshots/safety-*.png."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from accounts.models import Tenant
from recommender.models import Profile
from recommender.services.profiles import profiles_bulk_create
from safety import serving
from safety.models import Action, Decision, ItemStatus, Queue, QueueItem
from safety.services import appeal_create, decision_record, profile_classify
from tests.browser import chromium, chromium_available, screenshot
from tests.conftest import profile_data
from tests.test_safety_flow import make_moderator

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

PASSWORD = "pw-Patra-2026!"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not chromium_available(), reason="needs chromium; run scripts/install_browser.sh"),
]


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium(window="1300,1100") as driver:
        yield driver


def shot(driver: Any, name: str) -> None:
    screenshot(driver, f"safety-{name}")


def flagged_profiles(tenant: Tenant, bios: list[str]) -> list[Profile]:
    rows = []
    for bio in bios:
        data = profile_data(bio=bio, prompts=[])
        data["external_id"] = uuid.UUID(data["external_id"])
        rows.append(data)
    profiles = profiles_bulk_create(tenant=tenant, rows=rows)  # no hooks: classify explicitly below
    for p in profiles:
        profile_classify(profile_id=p.pk)
    return profiles


def wait_for(driver: Any, by: str, value: str) -> Any:
    return WebDriverWait(driver, 15).until(ec.presence_of_element_located((by, value)))


def test_moderator_shift(browser, live_server, tenant, django_user_model, settings, tmp_path) -> None:
    settings.SAFETY_CHECKPOINT_DIR = tmp_path / "none"  # rules only: deterministic scores
    serving.reset_for_tests()
    moderator = make_moderator(django_user_model, "alice")
    moderator.set_password(PASSWORD)
    moderator.save()
    flagged_profiles(
        tenant,
        [
            "Text me on whatsapp +1 415 555 0199 and send money via cashapp",  # auto-hidden, top of queue
            "Find me on telegram",
            "hit me up on kik",
            "add me on snapchat",
        ],
    )
    # An earlier hide, appealed by its profile.
    (appealer,) = flagged_profiles(tenant, ["my snap is @sunny_days"])
    item = QueueItem.objects.get(profile=appealer, status=ItemStatus.OPEN)
    hide = decision_record(item=item, user=moderator, action="hide", policy_label="spam_scam", rationale="contact")
    appeal_create(profile=appealer, decision=hide, text="That is my photography account, not a scam.")

    d = browser
    d.get(f"{live_server.url}/admin/login/?next=/moderation/")
    d.find_element(By.NAME, "username").send_keys("alice")
    d.find_element(By.NAME, "password").send_keys(PASSWORD + Keys.ENTER)
    wait_for(d, By.ID, "take-next")
    shot(d, "1-queue")

    # Take next: the auto-hidden scam is the most severe item.
    d.find_element(By.TAG_NAME, "body").send_keys("n")
    wait_for(d, By.ID, "decision-form")
    assert "whatsapp" in d.find_element(By.ID, "bio").get_attribute("innerHTML")
    shot(d, "2-item")
    Select(d.find_element(By.NAME, "policy_label")).select_by_value("spam_scam")
    d.find_element(By.NAME, "rationale").send_keys("payment request with off-platform contact", Keys.ESCAPE)
    d.find_element(By.TAG_NAME, "body").send_keys("b")  # b = ban, submits and takes the next item
    WebDriverWait(d, 15).until(lambda drv: Decision.objects.filter(action=Action.BAN).exists())
    ban = Decision.objects.get(action=Action.BAN)
    assert ban.moderator_id == moderator.pk and ban.profile.status == "banned"
    wait_for(d, By.ID, "decision-form")
    shot(d, "3-next-item")

    # Bulk: approve everything left in the review queue.
    d.get(f"{live_server.url}/moderation/?queue=review")
    wait_for(d, By.ID, "select-all").click()
    d.find_element(By.CSS_SELECTOR, "#bulk-form input[name=action][value=approve]").click()
    Select(d.find_element(By.CSS_SELECTOR, "#bulk-form select[name=policy_label]")).select_by_value("no_violation")
    d.find_element(By.CSS_SELECTOR, "#bulk-form textarea[name=rationale]").send_keys("contact handle only, allowed")
    shot(d, "4-bulk")
    d.find_element(By.ID, "bulk-submit").click()
    wait_for(d, By.CLASS_NAME, "messages")
    shot(d, "5-bulk-done")
    assert not QueueItem.objects.filter(queue=Queue.REVIEW, status=ItemStatus.OPEN).exists()
    assert Decision.objects.filter(bulk=True, action=Action.APPROVE).count() == 3

    # Appeal: accept, which restores the hidden profile.
    d.get(f"{live_server.url}/moderation/?queue=appeals")
    wait_for(d, By.ID, "take-next").click()
    wait_for(d, By.ID, "appeal")
    d.find_element(By.CSS_SELECTOR, "input[name=outcome][value=accept]").click()
    Select(d.find_element(By.NAME, "policy_label")).select_by_value("no_violation")
    d.find_element(By.NAME, "rationale").send_keys("photography account, verified")
    shot(d, "6-appeal")
    d.find_element(By.ID, "decide").click()
    WebDriverWait(d, 15).until(lambda drv: Decision.objects.filter(action=Action.APPEAL_ACCEPT).exists())
    appealer.refresh_from_db()
    assert appealer.status == "active"
    d.get(f"{live_server.url}/moderation/health")
    wait_for(d, By.TAG_NAME, "svg")
    shot(d, "7-health")
