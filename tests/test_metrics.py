"""GET /metrics: the series move after real requests, feeds, ingestion and a task; the scrape-time
gauges read the database; the guard; and the request path's cost."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from accounts.models import Tenant
from core import metrics
from core.tasks import enqueue
from recommender.models import Profile
from registry.models import ModelType, ModelVersion, VersionStatus
from safety.models import QueueItem

ROOT = Path(__file__).resolve().parent.parent


def scrape(client: Client | None = None, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of one scrape."""
    response = (client or Client()).get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def pair(make_profile: Callable[..., Profile], isolated_ml_state: None, settings: Any) -> tuple[Profile, list[Profile]]:
    settings.ML_ENABLED = False  # the structured feed: no text encoder in this test
    user = make_profile(gender="woman", seeking=["man"], bio="metrics user")
    men = [make_profile(gender="man", seeking=["woman"], age=30 + i, bio=f"metrics man {i}") for i in range(4)]
    return user, men


@pytest.mark.django_db(transaction=True)
def test_series_move_after_requests_feeds_ingestion_and_a_task(
    pair: tuple[Profile, list[Profile]], user_client_for: Callable[[Profile], Any], service_client: Any
) -> None:
    user, men = pair
    before = scrape()
    client = user_client_for(user)

    for _ in range(2):
        assert client.get("/api/v1/feed?count=3").status_code == 200
    body = {
        "session_id": "s-metrics",
        "timestamp": datetime.now(UTC).isoformat(),
        "swipes": [{"candidate_id": str(m.external_id), "action": "like"} for m in men[:3]],
    }
    assert client.post("/api/v1/events/swipes", body, format="json").status_code == 201
    assert client.post("/api/v1/events/swipes", body, format="json").status_code in (200, 201)  # all duplicates
    assert service_client.get("/internal/v1/profiles/" + str(uuid.uuid4())).status_code == 404
    enqueue("patra.ping")  # eager here: runs in this process, outside a transaction at once

    after = scrape()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("patra_http_responses_total", view="feed:feed", method="GET", status="200") == 2
    assert moved("patra_http_responses_total", view="api:swipes", method="POST", status="201") >= 1
    assert moved("patra_http_responses_total", view="internal:profile-detail", method="GET", status="404") == 1
    assert moved("patra_http_request_duration_seconds_count", view="feed:feed") == 2
    assert moved("patra_http_request_duration_seconds_sum", view="feed:feed") > 0
    for stage in ("store", "history", "candidates", "filter", "score", "select", "live_check"):
        assert moved("patra_feed_stage_seconds_count", stage=stage) == 2, stage
    assert moved("patra_feed_fallbacks_total", reason="ml_disabled") == 2
    assert moved("patra_feed_vectors_total", cache="none") == 2
    assert moved("patra_events_ingested_total", kind="swipe", outcome="created") == 3
    assert moved("patra_events_ingested_total", kind="swipe", outcome="duplicate") == 3
    assert moved("patra_celery_task_duration_seconds_count", task="patra.ping", state="SUCCESS") == 1
    # the scrape sources answered (embedded mode: no Celery queue to measure)
    for source in ("registry", "moderation_queue", "celery_queues"):
        assert value(after, "patra_scrape_source_up", source=source) == 1.0, source


