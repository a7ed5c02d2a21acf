"""The model registry: versions of trained artifacts, which one serves, experiments and task runs.

Lifecycle of a :class:`ModelVersion` (``status``):

* ``registering``: the row exists while a long job still writes its artifact (the ``registering()``
  context manager). Never activatable.
* ``ready``: the artifact is stored and its sha256 recorded. May be activated.
* ``failed``: the job raised, or the artifact could not be stored. Kept as a record, never served.
* ``active``: the one version served for its tenant and model type. At most one per
  (tenant, model type), enforced by a partial unique index, not only by code.
* ``retired``: was active and was replaced or deactivated. May be activated again (rollback).

Versions are never deleted, so audit rows and impressions can always name them.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Tenant

# A member of one of the choices below. Django makes every member a str; mypy, without Django's
# type stubs, reads a member declared with a label (``TAR = "tar", "directory ..."``) as a tuple,
# so code that passes members around annotates them with this.
Choice = Any


class ModelType(models.TextChoices):
    EMBEDDING = "embedding"
    COLLABORATIVE = "collaborative"
    RANKER = "ranker"
    SAFETY = "safety"
    INDEX = "index"


class VersionStatus(models.TextChoices):
    REGISTERING = "registering"
    READY = "ready"
    FAILED = "failed"
    ACTIVE = "active"
    RETIRED = "retired"


ACTIVATABLE = (VersionStatus.READY, VersionStatus.RETIRED)
# Versions whose artifact can be served (an experiment arm need not be the active version).
SERVABLE = (VersionStatus.READY, VersionStatus.ACTIVE, VersionStatus.RETIRED)


class ArtifactFormat(models.TextChoices):
    FILE = "file", "single file"
    TAR = "tar", "directory (tar archive)"


class ModelSlot(models.Model):
    """One row per (tenant, model type): the version counter, and the row that activations and
    registrations lock (``select_for_update``) so that they serialise per slot."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    model_type = models.CharField(max_length=16, choices=ModelType.choices)
    last_version = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "model_type"], name="model_slot_unique")]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.model_type} (last v{self.last_version})"


class ModelVersion(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    model_type = models.CharField(max_length=16, choices=ModelType.choices)
    version = models.PositiveIntegerField(help_text="Monotonic per tenant and model type, from 1.")
    status = models.CharField(max_length=16, choices=VersionStatus.choices, default=VersionStatus.READY)

    artifact_uri = models.CharField(max_length=500, blank=True, default="")
    artifact_format = models.CharField(max_length=8, choices=ArtifactFormat.choices, default=ArtifactFormat.FILE)
    artifact_name = models.CharField(max_length=255, blank=True, default="", help_text="Original file name.")
    artifact_size = models.BigIntegerField(null=True, blank=True)
    checksum = models.CharField(max_length=64, blank=True, default="", help_text="sha256 of the stored bytes")

    parameters = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True, help_text='Scalars, plus optional {"curves": {name: [..]}}.')
    data_ref = models.JSONField(default=dict, blank=True, help_text="Training data: split, row counts, time range.")
    code_version = models.CharField(max_length=64, blank=True, default="")
    created_by = models.CharField(max_length=200, help_text="A user name, or a task such as 'task:train_ranker'.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    activated_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["tenant", "model_type", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "model_type", "version"], name="model_version_unique_number"),
            models.UniqueConstraint(
                fields=["tenant", "model_type"],
                condition=Q(status=VersionStatus.ACTIVE),
                name="model_version_one_active",
            ),
        ]
        permissions = [
            ("activate_modelversion", "Can activate, roll back and deactivate model versions and run experiments"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.label}"

    @property
    def label(self) -> str:
        """What impressions record in ``Impression.model_version`` (at most 64 characters)."""
        return f"{self.model_type}-v{self.version}"

    @property
    def is_activatable(self) -> bool:
        return self.status in ACTIVATABLE


class AuditAction(models.TextChoices):
    ACTIVATE = "activate"
    AUTO_ACTIVATE = "auto_activate", "auto-activate"
    ROLLBACK = "rollback"
    DEACTIVATE = "deactivate"
    EXPERIMENT_START = "experiment_start", "experiment start"
    EXPERIMENT_STOP = "experiment_stop", "experiment stop"
    EXPERIMENT_PROMOTE = "experiment_promote", "experiment promote"


class AuditLog(models.Model):
    """Who changed what is served, when and why. Written in the same transaction as the change."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.CharField(max_length=200, help_text="A user name, or a system actor such as 'system:cli'.")
    actor_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    action = models.CharField(max_length=32, choices=AuditAction.choices)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    model_type = models.CharField(max_length=16, choices=ModelType.choices)
    from_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="audit_from"
    )
    to_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="audit_to"
    )
    experiment = models.ForeignKey("Experiment", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    reason = models.TextField()

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [models.Index(fields=["tenant", "model_type", "-at"], name="audit_slot_time")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor} {self.action}"


def new_salt() -> str:
    return secrets.token_hex(8)


class ExperimentStatus(models.TextChoices):
    DRAFT = "draft"
    RUNNING = "running"
    STOPPED = "stopped"
    PROMOTED = "promoted"


class Experiment(models.Model):
    """An A/B test between versions of one model type. Arms and salt are fixed once running: a
    user's arm is a pure function of (salt, user id), so changing them would move users between
    arms mid-test; the services and the admin refuse it."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    model_type = models.CharField(max_length=16, choices=ModelType.choices)
    name = models.CharField(max_length=100)
    salt = models.CharField(max_length=64, default=new_salt)
    status = models.CharField(max_length=16, choices=ExperimentStatus.choices, default=ExperimentStatus.DRAFT)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    winner = models.ForeignKey("ExperimentArm", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="experiment_unique_name"),
            models.UniqueConstraint(
                fields=["tenant", "model_type"],
                condition=Q(status=ExperimentStatus.RUNNING),
                name="experiment_one_running",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.model_type}, {self.status})"


class ExperimentArm(models.Model):
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="arms")
    name = models.SlugField(max_length=40)
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    percent = models.PositiveSmallIntegerField(help_text="Share of users, 0 to 100; the arms sum to 100.")

    class Meta:
        # Assignment walks the arms in this order: it must never change for a running experiment.
        ordering = ["experiment", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "name"], name="experiment_arm_unique_name"),
            models.CheckConstraint(condition=Q(percent__lte=100), name="experiment_arm_percent_max"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.percent}%)"

    @property
    def tag(self) -> str:
        """What impressions record in ``Impression.experiment_arm``: unique across experiments,
        so two experiments' arms called "control" are never mixed up in a report."""
        return f"x{self.experiment_id}:{self.name}"


class TaskRunStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class TaskRun(models.Model):
    """A training, embedding or indexing job started from the admin (or code), with its progress
    and the version it produced."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=100, help_text="The job's name in registry.tasks.JOBS.")
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=TaskRunStatus.choices, default=TaskRunStatus.QUEUED)
    progress = models.JSONField(default=dict, blank=True)
    celery_task_id = models.CharField(max_length=255, blank=True, default="")
    started_by = models.CharField(max_length=200)
    version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} for {self.tenant_id} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in (TaskRunStatus.SUCCEEDED, TaskRunStatus.FAILED)
