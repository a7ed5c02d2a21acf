"""On PostgreSQL: concurrent claims never hand one item to two moderators; an expired claim
returns to the queue."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from accounts.models import Tenant
from recommender.services.profiles import profiles_bulk_create
from safety.models import Queue, QueueItem
from safety.services import queue_item_claim_next
from tests.conftest import profile_data
from tests.test_safety_flow import make_moderator

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def seed_items(tenant: Tenant, n: int) -> list[QueueItem]:
    rows = []
    for _ in range(n):
        data = profile_data()
        data["external_id"] = uuid.UUID(data["external_id"])
        rows.append(data)
    profiles = profiles_bulk_create(tenant=tenant, rows=rows)  # no hooks: items are made by hand below
    return [
        QueueItem.objects.create(tenant=tenant, profile=p, queue=Queue.REVIEW, severity=1.0, rank_key=float(i))
        for i, p in enumerate(profiles)
    ]


def claim_concurrently(users: list[Any], rounds: int = 1) -> list[int | None]:
    barrier = threading.Barrier(len(users))
    got: list[int | None] = [None] * (len(users) * rounds)
    errors: list[BaseException] = []

    def work(i: int, user: Any) -> None:
        try:
            for r in range(rounds):
                barrier.wait(timeout=20)
                item = queue_item_claim_next(user=user)
                got[r * len(users) + i] = item.pk if item else None
                if item is not None:  # decide-like release so the next round takes a new one
                    QueueItem.objects.filter(pk=item.pk).update(status="decided")
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(i, u)) for i, u in enumerate(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return got


def test_two_moderators_claiming_at_once_get_different_items(tenant: Tenant, django_user_model: Any) -> None:
    seed_items(tenant, 12)
    m1, m2 = make_moderator(django_user_model, "m1"), make_moderator(django_user_model, "m2")
    got = claim_concurrently([m1, m2], rounds=6)
    claimed = [g for g in got if g is not None]
    assert len(claimed) == 12 and len(set(claimed)) == 12


def test_more_moderators_than_items(tenant: Tenant, django_user_model: Any) -> None:
    seed_items(tenant, 2)
    mods = [make_moderator(django_user_model, f"m{i}") for i in range(4)]
    got = claim_concurrently(mods)
    claimed = [g for g in got if g is not None]
    assert len(claimed) == 2 and len(set(claimed)) == 2
    assert sum(g is None for g in got) == 2


def test_expired_claim_returns_to_the_queue(tenant: Tenant, django_user_model: Any, settings: Any) -> None:
    (item,) = seed_items(tenant, 1)
    m1, m2 = make_moderator(django_user_model, "m1"), make_moderator(django_user_model, "m2")
    assert queue_item_claim_next(user=m1).pk == item.pk
    assert queue_item_claim_next(user=m2) is None
    QueueItem.objects.filter(pk=item.pk).update(claim_expires_at=timezone.now() - timedelta(seconds=1))
    again = queue_item_claim_next(user=m2)
    assert again is not None and again.pk == item.pk and again.claimed_by_id == m2.pk