@pytest.mark.django_db
def test_scrape_time_gauges_read_moderation_queue_and_registry(tenant: Tenant, make_profile: Callable[..., Profile]):
    old = make_profile(bio="queue one")
    QueueItem.objects.create(tenant=tenant, profile=old, created_at=timezone.now() - timedelta(hours=2))
    QueueItem.objects.create(tenant=tenant, profile=make_profile(bio="queue two"))
    ModelVersion.objects.create(
        tenant=tenant, model_type=ModelType.INDEX, version=3, status=VersionStatus.ACTIVE,
        metrics={"size": 1234}, created_by="test", created_at=timezone.now() - timedelta(minutes=10),
    )  # fmt: skip
    ModelVersion.objects.create(tenant=tenant, model_type=ModelType.RANKER, version=7, status=VersionStatus.ACTIVE,
                                created_by="test")  # fmt: skip

    samples = scrape()

    slug = tenant.slug
    assert value(samples, "patra_moderation_queue_depth", tenant=slug, queue="review") == 2
    assert 7100 < value(samples, "patra_moderation_queue_oldest_age_seconds", tenant=slug, queue="review") < 7300
    assert value(samples, "patra_model_active_info", kind="index", tenant=slug, version="index-v3") == 1
    assert value(samples, "patra_model_active_info", kind="ranker", tenant=slug, version="ranker-v7") == 1
    assert 590 < value(samples, "patra_model_active_age_seconds", kind="index", tenant=slug) < 700
    assert value(samples, "patra_index_size", tenant=slug) == 1234


def test_a_failing_scrape_source_is_reported_not_fatal() -> None:
    def broken() -> list:
        raise RuntimeError("down")

    metrics.register_scrape_source("test_broken", broken)
    try:
        samples = scrape()
    finally:
        metrics._sources.pop("test_broken")
    assert value(samples, "patra_scrape_source_up", source="test_broken") == 0.0
    assert any(name == "process_cpu_seconds_total" for name, _ in samples)  # the rest of the page is there


@pytest.mark.django_db
def test_guard_without_token_serves_direct_private_callers_only(settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    assert Client().get("/metrics").status_code == 200  # the test client is 127.0.0.1
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="8.8.8.8").get("/metrics").status_code == 403
    # relayed by a proxy or ingress, even one at a private address: refused
    assert Client().get("/metrics", HTTP_X_FORWARDED_FOR="8.8.8.8").status_code == 403
    assert Client().get("/metrics", HTTP_FORWARDED="for=8.8.8.8").status_code == 403


@pytest.mark.django_db
def test_guard_with_token_needs_the_bearer_token_from_anywhere(settings: Any) -> None:
    settings.METRICS_TOKEN = "s3cret-metrics-token"
    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    ok = Client(REMOTE_ADDR="8.8.8.8").get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-metrics-token")
    assert ok.status_code == 200 and b"patra_http_responses_total" in ok.content


def test_probe_and_metrics_views_stay_out_of_the_openapi_schema() -> None:
    from drf_spectacular.generators import SchemaGenerator

    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    assert not {"/livez", "/readyz", "/metrics"} & set(paths)


@pytest.mark.redis
@pytest.mark.django_db
def test_celery_queue_lengths_are_read_from_redis_at_scrape_time(settings: Any) -> None:
    import redis
    from kombu import Queue

    name = f"obs-test-{os.getpid()}"
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = settings.REDIS_URL
    settings.CELERY_TASK_QUEUES = [Queue(name)]
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(name)
    client.lpush(name, "a", "b", "c")
    try:
        samples = scrape()
    finally:
        client.delete(name)
    assert value(samples, "patra_celery_queue_length", queue=name) == 3
    assert value(samples, "patra_scrape_source_up", source="celery_queues") == 1


@pytest.mark.django_db
def test_the_grafana_dashboard_queries_only_metrics_patra_exposes() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "patra.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 15
    used = {_base(n) for e in exprs for n in re.findall(r"patra_[a-z_]+", e)}
    page = Client().get("/metrics").content.decode()
    exposed = {_base(n) for n in re.findall(r"^# TYPE (patra_[a-z_]+) ", page, flags=re.M)}
    exposed.add("patra_celery_queue_length")  # only with a Redis broker (the test above)
    assert used <= exposed, used - exposed
    documented = (ROOT / "docs" / "deployment.md").read_text()
    assert all(f"`{name}" in documented for name in used), [n for n in used if f"`{n}" not in documented]


def _base(name: str) -> str:
    return re.sub(r"_(bucket|total|count|sum|info)$", "", name)
