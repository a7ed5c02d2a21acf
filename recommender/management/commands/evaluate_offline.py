"""Fit and evaluate a collaborative model on any interaction CSV pair.

python manage.py evaluate_offline --train TRAIN.csv --test TEST.csv [--model als] [--k 10] \
    [--search-trials N] [--recs-out RECS.csv] [--json METRICS.json]

Columns: user_id,item_id[,rating,timestamp]; ids are any ints or strings. The model is trained as
``train`` trains: a schedule fitted to the data and a time-bounded search on validation rows held
out of TRAIN.csv (``recommender.training.evaluate.offline_evaluate``).
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from recommender.training.evaluate import EvaluationError, offline_evaluate
from recommender.training.train import TRAINABLE, TrainingError


class Command(BaseCommand):
    help = (
        "Train on TRAIN.csv (configuration searched on rows held out of it), recommend top-k over all train "
        "items (never a train item), score on TEST.csv."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--train", required=True)
        parser.add_argument("--test", required=True)
        parser.add_argument("--model", default="als", choices=TRAINABLE, help="default: als")
        parser.add_argument("--k", type=int, default=10)
        parser.add_argument("--recs-out", help="write user_id,rank,item_id here")
        parser.add_argument("--json", help="write the metrics here")
        parser.add_argument("--config", help="JSON file of config fields (kept as given; the search varies the rest)")
        parser.add_argument(
            "--search-trials",
            type=int,
            help="fits of the configuration search (default: ML_TRAIN_SEARCH_TRIALS; 1: the defaults only)",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            report = offline_evaluate(
                train_csv=opts["train"],
                test_csv=opts["test"],
                model=opts["model"],
                k=opts["k"],
                recs_out=opts["recs_out"],
                json_out=opts["json"],
                config_path=opts["config"],
                search_trials=opts["search_trials"],
                progress=opts["verbosity"] > 0,
            )
        except (EvaluationError, TrainingError) as exc:
            raise CommandError(str(exc)) from exc
        k = opts["k"]
        self.stdout.write(
            self.style.SUCCESS(
                f"{opts['model']}: ndcg@{k} {report[f'ndcg@{k}']:.4f}, recall@{k} {report[f'recall@{k}']:.4f}, "
                f"precision@{k} {report[f'precision@{k}']:.4f} over {report['evaluated_users']} users."
            )
        )
