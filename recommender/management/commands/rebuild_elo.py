from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Tenant
from recommender.services.elo import elo_rebuild


class Command(BaseCommand):
    help = "Recompute every Elo rating of a tenant by replaying its swipes in time order."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--tenant", default="default", help="tenant slug (default: default)")

    def handle(self, *args: Any, tenant: str, **options: Any) -> None:
        found = Tenant.objects.filter(slug=tenant).first()
        if found is None:
            raise CommandError(f"No tenant {tenant!r}.")
        count = elo_rebuild(tenant=found, progress=options["verbosity"] > 0)
        self.stdout.write(f"Rebuilt {count:,} Elo ratings for tenant {found.slug}.")
