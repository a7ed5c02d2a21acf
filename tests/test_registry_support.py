"""Shared fixtures and helpers of the registry tests (no tests here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.contrib.auth.models import Group, Permission

from accounts.groups import ML_ADMINS
from accounts.models import Tenant
from patra.celery import app as celery_app
from registry.models import ModelVersion
from registry.services import model_version_register

# What the data migration grants ML admins; re-granted here because transactional tests
# (live_server, the PostgreSQL races) flush the groups the migration created.
ML_ADMIN_CODENAMES = [
    "view_modelversion",
    "activate_modelversion",
    "view_auditlog",
    "view_experiment",
    "add_experiment",
    "change_experiment",
    "view_experimentarm",
    "add_experimentarm",
    "change_experimentarm",
    "delete_experimentarm",
    "view_taskrun",
    "add_taskrun",
]


@pytest.fixture
def artifacts(settings: Any, tmp_path: Path) -> Path:
    """Artifacts and their unpacked cache in a fresh folder; serving polls on every get()."""
    settings.ARTIFACT_STORAGE = "local"
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.ARTIFACT_CACHE_DIR = tmp_path / "artifact-cache"
    settings.REGISTRY_REFRESH_SECONDS = 0
    return settings.ARTIFACT_ROOT


@pytest.fixture
def eager_celery() -> Any:
    """Run queued tasks in the test's process, in the real-mode run (Redis broker) as well."""
    was = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = was


def write_npy(folder: Path, value: float, name: str = "weights.npy") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    np.save(path, np.full(4, value, dtype=np.float32))
    return path


def register(tenant: Tenant, tmp_path: Path, value: float, model_type: str = "ranker", **kw: Any) -> ModelVersion:
    """A version whose artifact is a small array filled with ``value`` (so loads can be told apart)."""
    source = write_npy(tmp_path / f"src-{model_type}-{value}", value)
    kw.setdefault("metrics", {"val_ndcg@10": 0.3 + value / 100, "curves": {"val_ndcg@10": [0.1, 0.2, 0.25]}})
    kw.setdefault("data_ref", {"split": "time", "rows": 1000})
    return model_version_register(
        tenant=tenant, model_type=model_type, artifact_path=source, created_by="test", parameters={"v": value}, **kw
    )


def ml_admins_group() -> Group:
    group, _ = Group.objects.get_or_create(name=ML_ADMINS)
    group.permissions.add(
        *Permission.objects.filter(content_type__app_label="registry", codename__in=ML_ADMIN_CODENAMES)
    )
    return group


def make_ml_admin(django_user_model: Any, username: str = "ml", password: str = "x") -> Any:
    user = django_user_model.objects.create_user(username=username, password=password, is_staff=True)
    user.groups.add(ml_admins_group())
    return django_user_model.objects.get(pk=user.pk)  # fresh: no cached permissions


def make_staff(django_user_model: Any, username: str = "staff", password: str = "x") -> Any:
    """Staff who may look at the registry but not change what is served."""
    user = django_user_model.objects.create_user(username=username, password=password, is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="registry", codename__in=["view_modelversion"])
    )
    return django_user_model.objects.get(pk=user.pk)
