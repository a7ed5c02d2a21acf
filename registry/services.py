"""Writes of the registry: registering versions, changing which one serves, experiments. (The
runs of admin-startable jobs are written in registry.jobs, beside the jobs they run.)

Rules:

* An artifact is stored (and hashed) before its version row says ``ready``; a failure leaves no
  row, or a row marked ``failed``. Never a ``ready`` row without its bytes.
* Every change of the served version locks the (tenant, model type) slot row first, so two
  concurrent changes serialise; the partial unique index on ``status='active'`` backs this up.
* Every change of the served version writes an AuditLog row in the same transaction.
* Do not call ``registering()`` or ``model_version_register()`` inside an outer transaction: the
  artifact upload would then sit inside it, and a ``failed`` mark would be rolled back with it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Tenant
from registry.models import (
    AuditAction,
    AuditLog,
    Choice,
    Experiment,
    ExperimentArm,
    ExperimentStatus,
    ModelSlot,
    ModelType,
    ModelVersion,
    VersionStatus,
)
from registry.selectors import Actor, access_registry_admin, actor_name, rollback_target
from registry.storage import ArtifactError, StoredArtifact, artifact_store

SYSTEM_ACTOR = "system:registry"
AUTO_ACTIVATE_REASON = "auto-activated: first version"


class RegistryError(Exception):
    """A registry operation that is refused; the message says why, for a person to read."""


class ActivationRefused(RegistryError):
    pass


# --- Helpers -----------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def code_version() -> str:
    """CODE_VERSION, else the git sha of the working tree, else "" (e.g. in a built image)."""
    if settings.CODE_VERSION:
        return settings.CODE_VERSION
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()[:64]


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays (metrics computed with numpy) become plain numbers and lists.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path | uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def jsonable(value: dict[str, Any] | None) -> dict[str, Any]:
    """A JSON-clean copy, checked before any upload so a bad metric fails the job early."""
    return json.loads(json.dumps(value or {}, default=_json_default))


def _check_model_type(model_type: str) -> None:
    if model_type not in ModelType.values:
        raise RegistryError(f"Unknown model type {model_type!r}; use one of {', '.join(ModelType.values)}.")


def _lock_slot(tenant_id: int, model_type: str) -> ModelSlot:
    """Lock (creating if needed) the slot row; call inside a transaction."""
    # INSERT .. ON CONFLICT DO NOTHING: two first registrations cannot both create the slot.
    ModelSlot.objects.bulk_create([ModelSlot(tenant_id=tenant_id, model_type=model_type)], ignore_conflicts=True)
    return ModelSlot.objects.select_for_update().get(tenant_id=tenant_id, model_type=model_type)


def _next_number(tenant_id: int, model_type: str) -> int:
    slot = _lock_slot(tenant_id, model_type)
    slot.last_version += 1
    slot.save(update_fields=["last_version"])
    return slot.last_version


def _audit(
    *,
    actor: Actor,
    action: Choice,
    tenant_id: int,
    model_type: str,
    reason: str,
    from_version: ModelVersion | None = None,
    to_version: ModelVersion | None = None,
    experiment: Experiment | None = None,
) -> AuditLog:
    return AuditLog.objects.create(
        actor=actor_name(actor),
        actor_user=None if isinstance(actor, str) else actor,
        action=action,
        tenant_id=tenant_id,
        model_type=model_type,
        from_version=from_version,
        to_version=to_version,
        experiment=experiment,
        reason=reason,
    )


def _require_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise RegistryError("A reason is required: it is kept in the audit log.")
    return reason


def _artifact_key(tenant: Tenant, model_type: str, version_id: uuid.UUID) -> str:
    return f"{tenant.slug}/{model_type}/{version_id}"


def _apply_stored(version: ModelVersion, stored: StoredArtifact) -> None:
    version.artifact_uri = stored.uri
    version.checksum = stored.checksum
    version.artifact_size = stored.size
    version.artifact_format = stored.format
    version.artifact_name = stored.name


def _auto_activate_if_first(version: ModelVersion) -> None:
    """Inside the slot lock: the first successful version of a slot that never had an active one
    starts serving by itself; after that only people (or a promotion) change what serves."""
    ever_active = (
        ModelVersion.objects.filter(
            tenant_id=version.tenant_id,
            model_type=version.model_type,
            status__in=[VersionStatus.ACTIVE, VersionStatus.RETIRED],
        )
        .exclude(pk=version.pk)
        .exists()
    )
    if ever_active:
        return
    version.status = VersionStatus.ACTIVE
    version.activated_at = timezone.now()
    version.save(update_fields=["status", "activated_at"])
    _audit(
        actor=SYSTEM_ACTOR,
        action=AuditAction.AUTO_ACTIVATE,
        tenant_id=version.tenant_id,
        model_type=version.model_type,
        to_version=version,
        reason=AUTO_ACTIVATE_REASON,
    )


# --- Registration --------------------------------------------------------------------------------


def model_version_register(
    *,
    tenant: Tenant,
    model_type: str,
    artifact_path: Path | str,
    parameters: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    data_ref: dict[str, Any] | None = None,
    created_by: str,
    code_version_: str | None = None,
) -> ModelVersion:
    """Store the artifact (a file or a directory), then create its ``ready`` version; the first
    version of a slot is activated automatically. On failure nothing is registered and the
    stored artifact is removed."""
    _check_model_type(model_type)
    clean = {"parameters": jsonable(parameters), "metrics": jsonable(metrics), "data_ref": jsonable(data_ref)}
    version_id = uuid.uuid4()
    store = artifact_store()
    stored = store.put(Path(artifact_path), _artifact_key(tenant, model_type, version_id))
    try:
        with transaction.atomic():
            version = ModelVersion(
                id=version_id,
                tenant=tenant,
                model_type=model_type,
                version=_next_number(tenant.pk, model_type),
                status=VersionStatus.READY,
                code_version=code_version() if code_version_ is None else code_version_,
                created_by=created_by,
                **clean,
            )
            _apply_stored(version, stored)
            version.save(force_insert=True)
            _auto_activate_if_first(version)
    except BaseException:
        store.delete(stored.uri)
        raise
    return version


@dataclass
class RegistrationHandle:
    """What a long job fills in while it runs inside ``registering()``.

    Write the artifact into ``workdir`` (it is uploaded as a directory), or point
    ``artifact_path`` at a file or directory of your own. ``version`` is the row, status
    ``registering`` until the block ends; afterwards ``ready``/``active`` or ``failed``."""

    version: ModelVersion
    workdir: Path
    artifact_path: Path | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    data_ref: dict[str, Any] = field(default_factory=dict)


@contextmanager
def registering(
    *,
    tenant: Tenant,
    model_type: str,
    created_by: str,
    parameters: dict[str, Any] | None = None,
    data_ref: dict[str, Any] | None = None,
) -> Iterator[RegistrationHandle]:
    """``with registering(...) as handle:`` for long jobs: the version number is taken at once
    (status ``registering``, visible in the admin); the artifact is stored when the block ends;
    an exception in the block, or in storing, marks the version ``failed`` and re-raises."""
    _check_model_type(model_type)
    with transaction.atomic():
        version = ModelVersion.objects.create(
            tenant=tenant,
            model_type=model_type,
            version=_next_number(tenant.pk, model_type),
            status=VersionStatus.REGISTERING,
            code_version=code_version(),
            created_by=created_by,
            parameters=jsonable(parameters),
            data_ref=jsonable(data_ref),
        )
    workdir = Path(tempfile.mkdtemp(prefix=f"patra-{model_type}-v{version.version}-"))
    handle = RegistrationHandle(
        version=version, workdir=workdir, parameters=dict(parameters or {}), data_ref=dict(data_ref or {})
    )
    try:
        yield handle
        _registration_complete(handle)
    except BaseException as exc:
        model_version_fail(version=version, error="".join(traceback.format_exception_only(exc)).strip())
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _registration_complete(handle: RegistrationHandle) -> None:
    version = handle.version
    clean = {
        "parameters": jsonable(handle.parameters),
        "metrics": jsonable(handle.metrics),
        "data_ref": jsonable(handle.data_ref),
    }
    source = handle.artifact_path or handle.workdir
    if source == handle.workdir and not any(handle.workdir.iterdir()):
        raise RegistryError(f"{version.label}: the job wrote no artifact.")
    store = artifact_store()
    stored = store.put(Path(source), _artifact_key(version.tenant, version.model_type, version.id))
    try:
        with transaction.atomic():
            _lock_slot(version.tenant_id, version.model_type)
            locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
            if locked.status != VersionStatus.REGISTERING:
                raise RegistryError(f"{version.label} is {locked.status}, no longer registering.")
            _apply_stored(locked, stored)
            for name, value in clean.items():
                setattr(locked, name, value)
            locked.status = VersionStatus.READY
            locked.save(
                update_fields=[
                    "artifact_uri",
                    "checksum",
                    "artifact_size",
                    "artifact_format",
                    "artifact_name",
                    "parameters",
                    "metrics",
                    "data_ref",
                    "status",
                ]
            )
            _auto_activate_if_first(locked)
    except BaseException:
        store.delete(stored.uri)
        raise
    handle.version = locked


def model_version_fail(*, version: ModelVersion, error: str) -> None:
    """Mark a ``registering`` version ``failed`` (never touches one that became ready)."""
    ModelVersion.objects.filter(pk=version.pk, status=VersionStatus.REGISTERING).update(
        status=VersionStatus.FAILED, error=error[:10_000]
    )
    version.refresh_from_db(fields=["status", "error"])


# --- Activation ----------------------------------------------------------------------------------


def _verify_artifact(version: ModelVersion) -> None:
    try:
        artifact_store().verify(version)
    except ArtifactError as exc:
        raise ActivationRefused(f"{version.label} cannot be activated: {exc}") from exc


def _swap(
    *,
    target: ModelVersion | None,
    tenant_id: int,
    model_type: str,
    actor: Actor,
    action: Choice,
    reason: str,
    experiment: Experiment | None = None,
) -> ModelVersion | None:
    """Inside the slot lock: retire the active version (if any), activate ``target`` (if any),
    audit. Retiring comes first so the partial unique index never sees two active rows."""
    current = (
        ModelVersion.objects.select_for_update()
        .filter(tenant_id=tenant_id, model_type=model_type, status=VersionStatus.ACTIVE)
        .first()
    )
    if target is not None:
        target = ModelVersion.objects.select_for_update().get(pk=target.pk)
        if current is not None and current.pk == target.pk:
            raise ActivationRefused(f"{target.label} is already active.")
        if not target.is_activatable:
            raise ActivationRefused(
                f"{target.label} is {target.status}; only ready or retired versions can be activated."
            )
    if current is not None:
        current.status = VersionStatus.RETIRED
        current.save(update_fields=["status"])
    if target is not None:
        target.status = VersionStatus.ACTIVE
        target.activated_at = timezone.now()
        target.save(update_fields=["status", "activated_at"])
    _audit(
        actor=actor,
        action=action,
        tenant_id=tenant_id,
        model_type=model_type,
        from_version=current,
        to_version=target,
        reason=reason,
        experiment=experiment,
    )
    return target


def model_version_activate(*, version: ModelVersion, actor: Actor, reason: str) -> ModelVersion:
    """Make ``version`` the one served for its tenant and type; the previous one is retired."""
    access_registry_admin(actor)
    reason = _require_reason(reason)
    # Hash before taking the lock: a big artifact must not hold other activations waiting.
    _verify_artifact(version)
    with transaction.atomic():
        _lock_slot(version.tenant_id, version.model_type)
        activated = _swap(
            target=version,
            tenant_id=version.tenant_id,
            model_type=version.model_type,
            actor=actor,
            action=AuditAction.ACTIVATE,
            reason=reason,
        )
    assert activated is not None
    return activated


def model_version_rollback(*, tenant: Tenant, model_type: str, actor: Actor, reason: str) -> ModelVersion:
    """Re-activate the version that was active before the current one, in one step."""
    access_registry_admin(actor)
    reason = _require_reason(reason)
    target = rollback_target(tenant_id=tenant.pk, model_type=model_type)
    if target is None:
        raise ActivationRefused("There is no previously active version to roll back to.")
    _verify_artifact(target)
    with transaction.atomic():
        _lock_slot(tenant.pk, model_type)
        # Someone may have changed the slot between the read above and the lock.
        again = rollback_target(tenant_id=tenant.pk, model_type=model_type)
        if again is None or again.pk != target.pk:
            raise ActivationRefused("The active version changed meanwhile; look again and retry.")
        activated = _swap(
            target=target,
            tenant_id=tenant.pk,
            model_type=model_type,
            actor=actor,
            action=AuditAction.ROLLBACK,
            reason=reason,
        )
    assert activated is not None
    return activated


def model_version_deactivate(*, tenant: Tenant, model_type: str, actor: Actor, reason: str) -> ModelVersion:
    """Stop serving the active version (callers fall back to their non-model behaviour)."""
    access_registry_admin(actor)
    reason = _require_reason(reason)
    with transaction.atomic():
        _lock_slot(tenant.pk, model_type)
        current = ModelVersion.objects.filter(
            tenant_id=tenant.pk, model_type=model_type, status=VersionStatus.ACTIVE
        ).first()
        if current is None:
            raise ActivationRefused(f"No {model_type} version is active for {tenant.slug}.")
        _swap(
            target=None,
            tenant_id=tenant.pk,
            model_type=model_type,
            actor=actor,
            action=AuditAction.DEACTIVATE,
            reason=reason,
        )
    current.refresh_from_db()
    return current


# --- Experiments ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArmSpec:
    name: str
    version: ModelVersion
    percent: int


def _check_arms(experiment: Experiment, arms: list[ExperimentArm] | list[ArmSpec]) -> None:
    if len(arms) < 2:
        raise RegistryError("An experiment needs at least two arms.")
    if sum(a.percent for a in arms) != 100:
        raise RegistryError(f"Arm percentages sum to {sum(a.percent for a in arms)}, not 100.")
    if len({a.name for a in arms}) != len(arms):
        raise RegistryError("Arm names must be distinct.")
    for arm in arms:
        v = arm.version
        if v.tenant_id != experiment.tenant_id or v.model_type != experiment.model_type:
            raise RegistryError(f"Arm {arm.name}: {v.label} is not a {experiment.model_type} version of this tenant.")
        if v.status not in (VersionStatus.READY, VersionStatus.ACTIVE, VersionStatus.RETIRED):
            raise RegistryError(f"Arm {arm.name}: {v.label} is {v.status} and cannot serve.")


def experiment_create(
    *, tenant: Tenant, model_type: str, name: str, arms: list[ArmSpec], actor: Actor, salt: str | None = None
) -> Experiment:
    access_registry_admin(actor)
    _check_model_type(model_type)
    experiment = Experiment(tenant=tenant, model_type=model_type, name=name)
    if salt:
        experiment.salt = salt
    _check_arms(experiment, arms)
    with transaction.atomic():
        experiment.save()
        ExperimentArm.objects.bulk_create(
            [ExperimentArm(experiment=experiment, name=a.name, version=a.version, percent=a.percent) for a in arms]
        )
    return experiment


def experiment_arms_set(*, experiment: Experiment, arms: list[ArmSpec], actor: Actor) -> None:
    """Replace a draft's arms. Refused once started: a user's arm is a pure function of the salt
    and the user id over the cumulative split, so a new split would move users between arms."""
    access_registry_admin(actor)
    with transaction.atomic():
        locked = Experiment.objects.select_for_update().get(pk=experiment.pk)
        if locked.status != ExperimentStatus.DRAFT:
            raise RegistryError(f"Experiment {locked.name} is {locked.status}: its arms can no longer change.")
        _check_arms(locked, arms)
        locked.arms.all().delete()
        ExperimentArm.objects.bulk_create(
            [ExperimentArm(experiment=locked, name=a.name, version=a.version, percent=a.percent) for a in arms]
        )


def experiment_start(*, experiment: Experiment, actor: Actor, reason: str) -> Experiment:
    access_registry_admin(actor)
    reason = _require_reason(reason)
    arms = list(experiment.arms.select_related("version"))
    _check_arms(experiment, arms)
    for arm in arms:
        _verify_artifact(arm.version)
    try:
        with transaction.atomic():
            locked = Experiment.objects.select_for_update().get(pk=experiment.pk)
            if locked.status != ExperimentStatus.DRAFT:
                raise RegistryError(f"Experiment {locked.name} is {locked.status}; only a draft can start.")
            locked.status = ExperimentStatus.RUNNING
            locked.started_at = timezone.now()
            locked.save(update_fields=["status", "started_at"])
            _audit(
                actor=actor,
                action=AuditAction.EXPERIMENT_START,
                tenant_id=locked.tenant_id,
                model_type=locked.model_type,
                experiment=locked,
                reason=reason,
            )
    except IntegrityError as exc:
        raise RegistryError(f"Another {experiment.model_type} experiment is already running for this tenant.") from exc
    return locked


def experiment_stop(*, experiment: Experiment, actor: Actor, reason: str) -> Experiment:
    access_registry_admin(actor)
    reason = _require_reason(reason)
    with transaction.atomic():
        locked = Experiment.objects.select_for_update().get(pk=experiment.pk)
        if locked.status != ExperimentStatus.RUNNING:
            raise RegistryError(f"Experiment {locked.name} is {locked.status}, not running.")
        locked.status = ExperimentStatus.STOPPED
        locked.stopped_at = timezone.now()
        locked.save(update_fields=["status", "stopped_at"])
        _audit(
            actor=actor,
            action=AuditAction.EXPERIMENT_STOP,
            tenant_id=locked.tenant_id,
            model_type=locked.model_type,
            experiment=locked,
            reason=reason,
        )
    return locked


def experiment_promote(*, experiment: Experiment, arm: ExperimentArm, actor: Actor, reason: str) -> Experiment:
    """End the experiment (if running) and activate the winning arm's version, in one audited step."""
    access_registry_admin(actor)
    reason = _require_reason(reason)
    if arm.experiment_id != experiment.pk:
        raise RegistryError(f"Arm {arm.name} is not an arm of {experiment.name}.")
    version = arm.version
    _verify_artifact(version)
    with transaction.atomic():
        _lock_slot(experiment.tenant_id, experiment.model_type)
        locked = Experiment.objects.select_for_update().get(pk=experiment.pk)
        if locked.status not in (ExperimentStatus.RUNNING, ExperimentStatus.STOPPED):
            raise RegistryError(f"Experiment {locked.name} is {locked.status}; only a started one can be promoted.")
        current = ModelVersion.objects.filter(
            tenant_id=locked.tenant_id, model_type=locked.model_type, status=VersionStatus.ACTIVE
        ).first()
        if current is not None and current.pk == version.pk:
            # The winner already serves: record the decision, nothing to swap.
            _audit(
                actor=actor,
                action=AuditAction.EXPERIMENT_PROMOTE,
                tenant_id=locked.tenant_id,
                model_type=locked.model_type,
                from_version=current,
                to_version=current,
                experiment=locked,
                reason=reason,
            )
        else:
            _swap(
                target=version,
                tenant_id=locked.tenant_id,
                model_type=locked.model_type,
                actor=actor,
                action=AuditAction.EXPERIMENT_PROMOTE,
                reason=reason,
                experiment=locked,
            )
        locked.status = ExperimentStatus.PROMOTED
        locked.stopped_at = locked.stopped_at or timezone.now()
        locked.winner = arm
        locked.save(update_fields=["status", "stopped_at", "winner"])
    return locked
