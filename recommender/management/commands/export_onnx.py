"""Export a ranker version to ONNX, check it against LightGBM and register it.

python manage.py export_onnx [--tenant default] [--model-version UUID] [--output DIR] [--no-register]

Without --model-version the tenant's active ranker is exported. The ONNX scores are compared with
LightGBM's on the check rows stored with the ranker (max abs difference must be below 1e-4);
the folder (the LightGBM files plus ``ranker.onnx``) is registered as a new ``ranker`` version
with ``parameters.format = "onnx"`` (activate it like any version). ``--output`` also keeps a copy.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from recommender.models import DEFAULT_TENANT_SLUG, Tenant
from recommender.training.ranker import RankerTrainingError, ranker_export_onnx


class Command(BaseCommand):
    help = "Export a ranker version to ONNX (scores checked against LightGBM) and register it."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--tenant", default=DEFAULT_TENANT_SLUG)
        parser.add_argument("--model-version", help="ranker version id (default: the active ranker)")
        parser.add_argument("--output", help="also write the exported folder here")
        parser.add_argument("--no-register", action="store_true", help="write --output only")

    def handle(self, *args: Any, **opts: Any) -> None:
        tenant = Tenant.objects.filter(slug=opts["tenant"]).first()
        if tenant is None:
            raise CommandError(f"unknown tenant {opts['tenant']!r}")
        if opts["no_register"] and not opts["output"]:
            raise CommandError("--no-register needs --output (otherwise nothing is kept)")
        try:
            result = ranker_export_onnx(
                tenant=tenant, version_id=opts["model_version"], output_dir=opts["output"],
                register=not opts["no_register"], created_by="command:export_onnx",
            )  # fmt: skip
        except RankerTrainingError as exc:
            raise CommandError(str(exc)) from exc
        registered = f"registered as version {result.version_id}" if result.version_id else "not registered"
        self.stdout.write(
            self.style.SUCCESS(
                f"Exported ONNX: max |onnx - lightgbm| {result.metrics['onnx_max_abs_diff']:.2e} on "
                f"{result.metrics['onnx_check_rows']} rows; {registered}."
            )
        )
