"""Transaction-scoped locks that serialise work on one key across processes and machines.

On PostgreSQL these are advisory locks held until the transaction ends. SQLite needs none: its
transactions start IMMEDIATE (see settings), so writers are already serialised.
"""

from __future__ import annotations

import hashlib

from django.db import connection


def lock_key(*parts: object) -> int:
    """A signed 64-bit key for pg_advisory_xact_lock from any parts."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def advisory_xact_lock(keys: list[int]) -> None:
    """Take every lock in ``keys`` for the rest of the transaction, in sorted order so that two
    transactions asking for overlapping sets cannot deadlock."""
    if connection.vendor != "postgresql" or not keys:
        return
    ordered = sorted(set(keys))
    with connection.cursor() as cursor:
        if len(ordered) == 1:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", ordered)
            return
        # One round trip for the whole set (a swipe batch takes ~20 pair locks). The subquery's
        # ORDER BY with OFFSET 0 is not flattened, so the locks are taken in sorted order.
        cursor.execute(
            "SELECT count(pg_advisory_xact_lock(k)) FROM "
            "(SELECT k FROM unnest(%s::bigint[]) AS k ORDER BY k OFFSET 0) AS ordered_keys",
            [ordered],
        )
