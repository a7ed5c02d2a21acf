"""Celery tasks of the collaborative pipeline: thin wrappers around the services.

recommender/tasks.py imports this module so that autodiscovery registers the tasks; the names
are explicit so routing (``recommender.tasks.train_*`` -> the ``training`` queue) and callers do
not depend on where the code lives. Every argument and result is JSON-serialisable. Each task
is idempotent in effect: it writes a fresh output folder (or overwrites its own outputs).
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.utils import timezone

from accounts.models import Tenant
from recommender.training.datasets import datasets_build
from recommender.training.evaluate import collaborative_evaluate
from recommender.training.extract import events_extract
from recommender.training.options import parse_start
from recommender.training.ranker import ranker_export_onnx, ranker_train
from recommender.training.train import collaborative_train

_LONG = {"acks_late": True, "soft_time_limit": 2 * 3600, "time_limit": 2 * 3600 + 300}


@shared_task(name="recommender.tasks.extract_events", **_LONG)
def extract_events(output_dir: str, start_date: str, tenant_slug: str | None = None) -> dict[str, Any]:
    tenant = Tenant.objects.get(slug=tenant_slug) if tenant_slug else None
    return events_extract(output_dir=output_dir, start_date=parse_start(start_date), tenant=tenant)


@shared_task(name="recommender.tasks.build_datasets", **_LONG)
def build_datasets(input_dir: str, output_dir: str, ratios: list[float] | None = None) -> dict[str, Any]:
    r = tuple(ratios) if ratios else (0.8, 0.1, 0.1)
    return datasets_build(input_dir=input_dir, output_dir=output_dir, ratios=r)  # type: ignore[arg-type]


@shared_task(name="recommender.tasks.train_collaborative", **_LONG)
def train_collaborative(
    model: str, data_dir: str, config_path: str | None = None, tenant_slug: str | None = None
) -> dict[str, Any]:
    result = collaborative_train(
        model=model,
        data_dir=data_dir,
        config_path=config_path,
        tenant_slug=tenant_slug,
        created_by="task:train_collaborative",
    )
    return {"artifact_dir": str(result.artifact_dir), "version_id": result.version_id, "metrics": result.metrics}


@shared_task(name="recommender.tasks.evaluate_model", **_LONG)
def evaluate_model(model_path: str | None = None, data_dir: str | None = None) -> dict[str, Any]:
    return collaborative_evaluate(model_path=model_path, data_dir=data_dir)


@shared_task(name="recommender.tasks.train_ranker", **_LONG)
def train_ranker(tenant_slug: str, since: str | None = None, groups: str = "impressions") -> dict[str, Any]:
    start = parse_start(since) if since else None
    if start is not None and timezone.is_naive(start):
        start = timezone.make_aware(start)
    tenant = Tenant.objects.get(slug=tenant_slug)
    result = ranker_train(tenant=tenant, since=start, groups=groups, created_by="task:train_ranker")  # type: ignore[arg-type]
    return {"artifact_dir": str(result.artifact_dir), "version_id": result.version_id, "metrics": result.metrics}


@shared_task(name="recommender.tasks.export_onnx", **_LONG)
def export_onnx(tenant_slug: str, version_id: str | None = None) -> dict[str, Any]:
    result = ranker_export_onnx(
        tenant=Tenant.objects.get(slug=tenant_slug), version_id=version_id, created_by="task:export_onnx"
    )
    return {"version_id": result.version_id, "metrics": result.metrics}
