"""Elo desirability ratings kept in the EloRating table, updated by every swipe.

The rating maths is framework-free in ``recommender.ml.elo``; this module only stores it. Rows
are locked (in primary-key order, so concurrent batches cannot deadlock) and updated in the same
transaction as the swipes, so concurrent writers never lose an update. A batch costs two
statements whatever its size: one upsert that creates, locks and reads the rows, one UPDATE.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from tqdm import tqdm

from accounts.models import Tenant
from core.locks import advisory_xact_lock, lock_key
from recommender.ml.elo import EloConfig, elo_update, rebuild_ratings
from recommender.models import POSITIVE_ACTIONS, EloBaseline, EloRating, Swipe


def elo_config() -> EloConfig:
    return EloConfig(k=settings.ELO_K)


def elo_history_lock(tenant_id: int) -> None:
    """Serialise, per tenant, retention (which folds expired swipes into EloBaseline and deletes
    them) with rebuilds (which replay baseline + swipes): a rebuild never sees half of a batch."""
    advisory_xact_lock([lock_key("elo-history", tenant_id)])


def elo_apply_swipes(*, tenant: Tenant, swipes: Sequence[Swipe]) -> None:
    """Apply ``swipes`` (new ones, in order) to the ratings and counters, in two statements: lock
    and read the rows, write them back."""
    if not swipes:
        return
    cfg = elo_config()
    ids = sorted({s.candidate_id for s in swipes} | {s.user_id for s in swipes})
    rows = _elo_rows_lock(tenant_id=tenant.pk, ids=ids, initial=cfg.initial)
    for swipe in swipes:
        candidate, swiper = rows[swipe.candidate_id], rows[swipe.user_id]
        candidate.rating = elo_update(candidate.rating, swiper.rating, swipe.action, cfg)
        candidate.swipes_received += 1
        swiper.swipes_given += 1
        swiper.likes_given += swipe.action in POSITIVE_ACTIONS
    _elo_rows_write(rows=[rows[i] for i in ids], now=timezone.now())


@dataclass
class _EloRow:
    profile_id: int
    rating: float
    swipes_received: int
    swipes_given: int
    likes_given: int


_ELO_TABLE = EloRating._meta.db_table
_ELO_RETURNING = "RETURNING profile_id, rating, swipes_received, swipes_given, likes_given"
_ELO_SET = (
    "SET rating = v.rating, swipes_received = v.swipes_received, swipes_given = v.swipes_given, "
    "likes_given = v.likes_given, updated_at = %s"
)
# On PostgreSQL the per-row values travel as one array per column: a handful of parameters
# whatever the batch size, so the driver parses the placeholders of each statement once (it
# caches them) instead of several per row on every batch. SQLite gets VALUES lists.


def _elo_rows_lock(*, tenant_id: int, ids: Sequence[int], initial: float) -> dict[int, _EloRow]:
    """Create the missing rows and lock all of them, in ``ids`` order (sorted, so concurrent
    batches cannot deadlock), returning their current values: one upsert statement.

    The no-op ``DO UPDATE`` is what takes the row lock and returns the row, and it works on the
    latest committed version (like ``SELECT ... FOR UPDATE``), so no concurrent update is lost.
    It replaces an INSERT ... ON CONFLICT DO NOTHING followed by a SELECT ... FOR UPDATE: one
    round trip instead of two.
    """
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    if connection.vendor == "postgresql":
        source = "SELECT r.id, %s, %s, 0, 0, 0, %s FROM unnest(%s::bigint[]) AS r(id) ORDER BY r.id"
        params: list[object] = [tenant_id, initial, now, list(ids)]
    else:
        source = "VALUES " + ", ".join(["(%s, %s, %s, 0, 0, 0, %s)"] * len(ids))
        params = [value for i in ids for value in (i, tenant_id, initial, now)]
    sql = (
        f"INSERT INTO {_ELO_TABLE} "
        f"(profile_id, tenant_id, rating, swipes_received, swipes_given, likes_given, updated_at) {source} "
        f"ON CONFLICT (profile_id) DO UPDATE SET profile_id = EXCLUDED.profile_id {_ELO_RETURNING}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {row[0]: _EloRow(*row) for row in cursor.fetchall()}


def _elo_rows_write(*, rows: Sequence[_EloRow], now: datetime) -> None:
    """One UPDATE ... FROM for the whole batch. (Django's bulk_update builds a CASE expression
    per row and cost ~30 ms for a batch of 15; one UPDATE per row costs a round trip each.)"""
    values = [(r.profile_id, float(r.rating), r.swipes_received, r.swipes_given, r.likes_given) for r in rows]
    updated_at = connection.ops.adapt_datetimefield_value(now)
    if connection.vendor == "postgresql":
        sql = (
            f"UPDATE {_ELO_TABLE} {_ELO_SET} "
            "FROM unnest(%s::bigint[], %s::float8[], %s::integer[], %s::integer[], %s::integer[]) "
            "AS v(profile_id, rating, swipes_received, swipes_given, likes_given) "
            f"WHERE {_ELO_TABLE}.profile_id = v.profile_id"
        )
        params: list[object] = [updated_at, *(list(column) for column in zip(*values, strict=True))]
    else:
        # A CTE names the VALUES columns (SQLite takes no column list on a VALUES alias).
        sql = (
            "WITH v (profile_id, rating, swipes_received, swipes_given, likes_given) AS (VALUES "
            + ", ".join(["(%s, %s, %s, %s, %s)"] * len(values))
            + f") UPDATE {_ELO_TABLE} {_ELO_SET} FROM v WHERE {_ELO_TABLE}.profile_id = v.profile_id"
        )
        params = [value for row in values for value in row] + [updated_at]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


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
    counts: dict[Any, int] = {pid: received for pid, _, received, _, _ in baseline}
    # pk -> [swipes given, likes given]
    given: dict[Any, list[int]] = {pid: [n_given, n_liked] for pid, _, _, n_given, n_liked in baseline}
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
