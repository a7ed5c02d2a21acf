"""List registered model versions.

python manage.py list_models [--tenant SLUG] [--type collaborative|ranker|index|safety|embedding] [--active] [--json]

One row per version: id, tenant, label, type, status, created, whether it is the active one (the
one serving for its tenant and type), its headline validation metric, and the A/B experiment arms
(draft or running experiments) that serve it. ``--json`` prints ``{"versions": [...]}``.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from registry.cli import dumps, primary_metric, tenant_by_slug
from registry.models import ExperimentArm, ModelType, ModelVersion, VersionStatus
from registry.selectors import open_experiment_arms, versions_list

COLUMNS = ("ID", "TENANT", "LABEL", "TYPE", "STATUS", "CREATED", "ACTIVE", "METRIC", "EXPERIMENT ARM")


class Command(BaseCommand):
    help = (
        "List model versions (all tenants unless --tenant): id, label, type, created, active, headline metric, "
        "A/B experiment arm. A tenant's first version of a type was activated automatically when registered."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", metavar="SLUG", help="only this tenant's versions")
        parser.add_argument("--type", choices=ModelType.values, help="only versions of this model type")
        parser.add_argument("--active", action="store_true", help="only the active version of each tenant and type")
        parser.add_argument("--json", action="store_true", help='print {"versions": [...]} on stdout')

    def handle(self, *args: Any, **opts: Any) -> None:
        tenant = tenant_by_slug(opts["tenant"]) if opts["tenant"] else None
        versions = list(versions_list(tenant=tenant, model_type=opts["type"], active_only=opts["active"]))
        arms = open_experiment_arms(version_ids=[v.pk for v in versions])
        rows = [_row(v, arms.get(v.pk, [])) for v in versions]
        if opts["json"]:
            self.stdout.write(dumps({"versions": rows}))
            return
        if not rows:
            self.stdout.write("No model versions match.")
            return
        self._table(rows)

    def _table(self, rows: list[dict[str, Any]]) -> None:
        cells = [_cells(r) for r in rows]
        widths = [max(len(line[i]) for line in [COLUMNS, *cells]) for i in range(len(COLUMNS))]
        for line in [COLUMNS, *cells]:
            self.stdout.write("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def _cells(row: dict[str, Any]) -> tuple[str, ...]:
    metric = row["metric"]
    arms = [f"{a['experiment']}/{a['arm']} {a['percent']}% ({a['status']})" for a in row["experiment_arms"]]
    return (
        row["version_id"],
        row["tenant"],
        row["label"],
        row["model_type"],
        row["status"],
        row["created_at"][:16].replace("T", " "),
        "yes" if row["active"] else "",
        f"{metric['name']} {metric['value']:.4f}" if metric else "",
        ", ".join(arms),
    )


def _row(version: ModelVersion, arms: list[ExperimentArm]) -> dict[str, Any]:
    metric = primary_metric(version.model_type, version.metrics)
    return {
        "version_id": str(version.pk),
        "tenant": version.tenant.slug,
        "label": version.label,
        "model_type": version.model_type,
        "status": version.status,
        "active": version.status == VersionStatus.ACTIVE,
        "created_at": version.created_at.isoformat(),
        "created_by": version.created_by,
        "metric": {"name": metric[0], "value": metric[1]} if metric else None,
        "experiment_arms": [
            {
                "experiment": arm.experiment.name,
                "status": arm.experiment.status,
                "arm": arm.name,
                "percent": arm.percent,
                "tag": arm.tag,
            }
            for arm in arms
        ],
    }
