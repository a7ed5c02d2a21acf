"""The feed's reads of the database: a user's swipe history and who they must never see.

A feed reads both in one round trip (:func:`feed_reads`); the ML API reads them for many users
at once (:func:`swipe_histories`, :func:`excluded_profile_ids_by_user`); tests pin that the two
agree. The live check of the chosen profiles (:func:`live_profiles`) is the feed's only other
read.

Who a user must never see: recommender excludes by itself the user and everyone they matched
with. Other apps add their own reasons at start-up, in ``AppConfig.ready`` (safety: blocks either
way and reports), so the feed never imports them (docs/architecture.md). A source gives the same
set two ways:

* ``sql``: a SELECT of one column of profile ids named ``profile_id``, with the parameters ``%(tenant_id)s`` and
  ``%(user_id)s``; the feed puts it into the one query it reads a user's history with (one
  round trip per feed);
* ``by_user``: the ids for each of many users at once (the ML API's batches), in a few queries.

The two must agree; each app's tests pin that for its source.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from django.db import connection
from django.db.models import Q

from recommender.models import POSITIVE_ACTIONS, Match, Profile, ProfileStatus, Swipe, SwipeAction

HISTORY_PER_ACTION = 100  # newest likes / superlikes / passes feeding taste and interaction

# --------------------------------------------------------------------------- exclusion sources

ByUser = Callable[..., dict[int, set[int]]]  # (*, tenant_id: int, user_ids: Iterable[int]) -> {user: ids}


@dataclass(frozen=True)
class ExclusionSource:
    name: str
    sql: str
    by_user: ByUser


_sources: dict[str, ExclusionSource] = {}


def register_exclusion_source(source: ExclusionSource) -> None:
    """Add (or, under the same name, replace) a source; called from ``AppConfig.ready``."""
    _sources[source.name] = source


def exclusions_sql() -> str:
    """Every source's SQL as one SELECT of a ``profile_id`` column ("" with no source)."""
    return " UNION ALL ".join(source.sql for source in _sources.values())


def excluded_by_sources(*, tenant_id: int, user_ids: Iterable[int]) -> dict[int, set[int]]:
    """The ids every source excludes for each of ``user_ids`` (every user a key)."""
    wanted = set(user_ids)
    out: dict[int, set[int]] = {pk: set() for pk in wanted}
    for source in _sources.values():
        for pk, ids in source.by_user(tenant_id=tenant_id, user_ids=wanted).items():
            out[pk] |= ids
    return out


# --------------------------------------------------------------------------- swipe history


@dataclass(frozen=True)
class SwipeHistory:
    swiped: np.ndarray  # (s,) int64 pks of everyone the user swiped
    liked: list[int]  # newest HISTORY_PER_ACTION, oldest first
    superliked: list[int]
    passed: list[int]
    likers: np.ndarray  # (m,) int64 pks of who liked or superliked the user
    passers: np.ndarray  # (p,) int64 pks of who passed on the user


def swipe_history(*, user_id: int) -> SwipeHistory:
    """The user's swipes and the likes they received, in one query (two index scans)."""
    return swipe_histories(user_ids=[user_id])[user_id]


def swipe_histories(*, user_ids: Sequence[int]) -> dict[int, SwipeHistory]:
    """:func:`swipe_history` of each of ``user_ids``, in one query for all (the ML API's batches)."""
    wanted = set(user_ids)
    rows = (
        Swipe.objects.filter(Q(user_id__in=wanted) | Q(candidate_id__in=wanted))
        .order_by("occurred_at", "pk")
        .values_list("user_id", "candidate_id", "action")
    )
    return _histories(rows, wanted)


def _histories(rows: Iterable[tuple[int, int, str]], wanted: set[int]) -> dict[int, SwipeHistory]:
    """SwipeHistory of each of ``wanted`` from time-ordered (swiper, candidate, action) rows
    holding their swipes and the swipes they received."""
    actions = (SwipeAction.LIKE, SwipeAction.SUPERLIKE, SwipeAction.PASS)
    groups: dict[int, dict[str, list[int]]] = {pk: {a: [] for a in actions} for pk in wanted}
    swiped: dict[int, set[int]] = {pk: set() for pk in wanted}
    likers: dict[int, set[int]] = {pk: set() for pk in wanted}
    passers: dict[int, set[int]] = {pk: set() for pk in wanted}
    for swiper_id, candidate_id, action in rows:
        if swiper_id in wanted:
            swiped[swiper_id].add(candidate_id)
            groups[swiper_id][action].append(candidate_id)
        if candidate_id in wanted:
            (likers if action in POSITIVE_ACTIONS else passers)[candidate_id].add(swiper_id)
    return {
        pk: SwipeHistory(
            swiped=np.fromiter(swiped[pk], dtype=np.int64, count=len(swiped[pk])),
            liked=groups[pk][SwipeAction.LIKE][-HISTORY_PER_ACTION:],
            superliked=groups[pk][SwipeAction.SUPERLIKE][-HISTORY_PER_ACTION:],
            passed=groups[pk][SwipeAction.PASS][-HISTORY_PER_ACTION:],
            likers=np.fromiter(likers[pk], dtype=np.int64, count=len(likers[pk])),
            passers=np.fromiter(passers[pk], dtype=np.int64, count=len(passers[pk])),
        )
        for pk in wanted
    }


