"""Train a collaborative model (ALS, BPR, the popularity baseline, two-tower or GraphSAGE) on a
split export.

python manage.py train --model als --data var/data/splits [--config als.json] [--tenant default] [--no-register]

two_tower and graphsage also read the tenant's profiles and bio embeddings (side features) and
place every profile of the tenant, including those without any event yet.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from recommender.training.train import TRAINABLE, TrainingError, collaborative_train


class Command(BaseCommand):
    help = "Train with early stopping on validation NDCG@10; write the artifact and register a collaborative version."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--model", required=True, choices=TRAINABLE)
        parser.add_argument("--config", help='JSON file of config fields (e.g. {"factors": 32})')
        parser.add_argument("--data", default="var/data/splits", help="folder written by build_datasets")
        parser.add_argument("--output", help="artifact folder (default: ARTIFACT_ROOT/collaborative/<model>-<time>)")
        parser.add_argument("--tenant", help="tenant to register the version for (default: the export's, or default)")
        parser.add_argument("--no-register", action="store_true", help="write the artifact only")
        parser.add_argument(
            "--refit-all",
            action="store_true",
            help="after choosing the epochs on validation, refit on every split and save that model (for serving)",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            result = collaborative_train(
                model=opts["model"],
                data_dir=opts["data"],
                config_path=opts["config"],
                output_dir=opts["output"],
                tenant_slug=opts["tenant"],
                register=not opts["no_register"],
                created_by="command:train",
                progress=opts["verbosity"] > 0,
                refit_all=opts["refit_all"],
            )
        except TrainingError as exc:
            raise CommandError(str(exc)) from exc
        m = result.metrics
        metric = m["validation_metric"]
        registered = f"registered as version {result.version_id}" if result.version_id else "not registered"
        self.stdout.write(
            self.style.SUCCESS(
                f"Trained {m['model']} in {m['train_seconds']:.1f}s: best val_{metric} {m[f'val_{metric}']:.4f} at "
                f"epoch {m['best_epoch']} of {m['epochs_run']}; artifact {result.artifact_dir} ({registered})."
            )
        )
