"""Reads of the registry, and the ``access_*`` helpers that check who may do what.

An *actor* is either a user (from the admin) or a string naming a system actor (``system:cli``,
``task:train_ranker``). Strings are only ever passed by server-side code (management commands,
tasks), never built from a request, so they are trusted; users need the permission below.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet

from accounts.models import Tenant
from registry.models import (
    AuditAction,
    AuditLog,
    Experiment,
    ExperimentArm,
    ExperimentStatus,
    ModelType,
    ModelVersion,
    TaskRun,
    VersionStatus,
)

ACTIVATE_PERMISSION = "registry.activate_modelversion"
# A version's label (``ModelVersion.label``): the model type and the slot's number, "collaborative-v2".
LABEL_PATTERN = re.compile(rf"^(?P<model_type>{'|'.join(ModelType.values)})-v(?P<number>[1-9][0-9]*)$")
# Experiments whose arms may serve now or soon; stopped and promoted ones are history.
OPEN_EXPERIMENTS = (ExperimentStatus.DRAFT, ExperimentStatus.RUNNING)
VIEW_PERMISSION = "registry.view_modelversion"

# Audit actions after which the slot's active version is the row's to_version.
SWAP_ACTIONS = (
    AuditAction.ACTIVATE,
    AuditAction.AUTO_ACTIVATE,
    AuditAction.ROLLBACK,
    AuditAction.DEACTIVATE,
    AuditAction.EXPERIMENT_PROMOTE,
)

Actor = Any  # a user (AbstractBaseUser) or a system actor's name (str)


def actor_name(actor: Actor) -> str:
    return actor if isinstance(actor, str) else actor.get_username()


def can_activate(actor: Actor) -> bool:
    if isinstance(actor, str):
        return bool(actor)
    return bool(actor.is_active and actor.has_perm(ACTIVATE_PERMISSION))


def access_registry_admin(actor: Actor) -> Actor:
    """The actor, if it may change what is served (activate, roll back, deactivate, experiments):
    ML admins and superusers, or a system actor. Raises PermissionDenied otherwise."""
    if not can_activate(actor):
        raise PermissionDenied("Only ML admins may change which model version is served.")
    return actor


def access_model_version(user: Any, version_id: Any) -> ModelVersion:
    """A version a staff user may look at (404 when it does not exist)."""
    from django.shortcuts import get_object_or_404

    if not user.has_perm(VIEW_PERMISSION):
        raise PermissionDenied("You may not view model versions.")
    return get_object_or_404(ModelVersion.objects.select_related("tenant"), pk=version_id)


def active_version(*, tenant_id: int, model_type: str) -> ModelVersion | None:
    # Served by the partial unique index model_version_one_active: one tiny index lookup.
    return ModelVersion.objects.filter(tenant_id=tenant_id, model_type=model_type, status=VersionStatus.ACTIVE).first()


def active_version_id(*, tenant_id: int, model_type: str) -> Any:
    return (
        ModelVersion.objects.filter(tenant_id=tenant_id, model_type=model_type, status=VersionStatus.ACTIVE)
        .values_list("id", flat=True)
        .first()
    )


def slot_versions(*, tenant: Tenant, model_type: str) -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(tenant=tenant, model_type=model_type).order_by("-version")


def slot_audit(*, tenant: Tenant, model_type: str) -> QuerySet[AuditLog]:
    return AuditLog.objects.filter(tenant=tenant, model_type=model_type).select_related("from_version", "to_version")


def rollback_target(*, tenant_id: int, model_type: str) -> ModelVersion | None:
    """The version that was active before the current one: the latest swap away from a version
    other than the current one. A second rollback therefore undoes the first (as `undo` does)."""
    current = active_version_id(tenant_id=tenant_id, model_type=model_type)
    row = (
        AuditLog.objects.filter(
            tenant_id=tenant_id, model_type=model_type, action__in=SWAP_ACTIONS, from_version__isnull=False
        )
        .exclude(from_version_id=current)
        .select_related("from_version")
        .order_by("-at", "-pk")
        .first()
    )
    return row.from_version if row else None


def running_experiment(*, tenant_id: int, model_type: str) -> Experiment | None:
    return (
        Experiment.objects.filter(tenant_id=tenant_id, model_type=model_type, status=ExperimentStatus.RUNNING)
        .prefetch_related("arms__version")
        .first()
    )


def task_run_get(*, run_id: Any) -> TaskRun:
    return TaskRun.objects.select_related("tenant", "version").get(pk=run_id)


# --- Versions, for the commands (list_models, activate_model, the training commands' output) ---


def version_get(*, version_id: Any) -> ModelVersion | None:
    return ModelVersion.objects.select_related("tenant").filter(pk=version_id).first()


def parse_version_label(label: str) -> tuple[str, int] | None:
    """(model type, number) of a label such as ``collaborative-v2``; None if it is not one."""
    match = LABEL_PATTERN.match(label.strip())
    return (match["model_type"], int(match["number"])) if match else None


def version_by_label(*, tenant: Tenant, label: str) -> ModelVersion | None:
    """The tenant's version called ``label``: labels are numbered per tenant and model type, so
    ``collaborative-v2`` names one version in each tenant that registered two."""
    parsed = parse_version_label(label)
    if parsed is None:
        return None
    model_type, number = parsed
    return (
        ModelVersion.objects.select_related("tenant")
        .filter(tenant=tenant, model_type=model_type, version=number)
        .first()
    )


def versions_list(
    *, tenant: Tenant | None = None, model_type: str | None = None, active_only: bool = False
) -> QuerySet[ModelVersion]:
    """Versions by tenant, type and newest first; optionally one tenant, one type, or only the
    active ones (the one serving per tenant and type)."""
    versions = ModelVersion.objects.select_related("tenant").order_by("tenant__slug", "model_type", "-version")
    if tenant is not None:
        versions = versions.filter(tenant=tenant)
    if model_type is not None:
        versions = versions.filter(model_type=model_type)
    if active_only:
        versions = versions.filter(status=VersionStatus.ACTIVE)
    return versions


def open_experiment_arms(*, version_ids: Iterable[Any]) -> dict[Any, list[ExperimentArm]]:
    """The arms of draft or running experiments that serve each of ``version_ids`` (one query)."""
    arms = (
        ExperimentArm.objects.filter(version_id__in=list(version_ids), experiment__status__in=OPEN_EXPERIMENTS)
        .select_related("experiment")
        .order_by("experiment__name", "pk")
    )
    by_version: dict[Any, list[ExperimentArm]] = {}
    for arm in arms:
        by_version.setdefault(arm.version_id, []).append(arm)
    return by_version


def version_auto_activated(*, version: ModelVersion) -> bool:
    """Whether ``version`` started serving by itself, as the first version of its tenant and type."""
    return AuditLog.objects.filter(action=AuditAction.AUTO_ACTIVATE, to_version=version).exists()
