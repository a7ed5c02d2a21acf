"""Upgrading a database with data in it across the move of Tenant, ServiceKey and UserToken from
recommender to accounts (issue 18): the migrations change Django's state only, so every row, every
foreign key and every credential must still be there and work after ``migrate``.

The database is first taken back to the leaf migrations from before the move; rows are written
through the historical models of that schema, then the database is migrated forward again.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.apps.registry import Apps
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from accounts.models import ServiceKey, Tenant, UserToken
from recommender.models import Profile
from registry.models import ModelVersion
from safety.models import Block
from tests.conftest import bearer_client

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

# The leaf migrations of today's schema, before the move (accounts did not exist).
BEFORE = [("recommender", "0006_elo_baseline"), ("registry", "0002_groups"), ("safety", "0002_groups")]


def _migrate(targets: list[tuple[str, str | None]]) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    ContentType.objects.clear_cache()
    return MigrationExecutor(connection)  # a fresh loader: it reads what is applied now


def _migrate_to_latest() -> None:
    executor = MigrationExecutor(connection)
    _migrate(executor.loader.graph.leaf_nodes())


@pytest.fixture
def old_schema() -> Iterator[Apps]:
    """The historical models of the schema before the move; the database is migrated back to the
    latest migrations afterwards, whatever the test did."""
    try:
        executor = _migrate([*BEFORE, ("accounts", None)])
        yield executor.loader.project_state(BEFORE).apps
    finally:
        _migrate_to_latest()


def _raw(prefix: str) -> tuple[str, str]:
    raw = f"{prefix}_{secrets.token_urlsafe(32)}"
    return raw, hashlib.sha256(raw.encode()).hexdigest()


def _profile(apps: Apps, tenant: Any, **fields: Any) -> Any:
    return apps.get_model("recommender", "Profile").objects.create(
        tenant=tenant, external_id=uuid.uuid4(), age=30, gender="woman", seeking=["man"], lat=48.85, lon=2.35, **fields
    )


def _write_old_rows(apps: Apps) -> dict[str, Any]:
    """Tenants, a service key, a user token, profiles, a registry version, a safety block and a
    staff group's permission, as a database of today's schema holds them."""
    tenant = apps.get_model("recommender", "Tenant").objects.create(slug="upgrade", name="Upgrade tenant")
    other = apps.get_model("recommender", "Tenant").objects.create(slug="upgrade-other", name="Other")
    service_raw, service_hash = _raw("psk")
    key = apps.get_model("recommender", "ServiceKey").objects.create(
        tenant=tenant, name="backend", key_hash=service_hash, key_prefix=service_raw[:10]
    )
    alice, bob = _profile(apps, tenant, bio="alice"), _profile(apps, tenant, bio="bob")
    _profile(apps, other)
    user_raw, user_hash = _raw("put")
    token = apps.get_model("recommender", "UserToken").objects.create(
        tenant=tenant,
        profile=alice,
        key_hash=user_hash,
        key_prefix=user_raw[:10],
        issued_by=key,
        expires_at=timezone.now() + timedelta(days=30),
    )
    version = apps.get_model("registry", "ModelVersion").objects.create(
        tenant=tenant, model_type="collaborative", version=1, created_by="upgrade-test"
    )
    block = apps.get_model("safety", "Block").objects.create(tenant=tenant, blocker=alice, blocked=bob)
    view_tenant = apps.get_model("auth", "Permission").objects.get(
        content_type__app_label="recommender", content_type__model="tenant", codename="view_tenant"
    )
    group = apps.get_model("auth", "Group").objects.create(name="Upgrade staff")
    group.permissions.add(view_tenant)
    return {
        "tenant": tenant.pk,
        "other": other.pk,
        "key": key.pk,
        "token": token.pk,
        "alice": alice.pk,
        "bob": bob.pk,
        "alice_external": alice.external_id,
        "version": version.pk,
        "block": block.pk,
        "service_raw": service_raw,
        "user_raw": user_raw,
        "view_tenant_ct": view_tenant.content_type_id,
    }


def _assert_rows_reachable(old: dict[str, Any]) -> None:
    tenant = Tenant.objects.get(pk=old["tenant"])
    assert (tenant.slug, tenant.name) == ("upgrade", "Upgrade tenant")
    assert set(Tenant.objects.filter(slug__startswith="upgrade").values_list("pk", flat=True)) == {
        old["tenant"],
        old["other"],
    }
    key = ServiceKey.objects.select_related("tenant").get(pk=old["key"])
    assert key.tenant == tenant and list(tenant.service_keys.all()) == [key]
    token = UserToken.objects.select_related("tenant", "profile", "issued_by").get(pk=old["token"])
    assert (token.tenant, token.profile.pk, token.issued_by) == (tenant, old["alice"], key)
    alice = Profile.objects.select_related("tenant").get(pk=old["alice"])
    assert alice.tenant == tenant and list(alice.tokens.all()) == [token]
    assert set(tenant.profiles.values_list("pk", flat=True)) == {old["alice"], old["bob"]}
    assert list(tenant.user_tokens.all()) == [token]
    assert ModelVersion.objects.select_related("tenant").get(pk=old["version"]).tenant == tenant
    block = Block.objects.select_related("tenant", "blocker", "blocked").get(pk=old["block"])
    assert (block.tenant, block.blocker.pk, block.blocked.pk) == (tenant, old["alice"], old["bob"])
    # The content type moved with its model (same row): the group's permission follows.
    moved = ContentType.objects.get_for_model(Tenant)
    assert (moved.pk, moved.app_label) == (old["view_tenant_ct"], "accounts")
    assert (
        Group.objects.get(name="Upgrade staff").permissions.filter(content_type=moved, codename="view_tenant").exists()
    )


def test_upgrade_keeps_tenants_credentials_and_every_foreign_key(old_schema: Apps) -> None:
    old = _write_old_rows(old_schema)
    _migrate_to_latest()
    _assert_rows_reachable(old)
    # The keys issued before the upgrade still authenticate.
    external = str(old["alice_external"])
    by_service = bearer_client(old["service_raw"]).get(f"/internal/v1/profiles/{external}")
    assert by_service.status_code == 200 and by_service.json()["external_id"] == external
    by_user = bearer_client(old["user_raw"]).get("/api/v1/me")
    assert by_user.status_code == 200 and by_user.json()["external_id"] == external
