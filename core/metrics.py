"""Prometheus metrics: what the request path, the feed, ingestion and Celery tasks count, and the
gauges computed when ``GET /metrics`` is scraped.

Counted as things happen (cheap: a dictionary look-up and a locked add, a few microseconds):

* ``patra_http_request_duration_seconds{view}`` and ``patra_http_responses_total{view,method,status}``
  (``patra.middleware.RequestContextMiddleware``);
* ``patra_feed_stage_seconds{stage}``, ``patra_feed_fallbacks_total{reason}``,
  ``patra_feed_vectors_total{cache}`` (one :func:`observe_feed` call per feed);
* ``patra_events_ingested_total{kind,outcome}`` (:func:`count_ingested`);
* ``patra_celery_task_duration_seconds{task,state}``, ``patra_celery_task_failures_total{task}``,
  ``patra_celery_task_retries_total{task}`` (Celery signals, ``patra/celery.py``).

Gauges that need the database or Redis (moderation queue depth, active model versions, index
size and age, Celery queue lengths) are never computed on a request: apps register a
:data:`ScrapeSource` (:func:`register_scrape_source`, from ``AppConfig.ready``) that
:func:`render` calls at scrape time; one that fails shows as ``patra_scrape_source_up{source} 0``
instead of failing the scrape.

Under gunicorn (several processes) ``PROMETHEUS_MULTIPROC_DIR`` names a directory every process
writes its samples to, and the scrape adds them up (prometheus-client's multiprocess mode, chosen
by that variable before the first metric is created); without it, one process's own registry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import redis
from django.conf import settings
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric

logger = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Request latencies: an API answer in milliseconds up to a slow batch in seconds.
_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_STAGE_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_TASK_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0)

HTTP_LATENCY = Histogram(
    "patra_http_request_duration_seconds",
    "Time to answer an HTTP request, by view.",
    ["view"],
    buckets=_LATENCY_BUCKETS,
)
HTTP_RESPONSES = Counter(
    "patra_http_responses", "HTTP responses by view, method and status.", ["view", "method", "status"]
)
FEED_STAGE = Histogram(
    "patra_feed_stage_seconds", "Time in each stage of the feed pipeline.", ["stage"], buckets=_STAGE_BUCKETS
)
FEED_FALLBACKS = Counter("patra_feed_fallbacks", "Feeds served by the structured fallback, by reason.", ["reason"])
FEED_VECTORS = Counter(
    "patra_feed_vectors",
    "Feeds by where their vectors came from: hit (memory or Redis), miss, none (fallback).",
    ["cache"],
)
EVENTS_INGESTED = Counter(
    "patra_events_ingested", "Events received, by kind and outcome (created or duplicate).", ["kind", "outcome"]
)
TASK_DURATION = Histogram(
    "patra_celery_task_duration_seconds", "Celery task run time, by task and end state.", ["task", "state"],
    buckets=_TASK_BUCKETS,
)  # fmt: skip
TASK_FAILURES = Counter("patra_celery_task_failures", "Celery tasks that raised, by task.", ["task"])
TASK_RETRIES = Counter("patra_celery_task_retries", "Celery task retries, by task.", ["task"])

# Label children cached by label values: .labels() parses and validates its arguments on every
# call, a dictionary look-up does not (the feed observes ~10 stages per request).
_children: dict[tuple[Any, ...], Any] = {}


def _child(metric: Any, *values: str) -> Any:
    key = (id(metric), *values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)
    return child


def observe_request(view: str, method: str, status: int, seconds: float) -> None:
    _child(HTTP_LATENCY, view).observe(seconds)
    _child(HTTP_RESPONSES, view, method, str(status)).inc()


def observe_feed(stage_ms: Mapping[str, float], fallback: str | None, cache_hit: bool) -> None:
    """One served feed: each stage's time, why it fell back (if it did), where its vectors came from."""
    for stage, ms in stage_ms.items():
        _child(FEED_STAGE, stage).observe(ms / 1000.0)
    if fallback:
        _child(FEED_FALLBACKS, fallback).inc()
        _child(FEED_VECTORS, "none").inc()  # the fallback ranks without vectors
    else:
        _child(FEED_VECTORS, "hit" if cache_hit else "miss").inc()


