"""What ``import_profiles`` and ``import_events`` share: the tenant, the bad-row report, progress."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import IO, Any

from django.core.management.base import CommandError, OutputWrapper
from tqdm import tqdm

from accounts.models import Tenant
from recommender.services.tabular import FORMATS, TabularError, count_rows, detect_format, flatten_errors


def import_tenant(slug: str | None) -> Tenant:
    """The tenant to import into: ``--tenant``, or the only one there is."""
    tenants = list(Tenant.objects.order_by("slug"))
    slugs = ", ".join(t.slug for t in tenants) or "none"
    if slug is not None:
        for tenant in tenants:
            if tenant.slug == slug:
                return tenant
        raise CommandError(f"Unknown tenant {slug!r}; existing: {slugs}.")
    if len(tenants) == 1:
        return tenants[0]
    if not tenants:
        raise CommandError("No tenant exists: create one first (python manage.py create_tenant SLUG --name NAME).")
    raise CommandError(f"--tenant is required: {len(tenants)} tenants exist ({slugs}).")


def add_file_arguments(parser: Any, *, batch_size: int) -> None:
    parser.add_argument("file", type=Path, metavar="FILE", help="a .csv (or .csv.gz) or .parquet file")
    parser.add_argument("--tenant", metavar="SLUG", help="the tenant (required when several exist)")
    parser.add_argument("--format", choices=FORMATS, help="default: from the file name")
    parser.add_argument("--batch-size", type=int, default=batch_size, help=f"rows per batch (default {batch_size})")
    parser.add_argument("--dry-run", action="store_true", help="validate and count; store nothing")
    parser.add_argument("--skip-invalid", action="store_true", help="store the valid rows even if some are bad")
    parser.add_argument("--error-report", type=Path, metavar="CSV", help="write every problem (where, field, message)")


def file_and_format(path: Path, fmt: str | None, batch_size: int) -> tuple[str, int]:
    """The format and the number of data rows; CommandError when the file cannot be read."""
    if batch_size < 1:
        raise CommandError("--batch-size must be at least 1.")
    if not path.is_file():
        raise CommandError(f"No such file: {path}")
    try:
        fmt = detect_format(path, fmt)
        return fmt, count_rows(path, fmt)
    except (TabularError, OSError, UnicodeDecodeError) as exc:
        raise CommandError(str(exc)) from exc


def progress(total: int, desc: str, verbosity: int) -> tqdm:
    return tqdm(total=total, desc=desc, unit="rows", disable=verbosity < 1, dynamic_ncols=True)


class ErrorReport:
    """Bad rows: all counted, the first ``show`` problems printed after the pass (not through the
    progress bar), every one written to ``path`` as CSV (where, field, message) when given."""

    def __init__(self, *, path: Path | None, show: int = 50) -> None:
        self.rows = 0
        self.problems = 0
        self.show = show
        self.first: list[str] = []
        self._file: IO[str] | None = open(path, "w", newline="", encoding="utf-8") if path else None  # noqa: SIM115
        self._writer = csv.writer(self._file) if self._file else None
        if self._writer:
            self._writer.writerow(["where", "field", "message"])

    def add(self, where: str, errors: Any) -> None:
        self.rows += 1
        for name, message in flatten_errors(errors):
            self.problems += 1
            if len(self.first) < self.show:
                self.first.append(f"{where}: {name}: {message}")
            if self._writer:
                self._writer.writerow([where, name, message])

    def print(self, out: OutputWrapper, path: Path | None) -> None:
        for line in self.first:
            out.write(line)
        hidden = self.problems - len(self.first)
        if hidden > 0:
            where = f"all in {path}" if path else "--error-report FILE lists them all"
            out.write(f"... and {hidden:,} more problems ({where}).")

    def close(self) -> None:
        if self._file:
            self._file.close()
