"""Split an event export into time-ordered train/validation/test Parquet files.

python manage.py build_datasets --input var/data/events --output var/data/splits --split-ratio 0.8,0.1,0.1
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from recommender.training.datasets import DatasetError, datasets_build, parse_ratios


class Command(BaseCommand):
    help = "Time-ordered train/validation/test splits (global cut points), recorded in split.json."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--input", required=True, help="folder written by extract_events")
        parser.add_argument("--output", required=True, help="folder for the splits")
        parser.add_argument("--split-ratio", default="0.8,0.1,0.1", help="train,validation,test (default 0.8,0.1,0.1)")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            split = datasets_build(
                input_dir=opts["input"], output_dir=opts["output"], ratios=parse_ratios(opts["split_ratio"])
            )
        except DatasetError as exc:
            raise CommandError(str(exc)) from exc
        counts = ", ".join(f"{name} {n:,}" for name, n in split["counts"].items())
        self.stdout.write(
            self.style.SUCCESS(
                f"Split {counts}; validation from {split['cuts']['validation_start']}, "
                f"test from {split['cuts']['test_start']}."
            )
        )
