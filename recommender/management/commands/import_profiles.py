"""``import_profiles``: an existing app's profiles from a CSV or Parquet file (docs/api.md,
"Onboarding an existing app").

Columns are the API's profile fields (``POST /internal/v1/profiles``), plus the lifestyle
attributes as their own columns if you like; each row is validated exactly as the API validates a
profile. By default a file with any bad row stores nothing: every bad row is reported (where,
field, message) and the command exits non-zero, so a fixed file can simply be imported again.
``--skip-invalid`` stores the valid rows and reports the rest. Rows are stored in batches (one
transaction each); a re-run skips the profiles that exist (``--update-existing`` updates them
with the columns given). The derived work (embeddings, safety classification) is enqueued once
the rows are stored, in batches; then build the index.
"""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Tenant
from recommender.management.import_common import (
    ErrorReport,
    add_file_arguments,
    file_and_format,
    import_tenant,
    progress,
)
from recommender.services.derived import DERIVED_CHUNK_SIZE, profiles_derived_enqueue
from recommender.services.imports import (
    PROFILE_COLUMNS,
    PROFILE_REQUIRED_COLUMNS,
    OnExisting,
    ProfileBatchPlan,
    profile_item_from_row,
    profiles_batch_check,
    profiles_batch_import,
)
from recommender.services.tabular import Row, TabularError, read_chunks


