"""GET /livez and /readyz: in-process, and against a new gunicorn (2 workers, multiprocess
metrics) whose /readyz answers 503 until its candidate stores are warm, then 200."""

from __future__ import annotations

import os
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from accounts.models import Tenant
from bench.server import Gunicorn, http_json, manage, wait_until
from recommender.feed import store

N_PROFILES = 300


def test_livez_answers_without_touching_any_dependency() -> None:
    # no database access is allowed in this test: pytest-django would fail it
    response = Client().get("/livez")
    assert response.status_code == 200 and response.json() == {"status": "alive"}
    assert Client().post("/livez").status_code == 405


@pytest.mark.django_db
def test_readyz_warms_this_process_and_answers_200(tenant: Tenant, make_profile: Any, isolated_ml_state: None) -> None:
    make_profile(bio="readyz")
    assert tenant.pk not in store._stores
    response = Client().get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ready" and body["warming_up"] == [] and body["unreachable"] == []
    assert set(body["checks"]) == {"database", "cache", "broker"}
    assert tenant.pk in store._stores  # inline here (tests): the warm-up built the store


@pytest.mark.django_db
def test_readyz_reports_an_unreachable_cache_as_degraded_but_stays_ready(settings: Any) -> None:
    # every pod shares the cache: failing readiness for it would empty the balancer at once
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:1/0"}}  # fmt: skip
    response = Client().get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded" and body["unreachable"] == ["cache"]
    assert not body["checks"]["cache"]["ok"] and body["checks"]["database"]["ok"]
    # the public health endpoint stays as it was: degraded, 200
    assert Client().get("/api/v1/health").status_code == 200


def test_a_new_gunicorn_is_not_ready_until_its_stores_are_warm(tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_TASK_ALWAYS_EAGER")}
    env.update(PATRA_VAR_DIR=str(tmp_path / "var"), ML_ENABLED="false", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
               SERVING_REFRESH_IN_BACKGROUND="true", LOG_LEVEL="WARNING")  # fmt: skip
    script = (
        "from django.core.management import call_command; call_command('migrate', verbosity=0)\n"
        "import uuid; from accounts.models import Tenant; from recommender.models import Profile\n"
        "t = Tenant.objects.get(slug='default')\n"
        "Profile.objects.bulk_create([Profile(tenant=t, external_id=uuid.uuid4(), age=20 + i % 40, "
        "gender=('man', 'woman')[i % 2], seeking=[('woman', 'man')[i % 2]], lat=37.7, lon=-122.4) "
        f"for i in range({N_PROFILES})])\n"
    )
    manage(env, "shell", "-c", script)
    server = Gunicorn(env, workers=2, log_path=tmp_path / "gunicorn.log").start()
    try:
        assert http_json(server.url + "/livez")[0] == 200
        status, body, _ = http_json(server.url + "/readyz")
        assert status == 503, body  # the first /readyz of a worker starts its warm-up
        assert body["status"] == "not_ready" and body["unreachable"] == []
        assert body["warming_up"] and body["warming_up"][0].startswith("warming up: ")

        # both workers warm: several 200s in a row (the kernel spreads requests over the workers)
        def ready_in_a_row() -> bool:
            return all(http_json(server.url + "/readyz")[0] == 200 for _ in range(8))

        wait_until(ready_in_a_row, 60, "both workers to be ready")
        for _ in range(20):
            assert http_json(server.url + "/livez")[0] == 200
        page = urllib.request.urlopen(server.url + "/metrics", timeout=10).read().decode()
    finally:
        server.stop()
    # multiprocess mode: the samples of every worker, added up
    pids = {int(m.group(1)) for f in metrics_dir.iterdir() if (m := re.search(r"_(\d+)\.db$", f.name))}
    assert len(pids) >= 2, sorted(p.name for p in metrics_dir.iterdir())
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
    }
    livez = samples.get(("patra_http_responses_total", (("method", "GET"), ("status", "200"), ("view", "livez"))))
    assert livez is not None and livez >= 21, page[:3000]
    assert ("patra_http_responses_total", (("method", "GET"), ("status", "503"), ("view", "readyz"))) in samples


@pytest.mark.django_db
def test_probes_answer_a_pod_address_over_plain_http_in_production(settings: Any) -> None:
    # the kubelet and Prometheus call the pod by IP, without TLS: neither ALLOWED_HOSTS nor the
    # HTTPS redirect may stand in the way, while the API itself keeps both
    settings.ALLOWED_HOSTS = ["patra.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    client = Client(HTTP_HOST="10.1.2.3:8000", REMOTE_ADDR="10.1.2.4")
    assert client.get("/livez").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/readyz").status_code in (200, 503)  # answered, whatever the warm-up
    assert client.get("/api/v1/health").status_code == 400  # not an allowed host
    assert Client(HTTP_HOST="patra.example.com").get("/api/v1/health").status_code == 301  # to HTTPS
