from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from recommender.models import DEFAULT_TENANT_SLUG, Tenant
from recommender.services.embeddings import EmbeddingUnavailable
from recommender.services.index import index_build


class Command(BaseCommand):
    help = "Embed what is missing and build the ANN index of a tenant (default: the default tenant) or of all."

    def add_arguments(self, parser: ArgumentParser) -> None:
        which = parser.add_mutually_exclusive_group()
        which.add_argument("--tenant", metavar="SLUG", help=f"tenant slug (default: {DEFAULT_TENANT_SLUG})")
        which.add_argument("--all-tenants", action="store_true", help="build every tenant's index")

    def handle(self, *args: Any, tenant: str | None, all_tenants: bool, **options: Any) -> None:
        tenants = list(Tenant.objects.order_by("slug")) if all_tenants else [_tenant(tenant or DEFAULT_TENANT_SLUG)]
        for t in tenants:
            try:
                result = index_build(tenant=t, progress=options["verbosity"] > 0, created_by="command:build_index")
            except EmbeddingUnavailable as exc:
                raise CommandError(f"Cannot build the index of {t.slug}: {exc}") from exc
            recall = "n/a (empty)" if result.recall_at_10 is None else f"{result.recall_at_10:.3f}"
            self.stdout.write(
                f"{result.tenant_slug}: {result.size} profiles, dim {result.dim}, "
                f"built in {result.build_seconds:.1f} s, recall@10 {recall}, at {result.path}; "
                f"registered as {result.version_label or 'no version'}"
            )


def _tenant(slug: str) -> Tenant:
    try:
        return Tenant.objects.get(slug=slug)
    except Tenant.DoesNotExist:
        raise CommandError(f"Unknown tenant {slug!r}; existing: {_slugs()}.") from None


def _slugs() -> str:
    return ", ".join(Tenant.objects.order_by("slug").values_list("slug", flat=True)) or "none"
