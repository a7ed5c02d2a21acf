"""Test-split metrics of a trained collaborative model, as JSON and Markdown next to it.

python manage.py evaluate [--model-path ARTIFACT_DIR_OR_model.pt] [--data var/data/splits]
"""

from __future__ import annotations

from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from recommender.training.evaluate import EvaluationError, collaborative_evaluate
from recommender.training.train import TrainingError


class Command(BaseCommand):
    help = "NDCG/precision/recall/MAP@10, hit rate, coverage and match precision on the test split."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--model-path", help="artifact folder or model.pt (default: the latest trained)")
        parser.add_argument("--data", help="split folder (default: the one the model was trained on)")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            report = collaborative_evaluate(model_path=opts["model_path"], data_dir=opts["data"])
        except (EvaluationError, TrainingError) as exc:
            raise CommandError(str(exc)) from exc
        folder = Path(report["model_path"]).parent
        self.stdout.write(
            self.style.SUCCESS(
                f"{report['model']}: ndcg@10 {report['ndcg@10']:.4f}, recall@10 {report['recall@10']:.4f}, "
                f"match precision@10 {report['match_precision@10']:.4f} over {report['users']} users; "
                f"report in {folder / 'evaluation.md'}."
            )
        )
