"""The registry in the Prometheus metrics, computed at scrape time (``core.metrics``; one query
per scrape, never on a request): the active version of each model kind per tenant (an info
gauge, 1, labelled with the version), how long ago it was built, and the active index's size."""

from __future__ import annotations

from collections.abc import Iterable

from django.utils import timezone
from prometheus_client.core import InfoMetricFamily, Metric

from core.metrics import gauge
from registry.models import ModelType, ModelVersion, VersionStatus


def active_model_metrics() -> Iterable[Metric]:
    info = InfoMetricFamily(
        "patra_model_active", "The active model version of each kind and tenant.", labels=("kind", "tenant")
    )
    age = gauge("patra_model_active_age_seconds", "Time since the active version was built.", ("kind", "tenant"))
    index_size = gauge("patra_index_size", "Profiles in the tenant's active ANN index.", ("tenant",))
    now = timezone.now()
    rows = ModelVersion.objects.filter(status=VersionStatus.ACTIVE).values_list(
        "model_type", "tenant__slug", "version", "created_at", "metrics"
    )
    for kind, tenant, version, created_at, metrics in rows:
        info.add_metric([kind, tenant], {"version": f"{kind}-v{version}"})
        age.add_metric([kind, tenant], max(0.0, (now - created_at).total_seconds()))
        if kind == ModelType.INDEX and isinstance(metrics, dict) and "size" in metrics:
            index_size.add_metric([tenant], float(metrics["size"]))
    return [info, age, index_size]