def excluded_profile_ids(tenant_id: int, user_id: int) -> set[int]:
    """Profiles never to show ``user_id``: the user, everyone they already matched with, and
    everyone they blocked or reported or who blocked them (the safety app, through
    the exclusion sources above).

    The one place for "never show". Swiped profiles are excluded separately, from the swipe
    history the feed reads anyway.
    """
    return feed_reads(tenant_id=tenant_id, user_id=user_id).excluded


@dataclass(frozen=True)
class FeedReads:
    history: SwipeHistory
    excluded: set[int]  # excluded_profile_ids


def feed_reads(*, tenant_id: int, user_id: int) -> FeedReads:
    """:func:`swipe_history` and :func:`excluded_profile_ids` of one user in one round trip.

    The feed's one read of the database before its final live check. Hand-written SQL, a
    UNION ALL of the swipe query and the exclusions, because on two cores building the ORM
    querysets for each feed cost about as much as running them (tests pin that this agrees
    with :func:`swipe_histories` and the safety app's querysets). No tenant condition on
    swipes and matches: a user's rows are all in their tenant, and the planner would rather
    walk the tenant index than use the user indexes.
    """
    params = {"tenant_id": tenant_id, "user_id": user_id}
    with connection.cursor() as cursor:
        cursor.execute(_feed_reads_sql(exclusions_sql()), params)
        rows = cursor.fetchall()
    excluded = {user_id}
    swipes: list[tuple[int, int, str]] = []
    for swiper_id, profile_id, action, _occurred_at, _id in rows:
        if swiper_id is None:
            excluded.add(profile_id)  # a match, a block either way or a report
        else:
            swipes.append((swiper_id, profile_id, action))
    return FeedReads(history=_histories(swipes, {user_id})[user_id], excluded=excluded)


@functools.cache
def _feed_reads_sql(excluded_sql: str) -> str:
    swipe, match = Swipe._meta.db_table, Match._meta.db_table
    # The other apps' exclusion sources (above: safety's blocks and reports).
    others = f" UNION ALL SELECT NULL, x.profile_id, NULL, NULL, NULL FROM ({excluded_sql}) x" if excluded_sql else ""
    # Swipe rows first in time order (the newest HISTORY_PER_ACTION of each action are kept);
    # exclusion rows have a NULL swiper and sort anywhere.
    return (
        f"SELECT user_id, candidate_id, action, occurred_at, id FROM {swipe}"
        " WHERE user_id = %(user_id)s OR candidate_id = %(user_id)s"
        f" UNION ALL SELECT NULL, user_b_id, NULL, NULL, NULL FROM {match} WHERE user_a_id = %(user_id)s"
        f" UNION ALL SELECT NULL, user_a_id, NULL, NULL, NULL FROM {match} WHERE user_b_id = %(user_id)s"
        f"{others} ORDER BY 4, 5"
    )


def excluded_profile_ids_by_user(tenant_id: int, user_ids: Sequence[int]) -> dict[int, set[int]]:
    """:func:`excluded_profile_ids` of each of ``user_ids``, in three queries for all (the ML
    API's batches; a feed reads its one user's exclusions in a single round trip instead)."""
    wanted = set(user_ids)
    out = {pk: {pk} for pk in wanted}
    matched = Match.objects.filter(Q(user_a_id__in=wanted) | Q(user_b_id__in=wanted))
    for a, b in matched.values_list("user_a_id", "user_b_id"):
        for pk in (a, b):
            if pk in wanted:
                out[pk] |= {a, b}
    for pk, others in excluded_by_sources(tenant_id=tenant_id, user_ids=wanted).items():
        out[pk] |= others
    return out


# --------------------------------------------------------------------------- live check


def live_profiles(tenant_id: int, pks: list[int]) -> dict[int, uuid.UUID]:
    """pk -> external id of the ``pks`` that are active in the tenant right now.

    Filtered by primary key alone, tenant and status checked here: with a tenant or status
    condition the planner may walk the (tenant, status) index over the whole tenant instead.
    Hand-written SQL for the reason :func:`feed_reads` gives.
    """
    if not pks:
        return {}
    placeholders = ", ".join(["%s"] * len(pks))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, tenant_id, status, external_id FROM {Profile._meta.db_table} WHERE id IN ({placeholders})",
            pks,
        )
        rows = cursor.fetchall()
    to_uuid = _EXTERNAL_ID.to_python  # PostgreSQL answers a UUID, SQLite its hex string
    return {pk: to_uuid(ext) for pk, tid, status, ext in rows if tid == tenant_id and status == ProfileStatus.ACTIVE}


_EXTERNAL_ID = Profile._meta.get_field("external_id")
