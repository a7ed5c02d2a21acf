"""An ML admin activates and rolls back a model version in a real (headless) Chromium.

Needs the Debian packages chromium and chromium-driver (scripts/install_browser.sh) and selenium
(requirements-dev.txt). Screenshots of each step go to test-artifacts/screenshots/.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from registry.models import AuditAction, AuditLog, VersionStatus
from registry.selectors import active_version
from tests.browser import chromium, chromium_available, screenshot
from tests.test_registry_support import artifacts, make_ml_admin, register

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not chromium_available(), reason="needs chromium; run scripts/install_browser.sh"),
]
__all__ = ["artifacts"]


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium(window="1400,1100") as driver:
        yield driver


def shot(driver: Any, name: str) -> None:
    screenshot(driver, f"registry-{name}")


def confirm_with_reason(driver: Any, reason: str, name: str) -> None:
    WebDriverWait(driver, 10).until(expected_conditions.presence_of_element_located((By.ID, "id_reason")))
    driver.find_element(By.ID, "id_reason").send_keys(reason)
    shot(driver, name)
    driver.find_element(By.ID, "confirm-button").click()
    WebDriverWait(driver, 10).until(expected_conditions.presence_of_element_located((By.ID, "active-version")))


def test_ml_admin_activates_then_rolls_back(browser, live_server, tenant, artifacts, tmp_path, django_user_model):
    v1 = register(tenant, tmp_path, 1.0)
    v2 = register(tenant, tmp_path, 2.0, metrics={"val_ndcg@10": 0.45, "curves": {"val_ndcg@10": [0.3, 0.4, 0.45]}})
    make_ml_admin(django_user_model, username="ada", password="correct horse battery")

    browser.get(f"{live_server.url}/admin/login/")
    browser.find_element(By.ID, "id_username").send_keys("ada")
    browser.find_element(By.ID, "id_password").send_keys("correct horse battery")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(browser, 10).until(expected_conditions.url_to_be(f"{live_server.url}/admin/"))

    browser.get(f"{live_server.url}/admin/registry/modelversion/registry/")
    browser.find_element(By.LINK_TEXT, "ranker").click()
    assert "ranker-v1" in browser.find_element(By.ID, "active-version").text
    assert browser.find_elements(By.CSS_SELECTOR, "svg.registry-chart")
    shot(browser, "1-registry-page")

    browser.find_element(By.CSS_SELECTOR, "#version-2 a.activate-link").click()
    assert "ranker-v1" in browser.find_element(By.ID, "summary-from").text
    assert "ranker-v2" in browser.find_element(By.ID, "summary-to").text
    confirm_with_reason(browser, "v2 has the better validation NDCG@10", "2-activate-confirm")
    assert "ranker-v2" in browser.find_element(By.ID, "active-version").text
    assert "active-version" in browser.find_element(By.ID, "version-2").get_attribute("class")
    shot(browser, "3-activated")

    browser.find_element(By.ID, "rollback-button").click()
    assert "ranker-v1" in browser.find_element(By.ID, "summary-to").text
    confirm_with_reason(browser, "v2 lowers the match rate", "4-rollback-confirm")
    assert "ranker-v1" in browser.find_element(By.ID, "active-version").text
    assert "Rolled back" in browser.find_element(By.CSS_SELECTOR, "ul.messagelist").text
    shot(browser, "5-rolled-back")

    assert active_version(tenant_id=tenant.pk, model_type="ranker") == v1
    v2.refresh_from_db()
    assert v2.status == VersionStatus.RETIRED
    rows = list(AuditLog.objects.order_by("pk").values_list("action", "actor", "from_version", "to_version", "reason"))
    assert rows == [
        (AuditAction.AUTO_ACTIVATE, "system:registry", None, v1.pk, "auto-activated: first version"),
        (AuditAction.ACTIVATE, "ada", v1.pk, v2.pk, "v2 has the better validation NDCG@10"),
        (AuditAction.ROLLBACK, "ada", v2.pk, v1.pk, "v2 lowers the match rate"),
    ]


def test_cancel_changes_nothing(browser, live_server, tenant, artifacts, tmp_path, django_user_model):
    v1 = register(tenant, tmp_path, 1.0)
    register(tenant, tmp_path, 2.0)
    make_ml_admin(django_user_model, username="bob", password="correct horse battery")
    browser.get(f"{live_server.url}/admin/login/")
    browser.find_element(By.ID, "id_username").send_keys("bob")
    browser.find_element(By.ID, "id_password").send_keys("correct horse battery")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(browser, 10).until(expected_conditions.url_to_be(f"{live_server.url}/admin/"))

    browser.get(f"{live_server.url}/admin/registry/modelversion/registry/{tenant.pk}/ranker/")
    browser.find_element(By.CSS_SELECTOR, "#version-2 a.activate-link").click()
    browser.find_element(By.ID, "id_reason").send_keys("changed my mind")
    browser.find_element(By.ID, "cancel-link").click()
    assert "ranker-v1" in browser.find_element(By.ID, "active-version").text
    assert active_version(tenant_id=tenant.pk, model_type="ranker") == v1
    assert not AuditLog.objects.filter(action=AuditAction.ACTIVATE).exists()
