"""python manage.py load_synthetic --profiles 1000000 --swipes 2000000 [--tenant SLUG] [--embeddings synthetic]

A synthetic population with a simulated history, loaded with PostgreSQL COPY (``bulk_create``
on SQLite); see recommender/services/bulk_load.py for what is generated and how.
"""

from __future__ import annotations

import json
import resource
import time
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from accounts.models import Tenant
from recommender.models import Profile
from recommender.services.bulk_load import result_dict, synthetic_population_load
from recommender.simulation import read_okcupid
from recommender.simulation.okcupid import source_paths


class Command(BaseCommand):
    help = "Generate a synthetic population with simulated swipes and load it in bulk (COPY on PostgreSQL)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--profiles", type=int, required=True, help="number of profiles")
        parser.add_argument("--swipes", type=int, default=None, help="history swipes (default: 2 per profile)")
        parser.add_argument("--tenant", default="synthetic", help="tenant slug, created if missing; must be empty")
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument(
            "--embeddings",
            choices=("none", "synthetic"),
            default="none",
            help="synthetic: random topic vectors so build_index needs no encoder (for 10^5+ profiles)",
        )
        parser.add_argument("--okcupid-dir", type=Path, default=None, help="bootstrap from the full OkCupid files")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["profiles"] < 1:
            raise CommandError("--profiles must be at least 1.")
        swipes = 2 * opts["profiles"] if opts["swipes"] is None else opts["swipes"]
        tenant, _ = Tenant.objects.get_or_create(slug=opts["tenant"], defaults={"name": opts["tenant"]})
        if Profile.objects.filter(tenant=tenant).exists():
            raise CommandError(f"Tenant {tenant.slug!r} already has profiles; choose another --tenant.")
        source = None
        if opts["okcupid_dir"]:
            paths = source_paths(opts["okcupid_dir"])
            if not all(Path(p).exists() for p in paths):
                raise CommandError(f"{paths[0]} not found.")
            source = read_okcupid(*paths)
        bars: dict[str, tqdm] = {}
        quiet = opts["verbosity"] == 0

        def progress(step: str, done: int, total: int) -> None:
            bar = bars.get(step)
            if bar is None:
                bar = bars[step] = tqdm(total=total, desc=step, unit="row", disable=quiet, leave=True)
            bar.update(done - bar.n)
            if done >= total:
                bar.close()

        started = time.perf_counter()
        result = synthetic_population_load(
            tenant=tenant,
            profiles=opts["profiles"],
            swipes=swipes,
            seed=opts["seed"],
            source=source,
            embeddings=opts["embeddings"],
            progress=progress,
        )
        summary = {
            **result_dict(result),
            "tenant": tenant.slug,
            "total_seconds": round(time.perf_counter() - started, 1),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
        self.stdout.write(json.dumps(summary))
