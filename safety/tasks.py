"""Celery tasks (queue ``safety`` by the route in settings): load by id, call a service."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from accounts.models import Tenant
from safety.selectors import unscored_profile_ids
from safety.services import profile_classify, profiles_classify
from safety.training import train_and_register


@shared_task(name="safety.tasks.classify_profile", acks_late=True)
def classify_profile(profile_id: int, force: bool = False) -> dict[str, Any]:
    outcome = profile_classify(profile_id=profile_id, force=force)
    return {"queued": outcome.queued, "auto_hidden": outcome.auto_hidden, "skipped": outcome.skipped}


@shared_task(name="safety.tasks.classify_profiles", acks_late=True, soft_time_limit=15 * 60, time_limit=16 * 60)
def classify_profiles(profile_ids: list[int], force: bool = False) -> dict[str, int]:
    """Classify a batch of profiles (bulk onboarding) with one model call: the batch variant of
    ``classify_profile``, with the same outcome per profile."""
    outcomes = profiles_classify(profile_ids=profile_ids, force=force)
    return {
        "profiles": len(outcomes),
        "queued": sum(o.queued for o in outcomes),
        "auto_hidden": sum(o.auto_hidden for o in outcomes),
        "skipped": sum(bool(o.skipped) for o in outcomes),
    }


@shared_task(name="safety.tasks.classify_unscored")
def classify_unscored(limit: int = 5_000) -> int:
    """Score profiles whose on-commit classification was lost (broker down, worker crash)."""
    ids = unscored_profile_ids(limit=limit)
    for pk in ids:
        classify_profile.delay(pk)
    return len(ids)


@shared_task(name="safety.tasks.retrain_safety", acks_late=True, soft_time_limit=60 * 60, time_limit=65 * 60)
def retrain_safety(tenant_id: int, include_decisions: bool = True, created_by: str = "task:retrain_safety") -> str:
    tenant = Tenant.objects.get(pk=tenant_id)
    result = train_and_register(tenant=tenant, include_decisions=include_decisions, created_by=created_by)
    return result.version_label
