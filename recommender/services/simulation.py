"""The bridge between the framework-free swipe simulator and the database.

The simulator (``recommender.simulation``) decides who is shown and what they do; this module
turns its sessions into impressions, swipe batches and matches through the very services the API
uses, so simulated history obeys every rule real traffic does.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from django.db import transaction

from accounts.models import Tenant
from recommender.models import Profile
from recommender.services.events import ImpressionBatchIn, SwipeIn, impression_batch_ingest, swipe_batch_ingest
from recommender.services.profiles import profiles_bulk_create
from recommender.simulation import SessionBatch, SimProfile


@dataclass
class ReplayStats:
    sessions: int = 0
    impressions: int = 0
    swipes: int = 0
    likes: int = 0
    matches: int = 0


def population_load(*, tenant: Tenant, population: Sequence[SimProfile]) -> list[Profile]:
    """Store a simulated population; the result is in population order (index i = profile i)."""
    rows: list[Mapping[str, Any]] = [{**asdict(p), "external_id": uuid.UUID(p.external_id)} for p in population]
    return profiles_bulk_create(tenant=tenant, rows=rows)


def sessions_replay(
    *,
    tenant: Tenant,
    profiles: Sequence[Profile],
    sessions: Iterable[SessionBatch],
    model_version: str = "",
    sessions_per_transaction: int = 200,
    on_session: Callable[[SessionBatch], None] | None = None,
) -> ReplayStats:
    """Write each session as an impression batch followed by its swipe batch."""
    stats = ReplayStats()
    pending: list[SessionBatch] = []

    def flush() -> None:
        # Grouping sessions in one transaction saves a commit (an fsync on SQLite) per session;
        # each service call still runs in its own savepoint, all or nothing.
        with transaction.atomic():
            for batch in pending:
                _replay_one(tenant, profiles, batch, model_version, stats)
                if on_session is not None:
                    on_session(batch)
        pending.clear()

    for batch in sessions:
        pending.append(batch)
        if len(pending) >= sessions_per_transaction:
            flush()
    if pending:
        flush()
    return stats


def _replay_one(
    tenant: Tenant, profiles: Sequence[Profile], batch: SessionBatch, model_version: str, stats: ReplayStats
) -> None:
    user = profiles[batch.user]
    candidate_ids = [profiles[c].external_id for c in batch.candidates]
    impression_batch_ingest(
        tenant=tenant,
        user=user,
        batch=ImpressionBatchIn(
            candidate_ids=candidate_ids,
            positions=batch.positions,
            context_hash=f"sim:{batch.session_id}",
            timestamp=batch.timestamp,
            model_version=model_version,
        ),
    )
    result = swipe_batch_ingest(
        tenant=tenant,
        user=user,
        session_id=batch.session_id,
        timestamp=batch.timestamp,
        swipes=[
            SwipeIn(candidate_id=cid, action=action, duration_ms=duration, event_id=event_id)
            for cid, action, duration, event_id in zip(
                candidate_ids, batch.actions, batch.durations, batch.event_ids, strict=True
            )
        ],
    )
    stats.sessions += 1
    stats.impressions += len(candidate_ids)
    stats.swipes += result.created
    stats.likes += sum(a != "pass" for a in batch.actions)
    stats.matches += len(result.matches)
