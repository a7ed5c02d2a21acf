"""Split an event export into train/validation/test Parquet files (by time, or per swiper for
small and cohort-shaped tenants; ``--strategy auto`` chooses and says why).

python manage.py build_datasets --input var/data/events --output var/data/splits \
    [--split-ratio 0.8,0.1,0.1] [--strategy auto|time|per_user]
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from recommender.training.datasets import STRATEGIES, DatasetError, datasets_build, parse_ratios


class Command(BaseCommand):
    help = (
        "Train/validation/test splits recorded in split.json: by time (global cut points), per swiper (each "
        "one's latest swipes held out), or auto (time unless too few held-out swipers were seen in train)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--input", required=True, help="folder written by extract_events")
        parser.add_argument("--output", required=True, help="folder for the splits")
        parser.add_argument("--split-ratio", default="0.8,0.1,0.1", help="train,validation,test (default 0.8,0.1,0.1)")
        parser.add_argument("--strategy", choices=STRATEGIES, default="auto", help="time, per_user or auto (default)")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            split = datasets_build(
                input_dir=opts["input"],
                output_dir=opts["output"],
                ratios=parse_ratios(opts["split_ratio"]),
                strategy=opts["strategy"],
            )
        except DatasetError as exc:
            raise CommandError(str(exc)) from exc
        counts = ", ".join(f"{name} {n:,}" for name, n in split["counts"].items())
        if split["strategy"] == "time":
            cuts = split["cuts"]
            how = f"by time: validation from {cuts['validation_start']}, test from {cuts['test_start']}"
        else:
            how = "per swiper: each one's latest swipes are test, the ones before validation"
        why = f" (auto: {split['auto']['reason']})" if split["auto"] else ""
        self.stdout.write(self.style.SUCCESS(f"Split {counts} {how}{why}."))
