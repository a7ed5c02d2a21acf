"""Elo desirability ratings kept in the EloRating table, updated by every swipe.

The rating maths is framework-free in ``recommender.ml.elo``; this module only stores it. Rows
are locked (in primary-key order, so concurrent batches cannot deadlock) and updated in the same
transaction as the swipes, so concurrent writers never lose an update.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from tqdm import tqdm

from patra.locks import advisory_xact_lock, lock_key
from recommender.ml.elo import EloConfig, elo_update, rebuild_ratings
from recommender.models import POSITIVE_ACTIONS, EloBaseline, EloRating, Swipe, Tenant


def elo_config() -> EloConfig:
    return EloConfig(k=settings.ELO_K)


def elo_history_lock(tenant_id: int) -> None:
    """Serialise, per tenant, retention (which folds expired swipes into EloBaseline and deletes
    them) with rebuilds (which replay baseline + swipes): a rebuild never sees half of a batch."""
    advisory_xact_lock([lock_key("elo-history", tenant_id)])


def elo_apply_swipes(*, tenant: Tenant, swipes: Sequence[Swipe]) -> None:
    if not swipes:
        return
    cfg = elo_config()
    ids = sorted({s.candidate_id for s in swipes} | {s.user_id for s in swipes})
    EloRating.objects.bulk_create(
        [EloRating(profile_id=i, tenant=tenant, rating=cfg.initial) for i in ids], ignore_conflicts=True
    )
    rows = {r.profile_id: r for r in EloRating.objects.select_for_update().filter(profile_id__in=ids).order_by("pk")}
    now = timezone.now()
    for swipe in swipes:
        row = rows[swipe.candidate_id]
        row.rating = elo_update(row.rating, rows[swipe.user_id].rating, swipe.action, cfg)
        row.swipes_received += 1
        row.updated_at = now
        swiper = rows[swipe.user_id]
        swiper.swipes_given += 1
        swiper.likes_given += swipe.action in POSITIVE_ACTIONS
        swiper.updated_at = now
    changed = [rows[i] for i in ids]
    # One prepared statement run per row: Django's bulk_update builds a CASE expression per row
    # and costs ~30 ms for a batch of 15, more than the rest of the ingestion together.
    table = EloRating._meta.db_table
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {table} SET rating = %s, swipes_received = %s, swipes_given = %s, likes_given = %s, "
            "updated_at = %s WHERE profile_id = %s",
            [
                (
                    r.rating,
                    r.swipes_received,
                    r.swipes_given,
                    r.likes_given,
                    connection.ops.adapt_datetimefield_value(r.updated_at),
                    r.profile_id,
                )
                for r in changed
            ],
        )


@transaction.atomic
def elo_rebuild(*, tenant: Tenant, progress: bool = False) -> int:
    """Recompute every rating of ``tenant`` by replaying its swipes in time order, starting from
    the EloBaseline rows that retention left for the swipes it deleted (none: from scratch)."""
    cfg = elo_config()
    elo_history_lock(tenant.pk)
    baseline = list(
        EloBaseline.objects.filter(tenant=tenant).values_list(
            "profile_id", "rating", "swipes_received", "swipes_given", "likes_given"
        )
    )
    swipes = Swipe.objects.filter(tenant=tenant).order_by("occurred_at", "pk")
    total = swipes.count()
    rows = swipes.values_list("user_id", "candidate_id", "action").iterator(chunk_size=10_000)
    initial = {pid: rating for pid, rating, *_ in baseline}
    ratings = rebuild_ratings(tqdm(rows, total=total, disable=not progress, desc="elo"), cfg, initial=initial)
    counts: dict[int, int] = {pid: received for pid, _, received, _, _ in baseline}
    # pk -> [swipes given, likes given]
    given: dict[int, list[int]] = {pid: [n_given, n_liked] for pid, _, _, n_given, n_liked in baseline}
    for user_id, candidate_id, action in swipes.values_list("user_id", "candidate_id", "action").iterator(
        chunk_size=10_000
    ):
        counts[candidate_id] = counts.get(candidate_id, 0) + 1
        mine = given.setdefault(user_id, [0, 0])
        mine[0] += 1
        mine[1] += action in POSITIVE_ACTIONS
    EloRating.objects.filter(tenant=tenant).delete()
    now = timezone.now()
    EloRating.objects.bulk_create(
        [
            EloRating(
                profile_id=pid,
                tenant=tenant,
                rating=ratings.get(pid, cfg.initial),
                swipes_received=counts.get(pid, 0),
                swipes_given=given.get(pid, [0, 0])[0],
                likes_given=given.get(pid, [0, 0])[1],
                updated_at=now,
            )
            for pid in ratings.keys() | given.keys()
        ],
        batch_size=5_000,
    )
    return len(ratings)
