"""Train the LightGBM LambdaMART ranker from impressions and the swipes that followed them.

python manage.py train_ranker [--tenant default] [--since 2024-01-01] [--groups impressions|pools]
                              [--config ranker.json] [--output DIR] [--no-register] [--json]

Model scores come from the tenant's active collaborative version; the folder (ranker.txt,
ranker.json, check.npy) is registered as a ``ranker`` version. ``--groups`` picks the query
groups (``recommender/training/ranker.py`` explains both): ``impressions`` (default) re-orders
past feeds' impressions by the swipes that followed; ``pools`` ranks what the feed would have
pooled at past cuts of the history, labelled by the likes that followed (bench.deep's stack).
The tenant's first ranker version is activated automatically; later ones need ``activate_model``.
"""

from __future__ import annotations

import json
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.models import DEFAULT_TENANT_SLUG
from recommender.ml.ranker import RankerConfig
from recommender.training.options import GROUP_KINDS, parse_start
from recommender.training.ranker import RankerTrainingError, ranker_train
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


class Command(BaseCommand):
    help = (
        "Train the LightGBM ranker on the tenant's impressions and swipes; register a ranker version. "
        f"{AUTO_ACTIVATION_HELP}"
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--tenant", default=DEFAULT_TENANT_SLUG)
        parser.add_argument("--since", help="only impressions (or swipes, for pools) from this date or datetime on")
        parser.add_argument(
            "--groups", choices=GROUP_KINDS, default="impressions", help="query groups: past impressions or pools"
        )
        parser.add_argument("--config", help='JSON file of RankerConfig fields (e.g. {"num_leaves": 15})')
        parser.add_argument("--output", help="artifact folder (default: ARTIFACT_ROOT/ranker/lightgbm-<time>-<tenant>)")
        parser.add_argument("--no-register", action="store_true", help="write the artifact only")
        add_json_argument(parser)

    def handle(self, *args: Any, **opts: Any) -> None:
        tenant = tenant_by_slug(opts["tenant"])
        try:
            values = json.loads(Path(opts["config"]).read_text()) if opts["config"] else {}
            config = RankerConfig(**values)
        except (OSError, ValueError, TypeError) as exc:
            raise CommandError(f"bad --config: {exc}") from exc
        since = None
        if opts["since"]:
            since = parse_start(opts["since"])
            since = timezone.make_aware(since) if timezone.is_naive(since) else since
        with stdout_kept_for_json(opts["json"]):
            try:
                result = ranker_train(
                    tenant=tenant, since=since, groups=opts["groups"], config=config, output_dir=opts["output"],
                    register=not opts["no_register"], created_by="command:train_ranker",
                    progress=opts["verbosity"] > 0,
                )  # fmt: skip
            except RankerTrainingError as exc:
                raise CommandError(str(exc)) from exc
        summary = version_summary(
            model_type=ModelType.RANKER,
            version_id=result.version_id,
            metrics=result.metrics,
            artifact_path=result.artifact_dir,
        )
        if opts["json"]:
            self.stdout.write(dumps(summary))
            return
        m = result.metrics
        self.stdout.write(
            self.style.SUCCESS(
                f"Trained the ranker on {m['groups']} {m['groups_from']} groups in {m['train_seconds']:.1f}s: "
                f"val ndcg@10 "
                f"{m.get('val_ndcg@10', float('nan')):.4f} at {m['best_iteration']} trees; artifact "
                f"{result.artifact_dir}; {registration_text(summary)}."
            )
        )
