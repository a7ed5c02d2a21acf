"""The S3 artifact store (django-storages + boto3) against moto's in-process S3, which speaks the
S3 API: registration, checksum verification, refusal of a damaged or missing object, fetch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from moto import mock_aws

from registry.models import VersionStatus
from registry.services import ActivationRefused, model_version_activate, model_version_register
from registry.storage import artifact_store

BUCKET = "patra-artifacts"


@pytest.fixture
def s3(settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    settings.ARTIFACT_STORAGE = "s3"
    settings.ARTIFACT_S3_BUCKET = BUCKET
    settings.ARTIFACT_S3_REGION = "us-east-1"
    settings.ARTIFACT_CACHE_DIR = tmp_path / "cache"
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def artifact(tmp_path: Path, value: float) -> Path:
    path = tmp_path / f"weights-{value}.npy"
    np.save(path, np.full(4, value, dtype=np.float32))
    return path


def test_register_verify_and_fetch_through_s3(s3, tenant, tmp_path):
    version = model_version_register(
        tenant=tenant, model_type="ranker", artifact_path=artifact(tmp_path, 1.0), metrics={}, created_by="test"
    )
    assert version.artifact_uri.startswith("s3://")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert len(keys) == 1 and keys[0].startswith("artifacts/")
    artifact_store().verify(version)
    fetched = artifact_store().fetch(version)
    path = fetched if fetched.is_file() else next(fetched.iterdir())
    assert np.load(path).tolist() == [1.0] * 4


def test_a_damaged_or_missing_s3_object_cannot_be_activated(s3, tenant, tmp_path, admin_user):
    first = model_version_register(
        tenant=tenant, model_type="ranker", artifact_path=artifact(tmp_path, 1.0), metrics={}, created_by="test"
    )
    second = model_version_register(
        tenant=tenant, model_type="ranker", artifact_path=artifact(tmp_path, 2.0), metrics={}, created_by="test"
    )
    key = second.artifact_uri.removeprefix("s3://")
    key = key if key.startswith("artifacts/") else f"artifacts/{key}"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"tampered")
    with pytest.raises(ActivationRefused, match="checksum"):
        model_version_activate(version=second, actor=admin_user, reason="try the damaged one")
    s3.delete_object(Bucket=BUCKET, Key=key)
    with pytest.raises(ActivationRefused, match="missing"):
        model_version_activate(version=second, actor=admin_user, reason="try the missing one")
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == (VersionStatus.ACTIVE, VersionStatus.READY)