def count_ingested(kind: str, created: int, duplicates: int) -> None:
    if created:
        _child(EVENTS_INGESTED, kind, "created").inc(created)
    if duplicates:
        _child(EVENTS_INGESTED, kind, "duplicate").inc(duplicates)


def observe_task(task: str, state: str, seconds: float) -> None:
    _child(TASK_DURATION, task, state).observe(seconds)


def count_task_failure(task: str) -> None:
    _child(TASK_FAILURES, task).inc()


def count_task_retry(task: str) -> None:
    _child(TASK_RETRIES, task).inc()


# --------------------------------------------------------------------------- scrape-time gauges

ScrapeSource = Callable[[], Iterable[Metric]]

_sources: dict[str, ScrapeSource] = {}


def register_scrape_source(name: str, source: ScrapeSource) -> None:
    """Compute ``source``'s metric families at every scrape of this process (once per name)."""
    _sources[name] = source


def gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    """A gauge family for a scrape source: ``family.add_metric([label values...], value)``."""
    return GaugeMetricFamily(name, documentation, labels=list(labels))


class _ScrapeCollector:
    """The registered sources, each timed and isolated: one failing costs its own series only."""

    def describe(self) -> list[Metric]:
        return []  # registering must not run the queries

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("patra_scrape_source_up", "1 when the scrape source answered.", labels=["source"])
        seconds = GaugeMetricFamily("patra_scrape_source_seconds", "Time the scrape source took.", labels=["source"])
        for name, source in sorted(_sources.items()):
            started = time.perf_counter()
            try:
                families = list(source())
            except Exception:
                logger.warning("metrics scrape source %s failed", name, exc_info=True)
                families, ok = [], 0.0
            else:
                ok = 1.0
            up.add_metric([name], ok)
            seconds.add_metric([name], time.perf_counter() - started)
            yield from families
        yield up
        yield seconds


def multiprocess_dir() -> str:
    """The directory of multiprocess mode ('' when off): the environment variable
    prometheus-client itself reads, as ``patra.settings`` read and checked it."""
    return str(settings.PROMETHEUS_MULTIPROC_DIR)


def render() -> bytes:
    """The Prometheus text of every metric: this process's (or, in multiprocess mode, every
    process's, added up) and the scrape sources'."""
    if multiprocess_dir():
        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted)
    else:
        counted = REGISTRY
    scraped = CollectorRegistry(auto_describe=False)
    scraped.register(_ScrapeCollector())
    return generate_latest(counted) + generate_latest(scraped)


def worker_registry() -> CollectorRegistry:
    """What a Celery worker's metrics port serves: its pool processes' samples (multiprocess
    mode) or its own (solo and threads pools)."""
    if not multiprocess_dir():
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def mark_process_dead(pid: int) -> None:
    """Drop a dead process's live gauges (gunicorn's ``child_exit`` hook calls this)."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid)


def _celery_queue_lengths() -> Iterable[Metric]:
    """Messages waiting in each Celery queue (Redis lists named after the queues); nothing in
    eager mode, where no queue exists."""
    family = gauge("patra_celery_queue_length", "Messages waiting in the Celery queue.", ("queue",))
    if settings.CELERY_TASK_ALWAYS_EAGER or not settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
        return []
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        pipe = client.pipeline(transaction=False)
        names = [queue.name for queue in settings.CELERY_TASK_QUEUES]
        for name in names:
            pipe.llen(name)
        for name, length in zip(names, pipe.execute(), strict=True):
            family.add_metric([name], float(length))
    finally:
        client.close()
    return [family]


register_scrape_source("celery_queues", _celery_queue_lengths)
