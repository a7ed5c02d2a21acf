"""Event ingestion: swipe batches, impression batches and match events.

Guarantees, whatever the delivery:

* A batch is validated whole and stored whole (one transaction), or not at all.
* Re-sending is harmless: a swipe with a known client event id, or with the same user, candidate,
  session and timestamp, is counted as a duplicate and not stored again. The unique constraints
  decide it (``INSERT ... ON CONFLICT DO NOTHING``), in the statement that stores the new ones.
* A mutual like creates exactly one Match. Two likes of the same pair arriving at the same moment
  on two workers are serialised by an advisory lock on the pair (PostgreSQL), so the second one
  to commit always sees the first.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import connection, models, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Tenant
from core.locks import advisory_xact_lock, lock_key
from core.metrics import count_ingested
from recommender.models import (
    POSITIVE_ACTIONS,
    Impression,
    Match,
    MatchType,
    Profile,
    Swipe,
    SwipeAction,
)
from recommender.selectors import resolve_profiles
from recommender.services.elo import elo_apply_swipes


class EventValidationError(Exception):
    """Field-level problems found while resolving a batch against the database."""

    def __init__(self, errors: dict[str, object]):
        super().__init__(errors)
        self.errors = errors


@dataclass(frozen=True)
class SwipeIn:
    candidate_id: uuid.UUID
    action: str
    duration_ms: int | None = None
    event_id: str | None = None


@dataclass
class IngestResult:
    """``received == created + duplicates + sampled_out``. ``sampled_out`` counts items that were
    accepted but deliberately not stored; nothing is sampled today, so it is 0, and a client can
    check it to be sure that every accepted event was kept (docs/api.md)."""

    received: int
    created: int
    duplicates: int
    matches: list[uuid.UUID] = field(default_factory=list)
    sampled_out: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "received": self.received,
            "created": self.created,
            "duplicates": self.duplicates,
            "sampled_out": self.sampled_out,
            "matches": [str(m) for m in self.matches],
        }


def _resolve_candidates(
    *, tenant: Tenant, user: Profile, ids: Sequence[uuid.UUID], list_name: str, item_field: str | None
) -> list[Profile]:
    """Resolve candidate ids, or raise errors shaped like DRF's own for list items:
    ``{"swipes": {"3": {"candidate_id": [...]}}}`` or ``{"candidate_ids": {"3": [...]}}``."""
    profiles = resolve_profiles(tenant=tenant, external_ids=ids)
    errors: dict[str, object] = {}
    for i, cid in enumerate(ids):
        if cid == user.external_id:
            message = "A user cannot act on their own profile."
        elif cid not in profiles:
            message = f"Unknown profile {cid} in this tenant."
        else:
            continue
        errors[str(i)] = {item_field: [message]} if item_field else [message]
    if errors:
        raise EventValidationError({list_name: errors})
    return [profiles[cid] for cid in ids]


def _pair(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


@transaction.atomic
def swipe_batch_ingest(
    *, tenant: Tenant, user: Profile, session_id: str, timestamp: datetime, swipes: Sequence[SwipeIn]
) -> IngestResult:
    candidates = _resolve_candidates(
        tenant=tenant, user=user, ids=[s.candidate_id for s in swipes], list_name="swipes", item_field="candidate_id"
    )
    rows = _swipe_rows(tenant=tenant, user=user, session_id=session_id, timestamp=timestamp, swipes=swipes,
                       candidates=candidates)  # fmt: skip
    # Every lock the batch needs, in one sorted round trip. The user's lock serialises one user's
    # batches: two overlapping re-sends inserting the same keys in different orders would
    # otherwise deadlock on the unique indexes. A pair lock per like serialises the two sides of a
    # pair for match detection. All of them come before any row lock (Elo) in every writer, so
    # writers cannot deadlock.
    advisory_xact_lock(
        [lock_key("swipes", user.pk)]
        + [lock_key("pair", *_pair(user.pk, r.candidate_id)) for r in rows if r.action in POSITIVE_ACTIONS]
    )
    new_rows = swipes_insert_new(rows=rows)
    elo_apply_swipes(tenant=tenant, swipes=new_rows)
    matched = _create_matches(tenant=tenant, user=user, swipes=new_rows, timestamp=timestamp)
    return _counted(
        "swipe",
        IngestResult(
            received=len(swipes),
            created=len(new_rows),
            duplicates=len(swipes) - len(new_rows),
            matches=[c.external_id for c in matched],
        ),
    )


def _counted(kind: str, result: IngestResult) -> IngestResult:
    """Count the batch in the ingestion metrics once its transaction commits."""
    transaction.on_commit(lambda: count_ingested(kind, result.created, result.duplicates))
    return result


def _swipe_rows(
    *,
    tenant: Tenant,
    user: Profile,
    session_id: str,
    timestamp: datetime,
    swipes: Sequence[SwipeIn],
    candidates: Sequence[Profile],
) -> list[Swipe]:
    """The batch as Swipe rows, without its inner duplicates (the first occurrence of an event id
    or of a candidate wins; one INSERT cannot hold two rows with the same unique key)."""
    seen_event_ids: set[str] = set()
    seen_candidates: set[int] = set()
    rows: list[Swipe] = []
    received_at = timezone.now()
    for swipe, candidate in zip(swipes, candidates, strict=True):
        if swipe.event_id in seen_event_ids or candidate.pk in seen_candidates:
            continue
        if swipe.event_id:
            seen_event_ids.add(swipe.event_id)
        seen_candidates.add(candidate.pk)
        rows.append(
            Swipe(
                tenant=tenant,
                user=user,
                candidate=candidate,
                action=SwipeAction.PASS if swipe.action == "reject" else swipe.action,
                duration_ms=swipe.duration_ms,
                session_id=session_id,
                client_event_id=swipe.event_id,
                occurred_at=timestamp,
                received_at=received_at,
            )
        )
    return rows


def swipes_insert_new(*, rows: Sequence[Swipe]) -> list[Swipe]:
    """Insert ``rows`` (one user, session and timestamp) in one statement and return those that
    were new, with their pk set.

    ``ON CONFLICT DO NOTHING`` (no target: every unique constraint, the partial one on client
    event ids included) makes the database the judge of what is a duplicate, so a re-send is
    skipped in the same round trip that stores new swipes, and ``RETURNING`` says which rows went
    in. The rows share user, session and timestamp, so their candidate identifies them (the
    natural key is unique).
    """
    if not rows:
        return []
    insert = _swipes_insert_sql_postgres if connection.vendor == "postgresql" else _swipes_insert_sql_values
    sql, params = insert(rows)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        inserted = {candidate_id: pk for pk, candidate_id in cursor.fetchall()}
    new_rows = [row for row in rows if row.candidate_id in inserted]
    for row in new_rows:
        row.pk = inserted[row.candidate_id]
        row._state.adding = False
    return new_rows


_SWIPE_COLUMNS = (
    "tenant_id, user_id, candidate_id, action, duration_ms, session_id, client_event_id, occurred_at, received_at"
)
_SWIPE_RETURNING = "ON CONFLICT DO NOTHING RETURNING id, candidate_id"


def _swipes_insert_sql_postgres(rows: Sequence[Swipe]) -> tuple[str, list[object]]:
    # The per-row values as four arrays: the statement has nine parameters whatever the batch
    # size, so the driver parses its placeholders once (cached), not 9 per row on every batch.
    first = rows[0]
    sql = (
        f"INSERT INTO {Swipe._meta.db_table} ({_SWIPE_COLUMNS}) "
        "SELECT %s, %s, r.candidate_id, r.action, r.duration_ms, %s, r.client_event_id, %s, %s "
        "FROM unnest(%s::bigint[], %s::varchar[], %s::integer[], %s::varchar[]) "
        "AS r(candidate_id, action, duration_ms, client_event_id) "
        f"{_SWIPE_RETURNING}"
    )
    params: list[object] = [first.tenant_id, first.user_id, first.session_id, first.occurred_at, first.received_at]
    for name in ("candidate_id", "action", "duration_ms", "client_event_id"):
        params.append([getattr(row, name) for row in rows])
    return sql, params


def _swipes_insert_sql_values(rows: Sequence[Swipe]) -> tuple[str, list[object]]:
    # SQLite (>= 3.35 for RETURNING): a multi-row VALUES list.
    adapt = connection.ops.adapt_datetimefield_value
    placeholders = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(rows))
    sql = f"INSERT INTO {Swipe._meta.db_table} ({_SWIPE_COLUMNS}) VALUES {placeholders} {_SWIPE_RETURNING}"
    params: list[object] = []
    for r in rows:
        params += [r.tenant_id, r.user_id, r.candidate_id, r.action, r.duration_ms, r.session_id,
                   r.client_event_id, adapt(r.occurred_at), adapt(r.received_at)]  # fmt: skip
    return sql, params


def _create_matches(*, tenant: Tenant, user: Profile, swipes: Sequence[Swipe], timestamp: datetime) -> list[Profile]:
    positive = [s for s in swipes if s.action in POSITIVE_ACTIONS]
    if not positive:
        return []
    # The caller holds the pair locks, so the other side's like, if any, is committed and visible.
    by_candidate = {s.candidate_id: s for s in positive}
    liked_back: dict[int, str] = {}
    for other_id, action in Swipe.objects.filter(
        user__in=list(by_candidate), candidate=user, action__in=POSITIVE_ACTIONS
    ).values_list("user_id", "action"):
        # Someone who both liked and superliked the user counts as a superlike.
        if liked_back.get(other_id) != SwipeAction.SUPERLIKE:
            liked_back[other_id] = action
    if not liked_back:
        return []
    already = _existing_partners(user=user, others=list(liked_back))
    matches: list[Match] = []
    matched: list[Profile] = []
    for candidate_id, their_action in liked_back.items():
        if candidate_id in already:
            continue
        mine = by_candidate[candidate_id]
        superlike = SwipeAction.SUPERLIKE in (mine.action, their_action)
        a, b = _pair(user.pk, candidate_id)
        matches.append(
            Match(
                tenant=tenant,
                user_a_id=a,
                user_b_id=b,
                match_type=MatchType.SUPERLIKE if superlike else MatchType.MUTUAL_LIKE,
                occurred_at=timestamp,
            )
        )
        matched.append(mine.candidate)
    Match.objects.bulk_create(matches)
    return matched


def _existing_partners(*, user: Profile, others: list[int]) -> set[int]:
    rows = Match.objects.filter(Q(user_a=user, user_b__in=others) | Q(user_b=user, user_a__in=others))
    return {b if a == user.pk else a for a, b in rows.values_list("user_a_id", "user_b_id")}


@dataclass(frozen=True)
class ImpressionBatchIn:
    candidate_ids: Sequence[uuid.UUID]
    positions: Sequence[int]
    context_hash: str
    timestamp: datetime
    model_version: str = ""
    experiment_arm: str = ""


@transaction.atomic
def impression_batch_ingest(*, tenant: Tenant, user: Profile, batch: ImpressionBatchIn) -> IngestResult:
    candidates = _resolve_candidates(
        tenant=tenant, user=user, ids=batch.candidate_ids, list_name="candidate_ids", item_field=None
    )
    received = len(batch.candidate_ids)
    # Every impression is stored, tagged with a model version or not: impressions are the
    # ranker's training data (recommender/training/ranker.py), so none is sampled away.
    advisory_xact_lock([lock_key("impressions", user.pk)])
    known = set(
        Impression.objects.filter(user=user, occurred_at=batch.timestamp, candidate__in=candidates).values_list(
            "candidate_id", flat=True
        )
    )
    rows: list[Impression] = []
    for candidate, position in zip(candidates, batch.positions, strict=True):
        if candidate.pk in known:
            continue
        known.add(candidate.pk)
        rows.append(
            Impression(
                tenant=tenant,
                user=user,
                candidate=candidate,
                position=position,
                context_hash=batch.context_hash,
                model_version=batch.model_version,
                experiment_arm=batch.experiment_arm,
                occurred_at=batch.timestamp,
            )
        )
    Impression.objects.bulk_create(rows)
    return _counted("impression", IngestResult(received=received, created=len(rows), duplicates=received - len(rows)))


def impressions_record_served(
    *,
    tenant: Tenant,
    user: Profile,
    candidate_ids: Sequence[int],
    model_version: str,
    experiment_arm: str,
    context_hash: str,
    timestamp: datetime,
) -> None:
    """Log a feed this service has just served, in position order (``candidate_ids``: profile
    pks the feed checked live in ``tenant`` a moment ago).

    The feed's own log, so none of :func:`impression_batch_ingest`'s resolution of external ids,
    locking and duplicate reads is needed: one INSERT in autocommit, a repeat of the same row
    ignored by the unique constraint.
    """
    if connection.vendor == "postgresql":
        # one array per column: ~0.15 ms of client CPU against ~1 ms for bulk_create's 20 model
        # instances and 180 placeholders (measured once in-process), on every feed served
        with connection.cursor() as cursor:
            shared = [tenant.pk, user.pk, context_hash, model_version, experiment_arm, timestamp, timezone.now()]
            rows = [list(candidate_ids), list(range(len(candidate_ids)))]  # candidate, position
            cursor.execute(_IMPRESSIONS_INSERT_SQL, [*shared, *rows])
        return
    Impression.objects.bulk_create(
        [
            Impression(
                tenant=tenant,
                user=user,
                candidate_id=pk,
                position=position,
                context_hash=context_hash,
                model_version=model_version,
                experiment_arm=experiment_arm,
                occurred_at=timestamp,
            )
            for position, pk in enumerate(candidate_ids)
        ],
        ignore_conflicts=True,
    )


_IMPRESSIONS_INSERT_SQL = (
    f"INSERT INTO {Impression._meta.db_table} (tenant_id, user_id, candidate_id, position, context_hash,"
    " model_version, experiment_arm, occurred_at, received_at)"
    " SELECT %s, %s, r.candidate_id, r.position, %s, %s, %s, %s, %s"
    " FROM unnest(%s::bigint[], %s::integer[]) AS r(candidate_id, position) ON CONFLICT DO NOTHING"
)


@dataclass(frozen=True)
class MatchIn:
    user_id: uuid.UUID
    candidate_id: uuid.UUID
    timestamp: datetime
    match_type: str = str(MatchType.EXTERNAL)


@transaction.atomic
def match_events_ingest(*, tenant: Tenant, matches: Sequence[MatchIn]) -> IngestResult:
    """Matches reported by a service (for example made outside the swipe flow)."""
    ids = [m.user_id for m in matches] + [m.candidate_id for m in matches]
    profiles = resolve_profiles(tenant=tenant, external_ids=ids)
    errors: dict[str, dict[str, list[str]]] = {}
    for i, m in enumerate(matches):
        item: dict[str, list[str]] = {}
        for name in ("user_id", "candidate_id"):
            if getattr(m, name) not in profiles:
                item[name] = [f"Unknown profile {getattr(m, name)} in this tenant."]
        if m.user_id == m.candidate_id:
            item["candidate_id"] = ["A match needs two different profiles."]
        if item:
            errors[str(i)] = item
    if errors:
        raise EventValidationError({"matches": errors})
    pairs = {_pair(profiles[m.user_id].pk, profiles[m.candidate_id].pk): m for m in matches}
    advisory_xact_lock([lock_key("pair", *p) for p in pairs])
    existing = set(
        Match.objects.filter(Q(*(Q(user_a_id=a, user_b_id=b) for a, b in pairs), _connector=Q.OR)).values_list(
            "user_a_id", "user_b_id"
        )
    )
    rows = [
        Match(tenant=tenant, user_a_id=a, user_b_id=b, match_type=m.match_type, occurred_at=m.timestamp)
        for (a, b), m in pairs.items()
        if (a, b) not in existing
    ]
    Match.objects.bulk_create(rows)
    return _counted(
        "match", IngestResult(received=len(matches), created=len(rows), duplicates=len(matches) - len(rows))
    )


# --- History backfill (the import_events command) ----------------------------------------------
#
# Past events of many users, sessions and times at once. Duplicates are decided exactly as for the
# API, by the same unique constraints (a swipe's client event id per user or its natural key; an
# impression's user, candidate and time; a match's pair), in the INSERT ... ON CONFLICT DO NOTHING
# that stores the new rows, so re-importing a file stores nothing new. The same advisory locks as
# the API's are taken, so an import running beside live traffic cannot miss a match between a
# live like and an imported one. The caller resolves external ids and validates the values
# (recommender/services/backfill.py). Elo is not touched here: history must be replayed in time
# order, which elo_rebuild does once at the end of an import (incremental updates would apply
# old swipes after newer live ones).

# Rows per INSERT statement on SQLite (multi-row VALUES): at most 4,500 parameters, under its limit.
HISTORY_STATEMENT_ROWS = 500


@dataclass(frozen=True)
class SwipeHistoryIn:
    user_id: int  # profile pks, resolved by the caller
    candidate_id: int
    action: str  # like, pass or superlike ("reject" already mapped to pass)
    occurred_at: datetime
    session_id: str
    duration_ms: int | None = None
    event_id: str | None = None


@dataclass(frozen=True)
class ImpressionHistoryIn:
    user_id: int
    candidate_id: int
    occurred_at: datetime
    position: int
    context_hash: str = ""
    model_version: str = ""
    experiment_arm: str = ""


@dataclass(frozen=True)
class MatchHistoryIn:
    user_id: int
    candidate_id: int
    occurred_at: datetime
    match_type: str = str(MatchType.EXTERNAL)


@dataclass
class HistoryResult:
    created: int = 0
    duplicates: int = 0
    matches: int = 0  # matches the stored likes completed (swipes only)


def _insert_new(
    model: type[models.Model], columns: Sequence[str], rows: Sequence[Sequence[object]], returning: str
) -> list[tuple]:
    """INSERT ``rows`` ignoring those that break a unique constraint; the new rows' ``returning``
    columns. PostgreSQL: one statement, the values as one array per column (a handful of
    parameters whatever the size: the driver would otherwise spend more time splitting a query of
    thousands of placeholders than the server spends inserting). SQLite: multi-row VALUES lists of
    HISTORY_STATEMENT_ROWS rows."""
    if not rows:
        return []
    table, names = model._meta.db_table, ", ".join(columns)
    tail = f" ON CONFLICT DO NOTHING RETURNING {returning}"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            types = [model._meta.get_field(c).db_type(connection) for c in columns]
            arrays = ", ".join(f"%s::{t}[]" for t in types)
            cursor.execute(f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}){tail}", _columns_of(rows))
            return cursor.fetchall()
        out: list[tuple] = []
        adapt = _datetime_adapter()
        row_sql = "(" + ", ".join(["%s"] * len(columns)) + ")"
        for start in range(0, len(rows), HISTORY_STATEMENT_ROWS):
            part = rows[start : start + HISTORY_STATEMENT_ROWS]
            sql = f"INSERT INTO {table} ({names}) VALUES " + ", ".join([row_sql] * len(part)) + tail
            cursor.execute(sql, [adapt(v) if isinstance(v, datetime) else v for row in part for v in row])
            out.extend(cursor.fetchall())
        return out


def _columns_of(rows: Sequence[Sequence[object]]) -> list[list[object]]:
    return [list(column) for column in zip(*rows, strict=True)]


def _datetime_adapter() -> Callable[[datetime], object]:
    adapted: dict[datetime, object] = {}  # a batch's received_at is one value: adapt it once

    def adapt(value: datetime) -> object:
        if value not in adapted:
            adapted[value] = connection.ops.adapt_datetimefield_value(value)
        return adapted[value]

    return adapt


@transaction.atomic
def swipes_store_history(*, tenant: Tenant, rows: Sequence[SwipeHistoryIn]) -> HistoryResult:
    """Store past swipes (any users, sessions, times); create the matches that mutual likes imply."""
    if not rows:
        return HistoryResult()
    if connection.vendor == "postgresql":  # elsewhere writers are serialised anyway (core/locks.py)
        advisory_xact_lock(
            [lock_key("swipes", user_id) for user_id in {r.user_id for r in rows}]
            + [lock_key("pair", *_pair(r.user_id, r.candidate_id)) for r in rows if r.action in POSITIVE_ACTIONS]
        )
    received_at = timezone.now()
    values = [
        (tenant.pk, r.user_id, r.candidate_id, r.action, r.duration_ms, r.session_id, r.event_id, r.occurred_at,
         received_at)
        for r in rows
    ]  # fmt: skip
    inserted = _insert_new(Swipe, _SWIPE_COLUMNS.split(", "), values, returning="user_id, candidate_id, action")
    likes = [(user_id, candidate_id) for user_id, candidate_id, action in inserted if action in POSITIVE_ACTIONS]
    matches = _history_matches(tenant=tenant, likes=likes, received_at=received_at)
    return HistoryResult(created=len(inserted), duplicates=len(rows) - len(inserted), matches=matches)


def _history_matches(*, tenant: Tenant, likes: Sequence[tuple[int, int]], received_at: datetime) -> int:
    """Matches for the pairs the new ``likes`` (user, candidate) made mutual, as the API would have
    made them replaying the history in time order: at the later of the two sides' first likes,
    ``superlike`` if a superlike either way came no later than that. Matched pairs are left alone."""
    if not likes:
        return 0
    positive = _positive_swipes_of({(u, c) for u, c in likes} | {(c, u) for u, c in likes})
    mutual: dict[tuple[int, int], tuple[datetime, str]] = {}
    for u, c in likes:
        if (u, c) not in positive or (c, u) not in positive or _pair(u, c) in mutual:
            continue
        at = max(min(t for t, _a in positive[(u, c)]), min(t for t, _a in positive[(c, u)]))
        superlike = any(a == SwipeAction.SUPERLIKE and t <= at for t, a in positive[(u, c)] + positive[(c, u)])
        mutual[_pair(u, c)] = (at, str(MatchType.SUPERLIKE if superlike else MatchType.MUTUAL_LIKE))
    if not mutual:
        return 0
    matched = {(a, b) for a, b in _select_pairs(_MATCHED_SQL, list(mutual))}
    values = [
        (tenant.pk, a, b, kind, at, received_at) for (a, b), (at, kind) in mutual.items() if (a, b) not in matched
    ]
    return len(_insert_new(Match, _MATCH_COLUMNS, values, returning="id"))


# Lookups by exact pairs: a VALUES list joined on the (user, candidate) / (user_a, user_b)
# indexes, so a transaction reads the rows of its own pairs, not every swipe of every profile
# it touches (which made the import quadratic in the history's length).
_SWIPE_TABLE, _MATCH_TABLE = Swipe._meta.db_table, Match._meta.db_table
_POSITIVE_SQL = (
    f"SELECT s.user_id, s.candidate_id, s.occurred_at, s.action FROM {_SWIPE_TABLE} s "
    "JOIN p ON s.user_id = p.a AND s.candidate_id = p.b "
    f"WHERE s.action IN ({', '.join(repr(str(a)) for a in POSITIVE_ACTIONS)})"  # constants: 'like', 'superlike'
)
_MATCHED_SQL = (
    f"SELECT m.user_a_id, m.user_b_id FROM {_MATCH_TABLE} m JOIN p ON m.user_a_id = p.a AND m.user_b_id = p.b"
)
_PAIRS_PER_QUERY = 2_000


def _select_pairs(select: str, pairs: Sequence[tuple[int, int]]) -> list[tuple]:
    """``select`` (which joins ``p(a, b)``) for ``pairs``, in queries of _PAIRS_PER_QUERY pairs."""
    out: list[tuple] = []
    with connection.cursor() as cursor:
        for start in range(0, len(pairs), _PAIRS_PER_QUERY):
            part = pairs[start : start + _PAIRS_PER_QUERY]
            params: list[Any]
            if connection.vendor == "postgresql":  # two arrays, not 4,000 placeholders
                cte, params = "WITH p (a, b) AS (SELECT * FROM unnest(%s::bigint[], %s::bigint[])) ", _columns_of(part)
            else:
                cte = "WITH p (a, b) AS (VALUES " + ", ".join(["(%s, %s)"] * len(part)) + ") "
                params = [i for pair in part for i in pair]
            cursor.execute(cte + select, params)
            out.extend(cursor.fetchall())
    return out


def _positive_swipes_of(pairs: set[tuple[int, int]]) -> dict[tuple[int, int], list[tuple[datetime, str]]]:
    """(swiper, swiped) -> the stored likes and superlikes of that pair, as (time, action)."""
    to_time = _datetime_from_db()
    positive: dict[tuple[int, int], list[tuple[datetime, str]]] = {}
    for user_id, candidate_id, occurred_at, action in _select_pairs(_POSITIVE_SQL, sorted(pairs)):
        positive.setdefault((user_id, candidate_id), []).append((to_time(occurred_at), action))
    return positive


def _datetime_from_db() -> Callable[[Any], datetime]:
    """Raw SQL returns what the driver gives: an aware datetime on PostgreSQL; on SQLite a naive
    UTC datetime (Django registers a converter for the column type) or, without it, the text."""
    if connection.vendor == "postgresql":
        return lambda value: value

    def aware(value: Any) -> datetime:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment

    return aware


_MATCH_COLUMNS = ("tenant_id", "user_a_id", "user_b_id", "match_type", "occurred_at", "received_at")


@transaction.atomic
def impressions_store_history(*, tenant: Tenant, rows: Sequence[ImpressionHistoryIn]) -> HistoryResult:
    if not rows:
        return HistoryResult()
    advisory_xact_lock([lock_key("impressions", user_id) for user_id in {r.user_id for r in rows}])
    received_at = timezone.now()
    columns = ("tenant_id", "user_id", "candidate_id", "position", "context_hash", "model_version",
               "experiment_arm", "occurred_at", "received_at")  # fmt: skip
    values = [
        (tenant.pk, r.user_id, r.candidate_id, r.position, r.context_hash, r.model_version, r.experiment_arm,
         r.occurred_at, received_at)
        for r in rows
    ]  # fmt: skip
    created = len(_insert_new(Impression, columns, values, returning="id"))
    return HistoryResult(created=created, duplicates=len(rows) - created)


@transaction.atomic
def matches_store_history(*, tenant: Tenant, rows: Sequence[MatchHistoryIn]) -> HistoryResult:
    """Store past matches (the pair once, in canonical order; a known pair is a duplicate)."""
    if not rows:
        return HistoryResult()
    pairs: dict[tuple[int, int], MatchHistoryIn] = {}
    for r in rows:
        pairs.setdefault(_pair(r.user_id, r.candidate_id), r)  # the first row of a pair wins
    advisory_xact_lock([lock_key("pair", *p) for p in pairs])
    received_at = timezone.now()
    values = [(tenant.pk, a, b, r.match_type, r.occurred_at, received_at) for (a, b), r in pairs.items()]
    created = len(_insert_new(Match, _MATCH_COLUMNS, values, returning="id"))
    return HistoryResult(created=created, duplicates=len(rows) - created)
