"""``import_events``: an app's past impressions, swipes or matches from a CSV or Parquet file
(docs/api.md, "Onboarding an existing app"; the rules are in recommender/services/backfill.py).

Two passes: the first checks every row (nothing stored), the second stores in batches. Without
``--skip-invalid`` any bad row stores nothing (each is reported, exit status 1). Impressions and
swipes older than ``EVENT_RETENTION_DAYS`` would be deleted by the next nightly pruning: they are
refused (counted, the oldest shown, nothing stored, exit 1) unless ``--skip-expired`` drops them.
Re-importing a file stores nothing new. A swipe import ends with one Elo rebuild: history has to
be replayed in time order, which incremental updates (applying old swipes after newer live ones)
would not do; matches implied by mutual likes are created while storing, as the API creates them.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.models import Tenant
from recommender.management.import_common import (
    ErrorReport,
    add_file_arguments,
    file_and_format,
    import_tenant,
    progress,
)
from recommender.services.backfill import COLUMNS, KINDS, ChunkCheck, EventBackfill
from recommender.services.elo import elo_rebuild
from recommender.services.events import HistoryResult
from recommender.services.tabular import TabularError, read_chunks


class _Totals:
    def __init__(self) -> None:
        self.valid = self.invalid = self.expired = 0
        self.oldest: Any = None
        self.stored = HistoryResult()
        self.seconds = 0.0

    def add(self, check: ChunkCheck) -> None:
        self.valid += len(check.valid)
        self.invalid += len(check.errors)
        self.expired += check.expired
        if check.oldest_expired is not None and (self.oldest is None or check.oldest_expired < self.oldest):
            self.oldest = check.oldest_expired


class Command(BaseCommand):
    help = (
        "Import past impressions, swipes or matches (user_id and candidate_id are the app's external ids) from a "
        "CSV or Parquet file. Bad rows and impressions/swipes older than EVENT_RETENTION_DAYS are refused unless "
        "--skip-invalid / --skip-expired; re-importing stores nothing new; swipes end with an Elo rebuild."
    )

    def add_arguments(self, parser: Any) -> None:
        add_file_arguments(parser, batch_size=5_000)
        parser.add_argument("--kind", required=True, choices=KINDS, help="what the file holds")
        parser.add_argument(
            "--skip-expired",
            action="store_true",
            help="drop impressions/swipes older than EVENT_RETENTION_DAYS (counted) instead of refusing the file",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.options = options
        self.tenant: Tenant = import_tenant(options["tenant"])
        self.path: Path = options["file"]
        self.kind: str = options["kind"]
        self.fmt, self.total = file_and_format(self.path, options["format"], options["batch_size"])
        # One "now" for both passes: the retention cutoff (and the future-skew limit) must not move
        # between the check and the store, or a row accepted by the first could be dropped by the second.
        self.now = timezone.now()
        started = time.perf_counter()
        checked_first = options["dry_run"] or not (options["skip_invalid"] and options["skip_expired"])
        if checked_first:
            self._check_first()
            if options["dry_run"]:
                return
        totals = self._pass(store=True, report_path=None if checked_first else options["error_report"])
        self._report_stored(totals)
        if self.kind == "swipes" and totals.stored.created:
            self._rebuild_elo()
        seconds = time.perf_counter() - started
        self.stdout.write(f"Done in {seconds:.1f} s: {self.total / max(seconds, 1e-9):,.0f} rows/s overall.")

    def _check_first(self) -> None:
        """The checking pass: every row validated and resolved, nothing stored."""
        totals = self._pass(store=False, report_path=self.options["error_report"])
        dry = " (dry run)" if self.options["dry_run"] else ""
        self.stdout.write(
            f"Checked{dry} {self.total:,} {self.kind} rows for tenant {self.tenant.slug}: {totals.valid:,} valid, "
            f"{totals.invalid:,} invalid, {totals.expired:,} older than the retention window "
            f"({totals.seconds:.1f} s, {self.total / max(totals.seconds, 1e-9):,.0f} rows/s)."
        )
        problems = []
        if totals.invalid and not self.options["skip_invalid"]:
            problems.append(f"{totals.invalid:,} rows are invalid (listed above); pass --skip-invalid to drop them")
        if totals.expired and not self.options["skip_expired"]:
            problems.append(self._expired_message(totals))
        if problems:
            raise CommandError("Nothing was stored. " + ". ".join(problems) + ".")
        if self.options["dry_run"]:
            self.stdout.write("Dry run: nothing stored (rows already stored count as duplicates only when storing).")

    def _expired_message(self, totals: _Totals) -> str:
        days = settings.EVENT_RETENTION_DAYS
        age = math.ceil((self.now - totals.oldest).total_seconds() / 86_400) + 1
        return (
            f"{totals.expired:,} {self.kind} are older than the retention window (EVENT_RETENTION_DAYS={days}); "
            f"the oldest at {totals.oldest.isoformat()}. The nightly prune_expired_events would delete them. Pass "
            f"--skip-expired to import the rest without them, or set EVENT_RETENTION_DAYS={age} (or more) on every "
            "process first to keep them"
        )

    def _pass(self, *, store: bool, report_path: Path | None) -> _Totals:
        backfill = EventBackfill(tenant=self.tenant, kind=self.kind, now=self.now)  # one per pass
        required, optional = COLUMNS[self.kind]
        report = ErrorReport(path=report_path)
        totals = _Totals()
        started = time.perf_counter()
        bar = progress(self.total, "storing" if store else "checking", self.options["verbosity"])
        try:
            for chunk in read_chunks(self.path, fmt=self.fmt, batch_size=self.options["batch_size"],
                                     allowed=(*required, *optional), required=required):  # fmt: skip
                check = backfill.check(chunk)
                totals.add(check)
                for where, errors in check.errors:
                    report.add(where, errors)
                if store:
                    stored = backfill.store(check.valid)
                    totals.stored.created += stored.created
                    totals.stored.duplicates += stored.duplicates
                    totals.stored.matches += stored.matches
                bar.update(len(chunk))
        except TabularError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            bar.close()
            report.close()
        report.print(self.stderr, report_path)
        totals.seconds = time.perf_counter() - started
        return totals

    def _report_stored(self, totals: _Totals) -> None:
        stored = totals.stored
        dropped = []
        if totals.invalid:
            dropped.append(f"{totals.invalid:,} invalid")
        if totals.expired:
            dropped.append(f"{totals.expired:,} expired")
        line = (
            f"Imported {self.kind} into tenant {self.tenant.slug}: {self.total:,} rows, {stored.created:,} stored, "
            f"{stored.duplicates:,} duplicates (already stored)"
            + (f"; not stored: {', '.join(dropped)}" if dropped else "")
            + f" ({totals.seconds:.1f} s, {self.total / max(totals.seconds, 1e-9):,.0f} rows/s)."
        )
        self.stdout.write(line)
        if self.kind == "swipes":
            self.stdout.write(f"{stored.matches:,} matches created from mutual likes.")

    def _rebuild_elo(self) -> None:
        started = time.perf_counter()
        count = elo_rebuild(tenant=self.tenant, progress=self.options["verbosity"] > 0)
        self.stdout.write(
            f"Elo rebuilt from the whole swipe history of {self.tenant.slug} ({count:,} profiles, "
            f"{time.perf_counter() - started:.1f} s): imported swipes are replayed in time order with the rest."
        )
