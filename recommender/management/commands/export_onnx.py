"""Export a ranker version to ONNX, check it against LightGBM and register it.

python manage.py export_onnx [--tenant default] [--model-version UUID|LABEL] [--output DIR] [--no-register] [--json]

Without --model-version the tenant's active ranker is exported. The ONNX scores are compared with
LightGBM's on the check rows stored with the ranker (max abs difference must be below 1e-4);
the folder (the LightGBM files plus ``ranker.onnx``) is registered as a new ``ranker`` version
with ``parameters.format = "onnx"`` (activate it like any version: it is only ``ready``, unless it
is the tenant's first ranker version). ``--output`` also keeps a copy.
"""

from __future__ import annotations

import uuid
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts.models import DEFAULT_TENANT_SLUG, Tenant
from recommender.training.ranker import RankerTrainingError, ranker_export_onnx
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
from registry.selectors import parse_version_label, version_by_label


class Command(BaseCommand):
    help = f"Export a ranker version to ONNX (scores checked against LightGBM) and register it. {AUTO_ACTIVATION_HELP}"

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--tenant", default=DEFAULT_TENANT_SLUG)
        parser.add_argument(
            "--model-version", help="ranker version id or label, e.g. ranker-v2 (default: the active ranker)"
        )
        parser.add_argument("--output", help="also write the exported folder here")
        parser.add_argument("--no-register", action="store_true", help="write --output only")
        add_json_argument(parser)

    def handle(self, *args: Any, **opts: Any) -> None:
        tenant = tenant_by_slug(opts["tenant"])
        if opts["no_register"] and not opts["output"]:
            raise CommandError("--no-register needs --output (otherwise nothing is kept)")
        with stdout_kept_for_json(opts["json"]):
            try:
                result = ranker_export_onnx(
                    tenant=tenant, version_id=_version_id(tenant, opts["model_version"]), output_dir=opts["output"],
                    register=not opts["no_register"], created_by="command:export_onnx",
                )  # fmt: skip
            except RankerTrainingError as exc:
                raise CommandError(str(exc)) from exc
        summary = version_summary(
            model_type=ModelType.RANKER,
            version_id=result.version_id,
            metrics=result.metrics,
            artifact_path=opts["output"],
        )
        if opts["json"]:
            self.stdout.write(dumps(summary))
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Exported ONNX: max |onnx - lightgbm| {result.metrics['onnx_max_abs_diff']:.2e} on "
                f"{result.metrics['onnx_check_rows']} rows; {registration_text(summary)}."
            )
        )


def _version_id(tenant: Tenant, given: str | None) -> str | None:
    """The id of ``--model-version``, given as an id or as a label of the tenant (``ranker-v2``)."""
    if not given:
        return None
    if parse_version_label(given) is None:
        try:
            return str(uuid.UUID(given))
        except ValueError:
            raise CommandError(f"--model-version {given!r} is neither a version id nor a label (ranker-v2).") from None
    version = version_by_label(tenant=tenant, label=given)
    if version is None:
        raise CommandError(f"Tenant {tenant.slug} has no version {given}.")
    return str(version.pk)
