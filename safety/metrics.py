"""The moderation queue in the Prometheus metrics, computed at scrape time (``core.metrics``; one
grouped query per scrape, never on a request): open items and the oldest one's age, per tenant
and queue (review, specialist, appeals)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import Metric

from core.metrics import gauge
from safety.models import ItemStatus, QueueItem


def moderation_queue_metrics() -> Iterable[Metric]:
    depth = gauge("patra_moderation_queue_depth", "Open moderation items.", ("tenant", "queue"))
    oldest = gauge(
        "patra_moderation_queue_oldest_age_seconds", "Age of the oldest open moderation item.", ("tenant", "queue")
    )
    now = timezone.now()
    rows = (
        QueueItem.objects.filter(status=ItemStatus.OPEN)
        .values("tenant__slug", "queue")
        .annotate(n=Count("pk"), first=Min("created_at"))
        .order_by()
    )
    for row in rows:
        labels = [row["tenant__slug"], row["queue"]]
        depth.add_metric(labels, float(row["n"]))
        oldest.add_metric(labels, max(0.0, (now - row["first"]).total_seconds()))
    return [depth, oldest]
