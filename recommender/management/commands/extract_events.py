"""Export one tenant's events since a date to Parquet with pseudonymised profile ids.

python manage.py extract_events --output var/data/events --start-date 2024-01-01 [--tenant default]

``--tenant`` may be left out only while there is one tenant: an export mixing tenants would train
one tenant's model on another's users (and ``train`` registers for the tenant the manifest names).
"""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from recommender.training.extract import events_extract
from recommender.training.options import parse_start
from registry.cli import tenant_or_only_one


class Command(BaseCommand):
    help = (
        "Export a tenant's swipes, impressions and matches to Parquet (ids replaced by keyed hashes) plus a "
        "manifest naming the tenant. --tenant is required when several tenants exist."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--output", required=True, help="folder to write (created if missing)")
        parser.add_argument("--start-date", required=True, help="first day (YYYY-MM-DD) or ISO datetime")
        parser.add_argument("--tenant", help="tenant slug (required when several tenants exist; default: the only one)")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            start = parse_start(opts["start_date"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        tenant = tenant_or_only_one(
            opts["tenant"], why="an export is one tenant's events, and train registers its model for that tenant"
        )
        manifest = events_extract(
            output_dir=opts["output"], start_date=start, tenant=tenant, progress=opts["verbosity"] > 0
        )
        counts = ", ".join(f"{name} {t['rows']:,}" for name, t in manifest["tables"].items())
        self.stdout.write(self.style.SUCCESS(f"Exported {tenant.slug}'s {counts} to {opts['output']}."))
        if opts["verbosity"] > 1:
            self.stdout.write(json.dumps(manifest, indent=2))
