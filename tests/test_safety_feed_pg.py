"""A moderator's ban takes a profile out of every feed and out of the serving index at once, and
approving restores it (PostgreSQL + Redis, the production setup)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recommender.feed.pipeline import feed_for
from recommender.indexing import index_build
from recommender.models import Profile
from recommender.serving.index import serving_index
from safety import serving
from safety.models import ItemStatus, QueueItem
from safety.services import decision_record, report_create
from tests.test_safety_flow import make_moderator

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

SF = (37.7749, -122.4194)


@pytest.fixture(autouse=True)
def _isolated(isolated_ml_state: None, settings: Any, tmp_path: Path) -> Iterator[None]:
    settings.SAFETY_CHECKPOINT_DIR = tmp_path / "no-checkpoint"  # the documented rules only
    serving.reset_for_tests()
    yield
    serving.reset_for_tests()


def in_index(tenant_id: int, profile: Profile) -> bool:
    index = serving_index(tenant_id)
    assert index is not None
    vec = index.vectors([profile.pk]).get(profile.pk)
    if vec is None:
        return False
    ids, _ = index.query(np.asarray(vec)[None, :], 5)
    return profile.pk in ids.ravel().tolist()


def test_ban_leaves_feeds_and_index_and_approve_restores(
    tenant, make_profile, django_user_model, django_capture_on_commit_callbacks
):
    user = make_profile(gender="woman", seeking=["man"], age=30, lat=SF[0], lon=SF[1])
    men = [
        make_profile(gender="man", seeking=["woman"], age=32, lat=SF[0] + i * 0.01, lon=SF[1], bio=f"Cyclist {i}")
        for i in range(5)
    ]
    target = men[0]
    index_build(tenant=tenant)
    shown = {item.profile_id for item in feed_for(tenant=tenant, user=user, count=20, log_impressions=False).items}
    assert target.pk in shown and in_index(tenant.pk, target)

    moderator = make_moderator(django_user_model)
    with django_capture_on_commit_callbacks(execute=True):
        report_create(reporter=user, reported=target, reason="spam_scam", text="asked for money")
    other_user = make_profile(gender="woman", seeking=["man"], age=31, lat=SF[0], lon=SF[1])
    item = QueueItem.objects.get(profile=target, status=ItemStatus.OPEN)
    with django_capture_on_commit_callbacks(execute=True):
        decision_record(item=item, user=moderator, action="ban", policy_label="spam_scam", rationale="scam")

    # Gone at once: from another user's feed (the reporter no longer sees them anyway) and the index.
    shown = {i.profile_id for i in feed_for(tenant=tenant, user=other_user, count=20, log_impressions=False).items}
    assert target.pk not in shown and not in_index(tenant.pk, target)

    with django_capture_on_commit_callbacks(execute=True):
        report_create(reporter=other_user, reported=target, reason="other", text="appealed by mail")
    item = QueueItem.objects.get(profile=target, status=ItemStatus.OPEN)
    with django_capture_on_commit_callbacks(execute=True):
        decision_record(
            item=item, user=moderator, action="approve", policy_label="no_violation", rationale="reviewed: legitimate"
        )
    target.refresh_from_db()
    assert target.status == "active"
    third = make_profile(gender="woman", seeking=["man"], age=29, lat=SF[0], lon=SF[1])
    shown = {i.profile_id for i in feed_for(tenant=tenant, user=third, count=20, log_impressions=False).items}
    assert target.pk in shown and in_index(tenant.pk, target)
