"""Registry races on real PostgreSQL: threads released together by a barrier, one connection each."""

from __future__ import annotations

import pytest

from registry.models import AuditAction, AuditLog, ModelVersion, VersionStatus
from registry.services import model_version_activate
from tests.concurrency import run_together
from tests.test_registry_support import artifacts, register

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
__all__ = ["artifacts"]


def test_concurrent_activations_leave_exactly_one_active(tenant, artifacts, tmp_path):
    register(tenant, tmp_path, 0.0)
    for round_ in range(5):
        a = register(tenant, tmp_path, round_ * 10 + 1.0)
        b = register(tenant, tmp_path, round_ * 10 + 2.0)
        results = run_together(
            lambda a=a: model_version_activate(version=a, actor="system:a", reason="race"),
            lambda b=b: model_version_activate(version=b, actor="system:b", reason="race"),
        )
        assert not [r for r in results if isinstance(r, Exception)], results
        active = list(ModelVersion.objects.filter(tenant=tenant, model_type="ranker", status=VersionStatus.ACTIVE))
        assert len(active) == 1 and active[0] in (a, b)
        # Serialised, not lost: the later one retired the earlier one, and both are audited.
        rows = list(AuditLog.objects.filter(action=AuditAction.ACTIVATE).order_by("-pk")[:2])
        assert {r.to_version_id for r in rows} == {a.pk, b.pk}
        assert rows[0].to_version_id == active[0].pk and rows[0].from_version_id == rows[1].to_version_id


def test_concurrent_registrations_get_distinct_monotonic_numbers(tenant, artifacts, tmp_path):
    results = run_together(*(lambda i=i: register(tenant, tmp_path, float(i)) for i in range(8)))
    assert not [r for r in results if isinstance(r, Exception)], results
    numbers = sorted(v.version for v in results)
    assert numbers == list(range(1, 9))
    # Exactly one first version, activated exactly once.
    assert ModelVersion.objects.filter(tenant=tenant, status=VersionStatus.ACTIVE).count() == 1
    assert AuditLog.objects.filter(action=AuditAction.AUTO_ACTIVATE).count() == 1
    later = register(tenant, tmp_path, 99.0)
    assert later.version == 9
