"""Health endpoint states, production start-up guards, and the key commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from accounts.authentication import authenticate_key
from accounts.models import ServiceKey, Tenant

ROOT = Path(__file__).resolve().parent.parent


def test_health_ready(db):
    response = APIClient().get("/api/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"]["ok"] and body["checks"]["cache"]["ok"]


def test_health_degraded_when_cache_fails(db, monkeypatch):
    from django.core.cache import cache

    def broken(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(cache, "set", broken)
    body = APIClient().get("/api/v1/health").json()
    assert body["status"] == "degraded"
    assert "cache" in body["reason"]


def test_health_unavailable_when_database_fails(db, monkeypatch):
    from core import health

    def broken() -> None:
        raise RuntimeError("db down")

    monkeypatch.setattr(health, "_check_database", broken)
    response = APIClient().get("/api/v1/health")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"


def run_settings(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "PATRA_ENV"}}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**clean, "DJANGO_SETTINGS_MODULE": "patra.settings", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PATRA_ENV": "production", "ALLOWED_HOSTS": "api.example.com"}, "SECRET_KEY"),
        ({"PATRA_ENV": "production", "SECRET_KEY": "short", "ALLOWED_HOSTS": "a"}, "SECRET_KEY"),
        ({"PATRA_ENV": "production", "SECRET_KEY": "x" * 50, "DEBUG": "true", "ALLOWED_HOSTS": "a"}, "DEBUG"),
        ({"PATRA_ENV": "production", "SECRET_KEY": "x" * 50}, "ALLOWED_HOSTS"),
        ({"PATRA_ENV": "staging"}, "PATRA_ENV"),
    ],
    ids=["default secret", "short secret", "debug on", "no hosts", "unknown env"],
)
def test_production_refuses_unsafe_settings(env, message):
    result = run_settings(env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr


def test_production_starts_with_safe_settings():
    result = run_settings({"PATRA_ENV": "production", "SECRET_KEY": "k" * 50, "ALLOWED_HOSTS": "api.example.com"})
    assert result.returncode == 0, result.stderr


def test_create_tenant_and_service_key_commands(db, capsys):
    call_command("create_tenant", "acme", name="Acme Dating")
    assert Tenant.objects.filter(slug="acme", name="Acme Dating").exists()
    call_command("create_service_key", tenant="acme", name="backend")
    raw = capsys.readouterr().out.strip().splitlines()[-1]
    assert raw.startswith("psk_")
    key = ServiceKey.objects.get(tenant__slug="acme")
    assert key.key_hash != raw and raw not in key.key_hash
    assert authenticate_key(raw).tenant.slug == "acme"


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (["create_service_key"], {"tenant": "nope", "name": "x"}, "No tenant"),
        (["create_tenant", "default"], {"name": "again"}, "already exists"),
        (["create_tenant", "Bad Slug!"], {"name": "x"}, "slug"),
    ],
)
def test_command_errors_are_clear(db, args, kwargs, message):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match=message):
        call_command(*args, **kwargs)


def test_health_reports_a_model_that_failed_to_load(db, monkeypatch):
    from recommender.serving import index

    monkeypatch.setattr(
        index,
        "index_statuses",
        lambda: {7: {"loaded": True, "version": "index-v2", "last_error": "index-v3: checksum mismatch"}},
    )
    body = APIClient().get("/api/v1/health").json()
    assert body["status"] == "degraded"
    assert "index-v3: checksum mismatch" in body["reason"]
    assert body["models"]["index:tenant-7"]["version"] == "index-v2"
