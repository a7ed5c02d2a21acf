"""The recommender's jobs that ML admins start from the admin (registry "Start a job" page).

Each job is a thin wrapper around the same service the management command and the Celery task
call; the registry tracks it as a TaskRun with live progress and links the version it made.

Every process imports this module at start-up (the app registry registers the jobs), so it imports
only the names the jobs declare (``recommender.training.options``); each job imports its service,
and with it numpy, pyarrow, hnswlib or torch, when it runs, in a worker.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from django.utils import timezone

from recommender.training.options import GROUP_KINDS, TRAINABLE, GroupKind, parse_start
from registry.jobs import BOOLEAN, JobContext, is_true, register_job
from registry.models import ModelVersion


def _version(version_id: object) -> ModelVersion | None:
    return ModelVersion.objects.filter(pk=version_id).first() if version_id else None


@register_job(
    "build_index", queue="indexing", description="Embed new profiles, then build the tenant's HNSW index", params={}
)
def build_index_job(ctx: JobContext) -> ModelVersion | None:
    from recommender.indexing import index_build

    result = index_build(
        tenant=ctx.tenant,
        created_by=ctx.created_by,
        on_progress=lambda done, total: ctx.progress(stage="embedding", done=done, total=total),
    )
    return _version(result.version_id)


@register_job(
    "train_collaborative",
    queue="training",
    description=(
        "Extract events, split by time and train a collaborative model "
        "(params: model=lmf|als|bpr|popularity|two_tower|graphsage; lmf, the default, is the model the feed pools; "
        "refit_all=true|false)"
    ),
    params={"model": TRAINABLE, "refit_all": BOOLEAN},
)
def train_collaborative_job(ctx: JobContext) -> ModelVersion | None:
    from recommender.training.datasets import datasets_build
    from recommender.training.extract import events_extract
    from recommender.training.train import collaborative_train

    model = str(ctx.params.get("model", "lmf"))
    with tempfile.TemporaryDirectory(prefix="patra-train-") as tmp:
        events, splits = Path(tmp) / "events", Path(tmp) / "splits"
        ctx.progress(stage="extract")
        events_extract(output_dir=events, start_date=datetime(1970, 1, 1, tzinfo=UTC), tenant=ctx.tenant)
        ctx.progress(stage="split")
        datasets_build(input_dir=events, output_dir=splits, ratios=(0.8, 0.1, 0.1))
        ctx.progress(stage="train", model=model)
        result = collaborative_train(
            model=model,
            data_dir=splits,
            tenant_slug=ctx.tenant.slug,
            created_by=ctx.created_by,
            # the version is for serving: it should know the latest swipes (params: refit_all=false to skip)
            refit_all=is_true(ctx.params.get("refit_all", "true")),
        )
    return _version(result.version_id)


@register_job(
    "train_ranker",
    queue="training",
    description="Train the LightGBM ranker on the tenant's swipes (params: since=DATE, groups=impressions|pools)",
    params={"since": parse_start, "groups": GROUP_KINDS},
)
def train_ranker_job(ctx: JobContext) -> ModelVersion | None:
    from recommender.training.ranker import ranker_train

    since = ctx.params.get("since")
    start = parse_start(str(since)) if since else None
    if start is not None and timezone.is_naive(start):
        start = timezone.make_aware(start)
    # one of GROUP_KINDS: the job's declared parameters are checked before it starts
    groups = cast(GroupKind, str(ctx.params.get("groups") or "impressions"))
    result = ranker_train(
        tenant=ctx.tenant,
        since=start,
        groups=groups,
        created_by=ctx.created_by,
        on_progress=lambda stage, done, total: ctx.progress(stage=stage, done=done, total=total),
    )
    return _version(result.version_id)


@register_job(
    "export_onnx",
    queue="training",
    description="Export a ranker version to ONNX, checked against LightGBM (params: version=ID, default active)",
    params={"version": None},
)
def export_onnx_job(ctx: JobContext) -> ModelVersion | None:
    from recommender.training.ranker import ranker_export_onnx

    ctx.progress(stage="export")
    result = ranker_export_onnx(
        tenant=ctx.tenant, version_id=ctx.params.get("version") or None, created_by=ctx.created_by
    )
    return _version(result.version_id)
