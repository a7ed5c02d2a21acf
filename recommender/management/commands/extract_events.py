"""Export events since a date to Parquet with pseudonymised profile ids.

python manage.py extract_events --output var/data/events --start-date 2024-01-01 [--tenant default]
"""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from recommender.models import Tenant
from recommender.training.extract import events_extract
from recommender.training.tasks import parse_start


class Command(BaseCommand):
    help = "Export swipes, impressions and matches to Parquet (ids replaced by keyed hashes) plus a manifest."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--output", required=True, help="folder to write (created if missing)")
        parser.add_argument("--start-date", required=True, help="first day (YYYY-MM-DD) or ISO datetime")
        parser.add_argument("--tenant", help="tenant slug (default: every tenant)")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            start = parse_start(opts["start_date"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        tenant = None
        if opts["tenant"]:
            tenant = Tenant.objects.filter(slug=opts["tenant"]).first()
            if tenant is None:
                raise CommandError(f"No tenant {opts['tenant']!r}.")
        manifest = events_extract(
            output_dir=opts["output"], start_date=start, tenant=tenant, progress=opts["verbosity"] > 0
        )
        counts = ", ".join(f"{name} {t['rows']:,}" for name, t in manifest["tables"].items())
        self.stdout.write(self.style.SUCCESS(f"Exported {counts} to {opts['output']}."))
        if opts["verbosity"] > 1:
            self.stdout.write(json.dumps(manifest, indent=2))
