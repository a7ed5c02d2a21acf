"""Retrain the safety text heads and register a ``safety`` version.

python manage.py train_safety [--tenant default] [--no-decisions] [--no-register] [--limit N] [--json]

The tenant's first safety version is activated automatically; later ones need ``activate_model``.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from accounts.models import DEFAULT_TENANT_SLUG
from registry.cli import (
    AUTO_ACTIVATION_HELP,
    add_json_argument,
    dumps,
    registration_text,
    stdout_kept_for_json,
    tenant_by_slug,
    version_summary,
)
from registry.models import ModelType
from safety.training import train_and_register


class Command(BaseCommand):
    help = (
        "Train the safety text heads on the public sets (+ moderator decisions) and register a 'safety' version. "
        f"{AUTO_ACTIVATION_HELP}"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", default=DEFAULT_TENANT_SLUG, help="tenant slug (decisions and registry slot)")
        parser.add_argument("--no-decisions", action="store_true", help="public data only")
        parser.add_argument("--no-register", action="store_true", help="write the local checkpoint only")
        parser.add_argument("--limit", type=int, default=None, help="first N rows of each set (smoke runs)")
        parser.add_argument("--max-train", type=int, default=None, help="first N training rows of each set")
        parser.add_argument("--c-grid", default="", help="comma-separated C values to try (default: 1,4,16)")
        parser.add_argument("--no-progress", action="store_true")
        add_json_argument(parser)

    def handle(self, *args: Any, **opts: Any) -> None:
        tenant = tenant_by_slug(opts["tenant"])
        as_json = opts["json"]
        # The training log is for people: on stdout normally, on stderr when stdout carries the JSON.
        log = self.stderr if as_json else self.stdout
        with stdout_kept_for_json(as_json):
            result = train_and_register(
                tenant=tenant,
                include_decisions=not opts["no_decisions"],
                register=not opts["no_register"],
                limit=opts["limit"],
                max_train=opts["max_train"],
                c_grid=tuple(float(c) for c in opts["c_grid"].split(",")) if opts["c_grid"] else None,
                progress=not opts["no_progress"],
                log=lambda m: log.write(m),
            )
        summary = version_summary(
            model_type=ModelType.SAFETY,
            version_id=result.version_id,
            metrics=result.metrics,
            artifact_path=result.checkpoint_dir,
        )
        if as_json:
            self.stdout.write(dumps(summary))
            return
        scalars = {k: v for k, v in result.metrics.items() if k != "curves"}
        self.stdout.write(json.dumps(scalars, indent=2))
        self.stdout.write(self.style.SUCCESS(f"{registration_text(summary)}; local checkpoint {result.checkpoint_dir}"))