class Command(BaseCommand):
    help = (
        "Import profiles from a CSV or Parquet file whose columns are the API's profile fields. Bad rows are "
        "reported and, without --skip-invalid, nothing is stored; existing profiles are skipped (or updated with "
        "--update-existing). Embeddings and safety classification are enqueued afterwards, in batches."
    )

    def add_arguments(self, parser: Any) -> None:
        add_file_arguments(parser, batch_size=500)
        parser.add_argument(
            "--update-existing",
            action="store_true",
            help="update profiles that exist with the columns given (default: skip them)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = import_tenant(options["tenant"])
        path: Path = options["file"]
        fmt, total = file_and_format(path, options["format"], options["batch_size"])
        self.job = _Job(tenant=tenant, path=path, fmt=fmt, total=total, options=options)
        checked_first = options["dry_run"] or not options["skip_invalid"]
        if checked_first:
            self._check_first()
            if options["dry_run"]:
                return
        # The validation pass, when there was one, already wrote the error report.
        counts, ids = self._run(store=True, report_path=None if checked_first else options["error_report"])
        self._summary(counts, stored=True)
        self._enqueue(ids)

    def _check_first(self) -> None:
        """The validation pass: every row checked, nothing stored."""
        job = self.job
        counts, _ids = self._run(store=False, report_path=job.options["error_report"])
        self._summary(counts, stored=False)
        if counts["error"] and not job.options["skip_invalid"]:
            raise CommandError(
                f"{counts['error']:,} of {job.total:,} rows are invalid (listed above); nothing was stored. "
                "Fix them and import again, or pass --skip-invalid to store the valid rows."
            )

    def _run(self, *, store: bool, report_path: Path | None) -> tuple[Counter[str], list[int]]:
        job = self.job
        report = ErrorReport(path=report_path)
        bar = progress(job.total, "storing" if store else "checking", job.options["verbosity"])
        counts: Counter[str] = Counter()
        ids: list[int] = []
        seen: dict[uuid.UUID, str] = {}  # external id -> where first given, across batches
        try:
            for chunk in read_chunks(
                job.path, fmt=job.fmt, batch_size=job.options["batch_size"], allowed=PROFILE_COLUMNS,
                required=job.required,
            ):  # fmt: skip
                self._chunk(chunk, seen=seen, counts=counts, ids=ids, report=report, store=store)
                bar.update(len(chunk))
        except TabularError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            bar.close()
            report.close()
        report.print(self.stderr, report_path)
        return counts, ids

    def _chunk(
        self, chunk: list[Row], *, seen: dict[uuid.UUID, str], counts: Counter[str], ids: list[int],
        report: ErrorReport, store: bool,
    ) -> None:  # fmt: skip
        """Check (and store) one batch of rows; count and report each row, in file order."""
        items, labels = [], []
        unreadable: dict[str, Any] = {}  # where -> the cells that could not be read
        for row in chunk:
            item, cells = profile_item_from_row(row.values)
            if row.problem or cells:
                unreadable[row.where] = {"row": [row.problem]} if row.problem else cells
            else:
                items.append(item)
                labels.append(row.where)
        outcomes = iter(self._batch(items, labels, seen, store=store, ids=ids).outcomes)
        for row in chunk:
            errors: Any = unreadable.get(row.where)
            if errors is None:
                outcome = next(outcomes)
                counts[outcome.status] += 1
                errors = outcome.errors
                if outcome.external_id is not None:
                    seen.setdefault(uuid.UUID(outcome.external_id), row.where)
            else:
                counts["error"] += 1
            if errors:
                report.add(row.where, errors)

    def _batch(
        self, items: list[Any], labels: list[str], seen: dict[uuid.UUID, str], *, store: bool, ids: list[int]
    ) -> ProfileBatchPlan:
        job = self.job
        if not store:
            return profiles_batch_check(tenant=job.tenant, items=items, on_existing=job.on_existing, seen=seen,
                                        labels=labels)  # fmt: skip
        result = profiles_batch_import(
            tenant=job.tenant, items=items, mode="per_item", on_existing=job.on_existing, seen=seen, labels=labels,
            enqueue=False,
        )  # fmt: skip
        ids.extend(result.profile_ids)
        return result.plan

    def _summary(self, counts: Counter[str], *, stored: bool) -> None:
        job = self.job
        existing = counts["updated"] + counts["skipped"]
        if stored:
            head = f"Imported into tenant {job.tenant.slug}"
            what = f"{counts['created']:,} created, {existing:,} existing " + (
                "updated" if job.on_existing == "update" else "skipped"
            )
        else:
            head = f"Checked{' (dry run)' if job.options['dry_run'] else ''} for tenant {job.tenant.slug}"
            what = f"{counts['created']:,} new, {existing:,} existing (would be " + (
                "updated)" if job.on_existing == "update" else "skipped)"
            )
        invalid = f"{counts['error']:,} invalid" + (" (not stored)" if stored and counts["error"] else "")
        self.stdout.write(f"{head}: {job.total:,} rows; {what}, {invalid}.")

    def _enqueue(self, ids: list[int]) -> None:
        """The derived work of every stored profile, in batches of DERIVED_CHUNK_SIZE."""
        job = self.job
        if not ids:
            self.stdout.write("Nothing new to embed or classify.")
        else:
            chunks = [ids[i : i + DERIVED_CHUNK_SIZE] for i in range(0, len(ids), DERIVED_CHUNK_SIZE)]
            bar = progress(len(ids), "embeddings and safety", job.options["verbosity"])
            embedding = safety = 0
            eager = False
            for chunk in chunks:  # outside a transaction: each is enqueued (or, eager, run) now
                work = profiles_derived_enqueue(profile_ids=chunk, chunk_size=DERIVED_CHUNK_SIZE)
                embedding, safety, eager = embedding + work.embedding_tasks, safety + work.safety_tasks, work.eager
                bar.update(len(chunk))
            bar.close()
            how = "ran in this process (embedded mode: eager Celery)" if eager else "enqueued"
            self.stdout.write(
                f"Derived work for {len(ids):,} profiles {how}: {embedding} embedding tasks (queue embeddings), "
                f"{safety} safety classification tasks (queue safety), up to {DERIVED_CHUNK_SIZE} profiles each."
            )
        self.stdout.write(f"Next, build the index: python manage.py build_index --tenant {job.tenant.slug}")


class _Job:
    def __init__(self, *, tenant: Tenant, path: Path, fmt: str, total: int, options: dict[str, Any]) -> None:
        self.tenant, self.path, self.fmt, self.total, self.options = tenant, path, fmt, total, options
        self.on_existing: OnExisting = "update" if options["update_existing"] else "skip"
        # An update needs only the id; a file of new profiles needs every required field.
        self.required = ("external_id",) if options["update_existing"] else PROFILE_REQUIRED_COLUMNS
