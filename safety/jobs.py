"""The safety job ML admins start from the admin (registry "Start a job")."""

from __future__ import annotations

from registry.jobs import BOOLEAN, JobContext, is_true, register_job
from registry.models import ModelVersion
from safety.training import train_and_register


@register_job(
    "train_safety",
    queue="training",
    description=(
        "Retrain the safety heads on the public sets plus this tenant's moderator decisions "
        "(params: include_decisions=true|false)"
    ),
    params={"include_decisions": BOOLEAN},
)
def train_safety_job(ctx: JobContext) -> ModelVersion | None:
    ctx.progress(stage="training")
    result = train_and_register(
        tenant=ctx.tenant,
        include_decisions=is_true(ctx.params.get("include_decisions", True)),
        created_by=ctx.created_by,
        progress=False,
        log=lambda line: ctx.progress(last_log=line),
    )
    return ModelVersion.objects.filter(pk=result.version_id).first() if result.version_id else None
