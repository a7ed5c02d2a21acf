"""Train a collaborative model (ALS, BPR, LMF, the popularity baseline, two-tower or GraphSAGE) on a
split export.

python manage.py train --model als --data var/data/splits [--config als.json] [--tenant default]
                       [--no-register] [--no-refit-all] [--search-trials N] [--no-fusion] [--json]

With the defaults the schedule adapts to the data, a bounded search picks the configuration on
validation, the result is judged on test against the popularity x pickiness baseline, the learned
fusion of the feed's signals is fitted, and the model served is refitted on every split
(``recommender.training.train.collaborative_train``).

two_tower and graphsage also read the tenant's profiles and bio embeddings (side features) and
place every profile of the tenant, including those without any event yet.

The version is registered for ``--tenant``, else the tenant the export was made for
(``extract_events --tenant``, recorded in its manifest); with several tenants and neither, the
command refuses rather than register to a tenant the data may not be from. The first
``collaborative`` version of a tenant is activated automatically; later ones need
``activate_model``.
"""

from __future__ import annotations

import json
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from recommender.training.train import TRAINABLE, TrainingError, collaborative_train
from registry.cli import (
    AUTO_ACTIVATION_HELP,
    add_json_argument,
    dumps,
    registration_text,
    stdout_kept_for_json,
    tenant_by_slug,
    tenant_or_only_one,
    version_summary,
)
from registry.models import ModelType


class Command(BaseCommand):
    help = (
        "Train with early stopping on validation NDCG@10 (lmf: like AUC); write the artifact and register a "
        f"collaborative version. {AUTO_ACTIVATION_HELP}"
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--model", required=True, choices=TRAINABLE)
        parser.add_argument("--config", help='JSON file of config fields (e.g. {"factors": 32})')
        parser.add_argument("--data", default="var/data/splits", help="folder written by build_datasets")
        parser.add_argument("--output", help="artifact folder (default: ARTIFACT_ROOT/collaborative/<model>-<time>)")
        parser.add_argument(
            "--tenant",
            help="tenant to register the version for (default: the export's; required with several tenants otherwise)",
        )
        parser.add_argument("--no-register", action="store_true", help="write the artifact only")
        parser.add_argument(
            "--no-refit-all",
            dest="refit_all",
            action="store_false",
            help="save the model fitted on the train split only (default: refit on every split, for serving)",
        )
        parser.add_argument(
            "--refit-all",
            dest="refit_all",
            action="store_true",
            help="(the default) refit on every split with the chosen configuration and save that model",
        )
        parser.add_argument(
            "--search-trials",
            type=int,
            help="fits of the configuration search (default ML_TRAIN_SEARCH_TRIALS; 1: the defaults only)",
        )
        parser.add_argument(
            "--no-fusion",
            dest="learn_fusion",
            action="store_false",
            help="do not fit the learned fusion of the feed's signals (the hand-set weights then pool the model)",
        )
        add_json_argument(parser)

    def handle(self, *args: Any, **opts: Any) -> None:
        tenant_slug = None if opts["no_register"] else _registration_tenant(opts["tenant"], opts["data"])
        with stdout_kept_for_json(opts["json"]):
            try:
                result = collaborative_train(
                    model=opts["model"],
                    data_dir=opts["data"],
                    config_path=opts["config"],
                    output_dir=opts["output"],
                    tenant_slug=tenant_slug,
                    register=not opts["no_register"],
                    created_by="command:train",
                    progress=opts["verbosity"] > 0,
                    refit_all=opts["refit_all"],
                    search_trials=opts["search_trials"],
                    learn_fusion=opts["learn_fusion"],
                )
            except TrainingError as exc:
                raise CommandError(str(exc)) from exc
        summary = version_summary(
            model_type=ModelType.COLLABORATIVE,
            version_id=result.version_id,
            metrics=result.metrics,
            artifact_path=result.artifact_dir,
        )
        if opts["json"]:
            self.stdout.write(dumps(summary))
            return
        m = result.metrics
        metric = m["validation_metric"]
        self.stdout.write(
            self.style.SUCCESS(
                f"Trained {m['model']} in {m['train_seconds']:.1f}s: best val_{metric} {m[f'val_{metric}']:.4f} at "
                f"epoch {m['best_epoch']} of {m['epochs_run']}; artifact {result.artifact_dir}; "
                f"{registration_text(summary)}."
            )
        )


def _registration_tenant(slug: str | None, data_dir: str) -> str:
    """The slug to register for: ``--tenant``, else the export's tenant, else the only tenant."""
    if slug:
        return tenant_by_slug(slug).slug
    manifest = Path(data_dir) / "events_manifest.json"
    try:
        exported_for = json.loads(manifest.read_text()).get("tenant") if manifest.exists() else None
    except (OSError, ValueError):
        exported_for = None
    if exported_for:
        return tenant_by_slug(exported_for).slug
    why = f"{data_dir} does not say which tenant its events are from (an export made without --tenant)"
    return tenant_or_only_one(None, why=why).slug
