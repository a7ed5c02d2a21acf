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
    with connection.cursor() as cursor:
        for key in sorted(set(keys)):
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])
