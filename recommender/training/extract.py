"""Export events (swipes, impressions, matches) from the database to Parquet, pseudonymised.

Every profile id is replaced by a keyed hash of its external id: HMAC-SHA256 through
``django.utils.crypto.salted_hmac("patra.export", external_id)``, i.e. keyed by a key derived
from ``settings.SECRET_KEY`` and the salt ``patra.export``. The same profile gets the same
hash in every export of one deployment (so splits and models line up, and serving can hash a
live external id to find its row), but the hash cannot be reversed or recomputed without the
secret key. No raw id, session id, client event id or personal field is written.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from django.db.models import QuerySet
from django.utils import timezone
from tqdm import tqdm

from accounts.models import Tenant
from recommender.models import Impression, Match, Profile, Swipe
from recommender.pseudonyms import EXPORT_SALT, export_hash

MANIFEST = "manifest.json"
EVENTS_FORMAT = "patra.events/1"
CHUNK_ROWS = 50_000

TIMESTAMP = pa.timestamp("us", tz="UTC")
SWIPES_SCHEMA = pa.schema(
    [
        ("tenant", pa.string()),
        ("user", pa.string()),
        ("candidate", pa.string()),
        ("action", pa.string()),
        ("duration_ms", pa.int64()),
        ("occurred_at", TIMESTAMP),
    ]
)
IMPRESSIONS_SCHEMA = pa.schema(
    [
        ("tenant", pa.string()),
        ("user", pa.string()),
        ("candidate", pa.string()),
        ("position", pa.int64()),
        ("model_version", pa.string()),
        ("experiment_arm", pa.string()),
        ("occurred_at", TIMESTAMP),
    ]
)
MATCHES_SCHEMA = pa.schema(
    [
        ("tenant", pa.string()),
        ("user_a", pa.string()),
        ("user_b", pa.string()),
        ("match_type", pa.string()),
        ("occurred_at", TIMESTAMP),
    ]
)


def _write(
    path: Path,
    schema: pa.Schema,
    rows: Iterator[tuple[Any, ...]],
    convert: Callable[[tuple[Any, ...]], tuple[Any, ...]],
    total: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Stream ``rows`` into one Parquet file in chunks, so memory stays bounded by CHUNK_ROWS."""
    rows = tqdm(rows, total=total, desc=path.stem, unit="row", disable=not progress)
    count, first, last = 0, None, None
    buffer: list[tuple[Any, ...]] = []
    with pq.ParquetWriter(path, schema) as writer:

        def flush() -> None:
            columns: list[Any] = list(zip(*buffer, strict=True)) if buffer else [[] for _ in schema]
            writer.write_table(pa.table({f.name: pa.array(c, f.type) for f, c in zip(schema, columns, strict=True)}))
            buffer.clear()

        for row in rows:
            out = convert(row)
            buffer.append(out)
            ts = out[-1]
            first = ts if first is None or ts < first else first
            last = ts if last is None or ts > last else last
            count += 1
            if len(buffer) >= CHUNK_ROWS:
                flush()
        if buffer or count == 0:
            flush()
    return {
        "file": path.name,
        "rows": count,
        "min_occurred_at": first.isoformat() if first else None,
        "max_occurred_at": last.isoformat() if last else None,
    }


def events_extract(
    *, output_dir: Path | str, start_date: datetime, tenant: Tenant | None = None, progress: bool = False
) -> dict[str, Any]:
    """Write swipes/impressions/matches since ``start_date`` (all tenants unless ``tenant``)
    to ``output_dir`` as Parquet plus ``manifest.json``; returns the manifest."""
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    if timezone.is_naive(start_date):
        start_date = timezone.make_aware(start_date, timezone.get_default_timezone())
    tables = _event_tables(output, start_date=start_date, tenant=tenant, progress=progress)
    manifest = _manifest(tables, start_date=start_date, tenant=tenant)
    (output / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _event_tables(
    output: Path, *, start_date: datetime, tenant: Tenant | None, progress: bool
) -> dict[str, dict[str, Any]]:
    """Write the three event tables under ``output``; returns each one's entry of the manifest."""
    profiles = Profile.objects.all() if tenant is None else Profile.objects.filter(tenant=tenant)
    # One hash per profile, not per event: a few thousand HMACs instead of millions.
    pseudonym = {pk: export_hash(ext) for pk, ext in profiles.values_list("id", "external_id").iterator(10_000)}
    slugs = dict(Tenant.objects.values_list("id", "slug"))

    def scoped(qs: QuerySet[Any]) -> QuerySet[Any]:
        qs = qs.filter(occurred_at__gte=start_date)
        return qs if tenant is None else qs.filter(tenant=tenant)

    swipes = scoped(Swipe.objects.all()).order_by("occurred_at", "id")
    impressions = scoped(Impression.objects.all()).order_by("occurred_at", "id")
    matches = scoped(Match.objects.all()).order_by("occurred_at", "id")
    tables = {
        "swipes": _write(
            output / "swipes.parquet",
            SWIPES_SCHEMA,
            swipes.values_list("tenant_id", "user_id", "candidate_id", "action", "duration_ms", "occurred_at").iterator(
                CHUNK_ROWS
            ),
            lambda r: (slugs[r[0]], pseudonym[r[1]], pseudonym[r[2]], r[3], r[4], r[5]),
            total=swipes.count() if progress else None,
            progress=progress,
        ),
        "impressions": _write(
            output / "impressions.parquet",
            IMPRESSIONS_SCHEMA,
            impressions.values_list(
                "tenant_id", "user_id", "candidate_id", "position", "model_version", "experiment_arm", "occurred_at"
            ).iterator(CHUNK_ROWS),
            lambda r: (slugs[r[0]], pseudonym[r[1]], pseudonym[r[2]], r[3], r[4], r[5], r[6]),
            total=impressions.count() if progress else None,
            progress=progress,
        ),
        "matches": _write(
            output / "matches.parquet",
            MATCHES_SCHEMA,
            matches.values_list("tenant_id", "user_a_id", "user_b_id", "match_type", "occurred_at").iterator(
                CHUNK_ROWS
            ),
            lambda r: (slugs[r[0]], pseudonym[r[1]], pseudonym[r[2]], r[3], r[4]),
            total=matches.count() if progress else None,
            progress=progress,
        ),
    }
    return tables


def _manifest(tables: dict[str, dict[str, Any]], *, start_date: datetime, tenant: Tenant | None) -> dict[str, Any]:
    """The extract's ``manifest.json``: its format, scope, pseudonyms and the time the tables span."""
    starts = [t["min_occurred_at"] for t in tables.values() if t["min_occurred_at"]]
    ends = [t["max_occurred_at"] for t in tables.values() if t["max_occurred_at"]]
    manifest = {
        "format": EVENTS_FORMAT,
        "created_at": timezone.now().isoformat(),
        "tenant": tenant.slug if tenant else None,
        "start_date": start_date.isoformat(),
        "id_hashing": (
            "HMAC-SHA256 of the profile external id, django.utils.crypto.salted_hmac("
            f"key_salt={EXPORT_SALT!r}), keyed by settings.SECRET_KEY"
        ),
        "tables": tables,
        "time_range": {"start": min(starts) if starts else None, "end": max(ends) if ends else None},
    }
    return manifest
