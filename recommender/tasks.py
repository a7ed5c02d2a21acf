"""Celery tasks: thin wrappers that load by id and call a service.

Queues follow the task names (settings.CELERY_TASK_ROUTES): ``embed_*`` go to ``embeddings``,
``*index*`` to ``indexing``, the rest to ``default``. Every task is idempotent, because tasks
are acknowledged late and may run twice.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from django.db import OperationalError

from accounts.models import Tenant
from accounts.services import user_tokens_purge_expired
from recommender.indexing import index_build
from recommender.services.elo import elo_rebuild
from recommender.services.embeddings import embeddings_upsert
from recommender.services.retention import events_prune
from recommender.serving.encoder import EmbeddingUnavailable

# Registered here because Celery's autodiscovery imports only ``<app>.tasks`` modules.
from recommender.training import tasks as _training_tasks  # noqa: F401

logger = logging.getLogger(__name__)

_RETRYING: dict[str, Any] = {
    "bind": True,
    "acks_late": True,
    "autoretry_for": (OperationalError,),  # the database restarting or a lock timeout
    "retry_backoff": True,
    "max_retries": 5,
}


@shared_task(name="recommender.tasks.embed_profile", soft_time_limit=120, time_limit=180, **_RETRYING)
def embed_profile(self: Task, profile_id: int) -> int:
    """(Re)embed one profile; unchanged text is skipped, so running twice costs one query."""
    try:
        return embeddings_upsert(profile_ids=[profile_id])
    except EmbeddingUnavailable as exc:
        # Not retried: the model will not appear by itself. The feed works without it and the
        # next index build embeds whatever is missing.
        logger.warning("profile %s not embedded: %s", profile_id, exc)
        return 0


@shared_task(name="recommender.tasks.embed_profiles", soft_time_limit=15 * 60, time_limit=16 * 60, **_RETRYING)
def embed_profiles(self: Task, profile_ids: list[int]) -> int:
    """(Re)embed a batch of profiles (bulk onboarding: the profile batch endpoint, import_profiles):
    one model call per 256 texts instead of one task and one call per profile. Unchanged text is
    skipped, so running twice costs one query per 256 profiles."""
    try:
        return embeddings_upsert(profile_ids=profile_ids)
    except EmbeddingUnavailable as exc:
        logger.warning("%d profiles not embedded: %s", len(profile_ids), exc)
        return 0


@shared_task(name="recommender.tasks.build_index", soft_time_limit=55 * 60, time_limit=60 * 60, **_RETRYING)
def build_index(self: Task, tenant_id: int) -> dict[str, Any] | None:
    tenant = Tenant.objects.get(pk=tenant_id)
    on_progress = None
    if not self.request.is_eager and self.request.id:  # only a worker has a state to report to

        def on_progress(done: int, total: int) -> None:
            self.update_state(state="PROGRESS", meta={"done": done, "total": total})

    try:
        result = index_build(tenant=tenant, on_progress=on_progress)
    except EmbeddingUnavailable as exc:
        logger.warning("index of tenant %s not built: %s", tenant.slug, exc)
        return None
    return {
        "tenant": result.tenant_slug,
        "path": str(result.path),
        "size": result.size,
        "build_seconds": result.build_seconds,
        "recall_at_10": result.recall_at_10,
    }


@shared_task(name="recommender.tasks.rebuild_indexes", acks_late=True)
def rebuild_indexes() -> int:
    """Hourly: a fresh build per tenant drops the deleted slots the deltas leave behind."""
    tenant_ids = list(Tenant.objects.order_by("pk").values_list("pk", flat=True))
    for tenant_id in tenant_ids:
        build_index.delay(tenant_id)  # one task per tenant: own time limit, retries, worker
    return len(tenant_ids)


@shared_task(name="recommender.tasks.rebuild_elo_all_tenants", soft_time_limit=55 * 60, time_limit=60 * 60, **_RETRYING)
def rebuild_elo_all_tenants(self: Task) -> int:
    tenants = list(Tenant.objects.order_by("pk"))
    for tenant in tenants:
        elo_rebuild(tenant=tenant)
    return len(tenants)


@shared_task(
    name="recommender.tasks.purge_expired_user_tokens", soft_time_limit=10 * 60, time_limit=15 * 60, **_RETRYING
)
def purge_expired_user_tokens(self: Task) -> int:
    return user_tokens_purge_expired()


@shared_task(name="recommender.tasks.prune_expired_events", soft_time_limit=55 * 60, time_limit=60 * 60, **_RETRYING)
def prune_expired_events(self: Task) -> dict[str, object]:
    """Nightly: delete raw events older than EVENT_RETENTION_DAYS (bounded batches; the Elo
    aggregates of what is deleted are kept). Idempotent: a second run finds nothing to do."""
    return events_prune().as_dict()
