"""Embed what is missing and build a tenant's HNSW index; register it as an ``index`` version.

python manage.py build_index [--tenant SLUG | --all-tenants] [--json]

The tenant's first index version is activated automatically (it serves at once); a later build is
registered ``ready`` and published for serving processes that follow the build pointer.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts.models import DEFAULT_TENANT_SLUG, Tenant
from recommender.indexing import IndexBuildResult, index_build
from recommender.serving.encoder import EmbeddingUnavailable
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
        "Embed what is missing and build the ANN index of a tenant (default: the default tenant) or of all; "
        f"register it as an index version. {AUTO_ACTIVATION_HELP} "
        'With --all-tenants, --json prints {"builds": [one object per tenant]}.'
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        which = parser.add_mutually_exclusive_group()
        which.add_argument("--tenant", metavar="SLUG", help=f"tenant slug (default: {DEFAULT_TENANT_SLUG})")
        which.add_argument("--all-tenants", action="store_true", help="build every tenant's index")
        add_json_argument(parser)

    def handle(self, *args: Any, tenant: str | None, all_tenants: bool, **options: Any) -> None:
        as_json = options["json"]
        tenants = (
            list(Tenant.objects.order_by("slug")) if all_tenants else [tenant_by_slug(tenant or DEFAULT_TENANT_SLUG)]
        )
        summaries = []
        for t in tenants:
            with stdout_kept_for_json(as_json):
                try:
                    result = index_build(tenant=t, progress=options["verbosity"] > 0, created_by="command:build_index")
                except EmbeddingUnavailable as exc:
                    raise CommandError(f"Cannot build the index of {t.slug}: {exc}") from exc
            summary = version_summary(
                model_type=ModelType.INDEX, version_id=result.version_id, metrics={}, artifact_path=result.path
            )
            summaries.append(summary)
            if not as_json:
                self.stdout.write(_text(result, summary))
        if as_json:
            self.stdout.write(dumps({"builds": summaries} if all_tenants else summaries[0]))


def _text(result: IndexBuildResult, summary: dict[str, Any]) -> str:
    recall = "n/a (empty)" if result.recall_at_10 is None else f"{result.recall_at_10:.3f}"
    return (
        f"{result.tenant_slug}: {result.size} profiles, dim {result.dim}, "
        f"built in {result.build_seconds:.1f} s, recall@10 {recall}, at {result.path}; "
        f"{registration_text(summary)}"
    )
