"""Data guardrails: the retention window of raw events.

Retention (``EVENT_RETENTION_DAYS``, default 90; the beat task ``prune_expired_events``, nightly):

* **Deleted**: raw events older than the window, i.e. ``Impression`` and ``Swipe`` rows with
  ``occurred_at`` before ``now - EVENT_RETENTION_DAYS``, in batches of ``EVENT_RETENTION_BATCH``
  rows (one short transaction each, oldest first), so the job never holds long locks or a huge
  transaction and can stop and resume anywhere.
* **Kept**: ``Match`` rows (user-facing state: a conversation exists; deleting it would unmatch
  people), safety reports, blocks and decisions (``safety``), and the aggregates the models read:
  ``EloRating`` (rating, swipes received/given, likes given) is maintained incrementally and never
  recomputed from scratch except by ``elo_rebuild``, which replays the swipe table. So that a
  rebuild after pruning ends where the incremental updates ended, every swipe is folded, in
  ``(occurred_at, id)`` order, into the profile's ``EloBaseline`` row (rating and counters after
  all pruned swipes) in the same transaction that deletes it; ``elo_rebuild`` seeds its replay
  with those rows. One advisory lock per tenant (``elo-history``) serialises pruning and rebuilds.
* **Consequences, by design**: a pass or like older than the window no longer hides a candidate
  from the feed's "already swiped" filter (the profile can be shown again after 90 days), an
  unanswered like older than the window no longer turns into a match when answered (likes
  expire), and the collaborative models train on the window only.
* **Imports**: ``import_events`` refuses impressions and swipes older than the window by default
  (they would be deleted by the next nightly run): :func:`event_is_expired` is the rule it
  applies, so an import and the pruning job can never disagree.

No event is sampled: every accepted impression is stored, tagged with a model version or not,
because impressions are the ranker's training data. (An earlier ``ANALYTICS_SAMPLE_RATE`` kept
untagged impressions for a panel of users only; it was removed.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Tenant
from recommender.ml.elo import elo_update
from recommender.models import POSITIVE_ACTIONS, EloBaseline, Impression, Swipe
from recommender.services.elo import elo_config, elo_history_lock

logger = logging.getLogger(__name__)

# The event tables events_prune deletes from; matches are kept (see above), so an import of old
# matches is never refused.
PRUNED_EVENT_KINDS: frozenset[str] = frozenset({"impressions", "swipes"})


# --- Retention ---------------------------------------------------------------------------------


@dataclass
class RetentionResult:
    cutoff: datetime
    swipes_deleted: int = 0
    impressions_deleted: int = 0
    baselines_written: int = 0
    tenants: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "cutoff": self.cutoff.isoformat(),
            "swipes_deleted": self.swipes_deleted,
            "impressions_deleted": self.impressions_deleted,
            "baselines_written": self.baselines_written,
            "tenants": self.tenants,
        }


def retention_cutoff(now: datetime | None = None, days: int | None = None) -> datetime:
    days = settings.EVENT_RETENTION_DAYS if days is None else days
    return (now or timezone.now()) - timedelta(days=days)


def event_is_expired(occurred_at: datetime, *, cutoff: datetime) -> bool:
    """Whether the pruning job would delete a raw event (impression or swipe) of this time:
    the same comparison as :func:`events_prune` (``occurred_at < cutoff``)."""
    return occurred_at < cutoff


@transaction.atomic
def _prune_swipe_batch(tenant: Tenant, cutoff: datetime, batch_size: int) -> tuple[int, int]:
    """Fold the oldest ``batch_size`` expired swipes into EloBaseline and delete them.
    Returns (swipes deleted, baseline rows written)."""
    elo_history_lock(tenant.pk)
    rows = list(
        Swipe.objects.filter(tenant=tenant, occurred_at__lt=cutoff)
        .order_by("occurred_at", "pk")
        .values_list("pk", "user_id", "candidate_id", "action", "occurred_at")[:batch_size]
    )
    if not rows:
        return 0, 0
    cfg = elo_config()
    ids = {r[1] for r in rows} | {r[2] for r in rows}
    base = {b.profile_id: b for b in EloBaseline.objects.filter(profile_id__in=ids)}
    for pid in ids - base.keys():
        base[pid] = EloBaseline(profile_id=pid, tenant=tenant, rating=cfg.initial, pruned_through=rows[0][4])
    for _pk, user_id, candidate_id, action, occurred_at in rows:
        cand, swiper = base[candidate_id], base[user_id]
        cand.rating = elo_update(cand.rating, swiper.rating, action, cfg)
        cand.swipes_received += 1
        swiper.swipes_given += 1
        swiper.likes_given += action in POSITIVE_ACTIONS
        for row in (cand, swiper):
            row.pruned_through = max(row.pruned_through, occurred_at)
    EloBaseline.objects.bulk_create(
        list(base.values()),
        update_conflicts=True,
        unique_fields=["profile"],
        update_fields=["rating", "swipes_received", "swipes_given", "likes_given", "pruned_through"],
    )
    deleted, _ = Swipe.objects.filter(pk__in=[r[0] for r in rows]).delete()
    return deleted, len(base)


def _prune_impression_batch(tenant: Tenant, cutoff: datetime, batch_size: int) -> int:
    ids = list(
        Impression.objects.filter(tenant=tenant, occurred_at__lt=cutoff)
        .order_by("occurred_at", "pk")
        .values_list("pk", flat=True)[:batch_size]
    )
    if not ids:
        return 0
    deleted, _ = Impression.objects.filter(pk__in=ids).delete()
    return deleted


def events_prune(
    *,
    now: datetime | None = None,
    days: int | None = None,
    batch_size: int | None = None,
    tenant: Tenant | None = None,
    on_batch: Callable[[str, int], None] | None = None,
) -> RetentionResult:
    """Delete raw events older than the retention window (see the module docstring); safe to run
    twice, or concurrently with ingestion and rebuilds."""
    batch_size = batch_size or settings.EVENT_RETENTION_BATCH
    result = RetentionResult(cutoff=retention_cutoff(now, days))
    tenants = [tenant] if tenant is not None else list(Tenant.objects.order_by("pk"))
    for t in tenants:
        result.tenants.append(t.slug)
        while True:
            deleted, written = _prune_swipe_batch(t, result.cutoff, batch_size)
            result.swipes_deleted += deleted
            result.baselines_written += written
            if on_batch and deleted:
                on_batch("swipes", deleted)
            if deleted < batch_size:
                break
        while True:
            deleted = _prune_impression_batch(t, result.cutoff, batch_size)
            result.impressions_deleted += deleted
            if on_batch and deleted:
                on_batch("impressions", deleted)
            if deleted < batch_size:
                break
    logger.info("retention: %s", result.as_dict())
    return result
