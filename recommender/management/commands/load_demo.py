"""Load the OkCupid demo population and simulate a realistic swipe history.

python manage.py load_demo                   # the vendored 3,000-profile CC0 sample
python manage.py load_demo --full DIR        # all 59,946 profiles from the authors' files in DIR
python manage.py load_demo --swipes 20000    # a shorter history
"""

from __future__ import annotations

import os
from argparse import ArgumentParser
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count
from django.utils import timezone
from tqdm import tqdm

from accounts.groups import ML_ADMINS, MODERATORS
from accounts.models import Tenant
from recommender.models import Impression, Match, Profile, Swipe
from recommender.services.simulation import population_load, sessions_replay
from recommender.simulation import SwipeSimulator, build_population, load_sample, read_okcupid
from recommender.simulation.okcupid import source_paths

DEMO_USERS = (("admin", None), ("moderator", MODERATORS), ("mladmin", ML_ADMINS))


class Command(BaseCommand):
    help = "Load the OkCupid demo population and simulate its swipe history (impressions, swipes, matches)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--tenant", default="default", help="tenant slug (default: default)")
        parser.add_argument(
            "--full",
            metavar="DIR",
            help="load all 59,946 profiles from DIR holding profiles_revised.csv.zip and "
            "essay0_revised_and_shuffled.csv.gz (e.g. ../shared/datasets/okcupid)",
        )
        parser.add_argument("--limit", type=int, help="load only the first N profiles")
        parser.add_argument("--swipes", type=int, default=100_000, help="swipes to simulate (default 100,000)")
        parser.add_argument("--days", type=int, default=30, help="days of history, ending now (default 30)")
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--if-empty", action="store_true", help="do nothing if the tenant has profiles already")
        parser.add_argument("--no-users", action="store_true", help="do not create the demo staff users")

    def handle(self, *args: Any, **opts: Any) -> None:
        tenant = Tenant.objects.filter(slug=opts["tenant"]).first()
        if tenant is None:
            raise CommandError(f"No tenant {opts['tenant']!r}; create it with manage.py create_tenant.")
        if Profile.objects.filter(tenant=tenant).exists():
            if opts["if_empty"]:
                self.stdout.write(f"Tenant {tenant.slug} already has profiles; nothing loaded.")
                self._users(opts)
                return
            raise CommandError(f"Tenant {tenant.slug} already has profiles; load the demo into an empty tenant.")

        rows = self._rows(opts)
        population = build_population(rows, seed=opts["seed"])
        self.stdout.write(f"Loading {len(population):,} profiles into tenant {tenant.slug}…")
        profiles = population_load(tenant=tenant, population=population)

        simulator = SwipeSimulator(population, seed=opts["seed"])
        start = timezone.now() - timedelta(days=opts["days"])
        with tqdm(total=opts["swipes"], desc="simulating swipes", unit="swipe", disable=opts["verbosity"] == 0) as bar:
            done = 0

            def advance(produced: int) -> None:
                nonlocal done
                bar.update(produced - done)
                done = produced

            stats = sessions_replay(
                tenant=tenant,
                profiles=profiles,
                sessions=simulator.simulate_history(opts["swipes"], start=start, days=opts["days"], progress=advance),
                model_version="simulator-naive-feed",
            )
        self._summary(tenant, stats.sessions)
        self._users(opts)

    def _rows(self, opts: dict[str, Any]) -> list[Any]:
        if opts["full"]:
            profiles_path, essays_path = source_paths(opts["full"])
            for path in (profiles_path, essays_path):
                if not Path(path).exists():
                    raise CommandError(f"{path} not found; --full takes the folder holding the authors' files.")
            return read_okcupid(profiles_path, essays_path, limit=opts["limit"])
        return load_sample(limit=opts["limit"])

    def _summary(self, tenant: Tenant, sessions: int) -> None:
        swipes = Swipe.objects.filter(tenant=tenant)
        by_action = dict(swipes.values_list("action").annotate(n=Count("id")).values_list("action", "n"))
        total = sum(by_action.values()) or 1
        liked = by_action.get("like", 0) + by_action.get("superlike", 0)
        self.stdout.write(
            self.style.SUCCESS(
                f"Made {Profile.objects.filter(tenant=tenant).count():,} profiles, {sessions:,} sessions, "
                f"{Impression.objects.filter(tenant=tenant).count():,} impressions, {total:,} swipes "
                f"({by_action.get('like', 0):,} likes, {by_action.get('superlike', 0):,} superlikes, "
                f"{by_action.get('pass', 0):,} passes; like rate {liked / total:.1%}) and "
                f"{Match.objects.filter(tenant=tenant).count():,} matches."
            )
        )

    def _users(self, opts: dict[str, Any]) -> None:
        if opts["no_users"]:
            return
        if settings.IS_PRODUCTION:
            self.stdout.write("Production: no demo users created.")
            return
        password = os.environ.get("DEMO_PASSWORD", "patra-demo")
        for username, group in DEMO_USERS:
            user, created = User.objects.get_or_create(
                username=username, defaults={"is_staff": True, "is_superuser": group is None}
            )
            if created:
                user.set_password(password)
                user.save(update_fields=["password"])
                if group:
                    user.groups.add(Group.objects.get(name=group))
        self.stdout.write(
            f"Demo staff users (password {password!r} unless they existed before): "
            "admin (superuser), moderator (Moderators), mladmin (ML admins)."
        )
