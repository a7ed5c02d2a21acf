from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from accounts.models import Tenant
from recommender.models import Profile, ProfileStatus
from recommender.services.embeddings import embeddings_upsert
from recommender.serving.encoder import EmbeddingUnavailable, ml_available


class Command(BaseCommand):
    help = "Compute missing or outdated bio embeddings of active profiles (all tenants unless --tenant)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--tenant", metavar="SLUG", help="only this tenant")
        parser.add_argument("--force", action="store_true", help="recompute unchanged embeddings too")

    def handle(self, *args: Any, tenant: str | None, force: bool, **options: Any) -> None:
        profiles = Profile.objects.filter(status=ProfileStatus.ACTIVE)
        if tenant is not None:
            if not Tenant.objects.filter(slug=tenant).exists():
                raise CommandError(f"Unknown tenant {tenant!r}.")
            profiles = profiles.filter(tenant__slug=tenant)
        # Checked up front so that a disabled model fails in a second, not after reading every bio.
        if not ml_available():
            raise CommandError("Embeddings are unavailable: ML_ENABLED is false or the model cannot be loaded.")
        ids = list(profiles.order_by("pk").values_list("pk", flat=True))
        with tqdm(total=len(ids), disable=options["verbosity"] == 0, desc="embeddings", unit="profile") as bar:
            try:
                computed = embeddings_upsert(
                    profile_ids=ids, force=force, progress=lambda done: bar.update(done - bar.n)
                )
            except EmbeddingUnavailable as exc:
                raise CommandError(str(exc)) from exc
        self.stdout.write(f"{computed} of {len(ids)} active profiles (re)embedded.")
