"""Safety: model scores, reports, blocks, the moderation queues, decisions and appeals.

Decisions are the audit log: append-only rows, one per human or automated action (decisions,
auto-hides, appeal outcomes and the reversals they cause), each with who, why and what changed.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import Tenant
from recommender.models import Profile


class ProfileSafetyScore(models.Model):
    """The latest classification of a profile (re-computed on every create/update)."""

    profile = models.OneToOneField(Profile, on_delete=models.CASCADE, primary_key=True, related_name="safety_score")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    scores = models.JSONField(default=dict, help_text="{label: calibrated probability}")
    evidence = models.JSONField(default=dict, help_text="{label: {model_score, rules, tokens}}")
    model_version = models.CharField(max_length=64)
    text_hash = models.CharField(max_length=64)
    classified_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"safety score of {self.profile_id} ({self.model_version})"


class Queue(models.TextChoices):
    REVIEW = "review"
    SPECIALIST = "specialist", "specialist (escalated)"
    APPEALS = "appeals"


class ItemStatus(models.TextChoices):
    OPEN = "open"
    DECIDED = "decided"


class QueueItem(models.Model):
    """One piece of moderation work. Reports and model flags on one profile merge into its one
    open review item (a partial unique constraint guarantees it); appeals get their own items.

    ``rank_key`` orders the queue: severity + report terms, minus WAIT_WEIGHT x created hours and
    plus RECENCY_WEIGHT x last report hours. Both time terms are linear in time, so the order
    between items is the same at every instant and the key never needs recomputing as they wait.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="safety_items")
    queue = models.CharField(max_length=16, choices=Queue.choices, default=Queue.REVIEW)
    status = models.CharField(max_length=16, choices=ItemStatus.choices, default=ItemStatus.OPEN)
    severity = models.FloatField(default=0.0, help_text="sum of label weight x probability")
    flagged_labels = models.JSONField(default=list, blank=True)
    report_count = models.PositiveIntegerField(default=0)
    last_reported_at = models.DateTimeField(null=True, blank=True)
    rank_key = models.FloatField(default=0.0, db_index=True)
    auto_hidden = models.BooleanField(default=False, help_text="hidden by the model, pending review")
    appeal = models.OneToOneField("Appeal", null=True, blank=True, on_delete=models.CASCADE, related_name="item")
    created_at = models.DateTimeField(default=timezone.now)
    claimed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    claim_expires_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["profile", "queue"],
                condition=Q(status="open") & ~Q(queue="appeals"),
                name="safety_one_open_item_per_profile_queue",
            )
        ]
        indexes = [models.Index(fields=["queue", "status", "-rank_key"], name="safety_item_queue_rank")]

    def __str__(self) -> str:
        return f"{self.queue} item {self.pk} on {self.profile_id} ({self.status})"


class ReportReason(models.TextChoices):
    INAPPROPRIATE = "inappropriate"
    SPAM_SCAM = "spam_scam", "spam or scam"
    HARASSMENT = "harassment"
    FAKE_PROFILE = "fake_profile", "fake profile"
    UNDERAGE = "underage"
    OTHER = "other"


class Report(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    reporter = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="reports_made")
    reported = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="reports_received")
    reason = models.CharField(max_length=16, choices=ReportReason.choices)
    text = models.TextField(blank=True, default="")
    item = models.ForeignKey(QueueItem, null=True, on_delete=models.SET_NULL, related_name="reports")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.CheckConstraint(condition=~Q(reporter=F("reported")), name="safety_report_not_self")]
        indexes = [models.Index(fields=["tenant", "reporter"], name="safety_report_reporter")]

    def __str__(self) -> str:
        return f"{self.reporter_id} reported {self.reported_id} ({self.reason})"


class Block(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    blocker = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="blocks_made")
    blocked = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="blocks_received")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["blocker", "blocked"], name="safety_block_unique"),
            models.CheckConstraint(condition=~Q(blocker=F("blocked")), name="safety_block_not_self"),
        ]
        indexes = [models.Index(fields=["tenant", "blocked"], name="safety_block_blocked")]

    def __str__(self) -> str:
        return f"{self.blocker_id} blocked {self.blocked_id}"


class Action(models.TextChoices):
    APPROVE = "approve"
    HIDE = "hide"
    BAN = "ban"
    ESCALATE = "escalate"
    AUTO_HIDE = "auto_hide", "auto-hide (model)"
    APPEAL_ACCEPT = "appeal_accept", "appeal accepted"
    APPEAL_REJECT = "appeal_reject", "appeal rejected"


class PolicyLabel(models.TextChoices):
    NO_VIOLATION = "no_violation", "no violation"
    SEXUAL_CONTENT = "sexual_content", "sexual content"
    SPAM_SCAM = "spam_scam", "spam or scam"
    HARASSMENT_HATE = "harassment_hate", "harassment or hate"
    FAKE_IMPERSONATION = "fake_impersonation", "fake or impersonation"
    UNDERAGE = "underage", "underage"
    OTHER = "other", "other policy"


class Decision(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    item = models.ForeignKey(QueueItem, on_delete=models.CASCADE, related_name="decisions")
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="safety_decisions")
    moderator = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    automated = models.BooleanField(default=False)
    action = models.CharField(max_length=16, choices=Action.choices)
    policy_label = models.CharField(max_length=32, choices=PolicyLabel.choices)
    rationale = models.TextField()
    status_before = models.CharField(max_length=16)
    status_after = models.CharField(max_length=16)
    scores = models.JSONField(default=dict, blank=True, help_text="model scores when decided")
    model_version = models.CharField(max_length=64, blank=True, default="")
    # The text decided on: a decision is a labelled example for retraining (safety/services.py),
    # and a later edit of the profile must not change what the label applies to.
    text_snapshot = models.TextField(blank=True, default="")
    text_hash = models.CharField(max_length=64, blank=True, default="")
    bulk = models.BooleanField(default=False)
    reverses = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reversed_by")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.action} on {self.profile_id} by {self.moderator_id or 'model'}"


class AppealStatus(models.TextChoices):
    OPEN = "open"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class Appeal(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    decision = models.ForeignKey(Decision, on_delete=models.CASCADE, related_name="appeals")
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="safety_appeals")
    text = models.TextField()
    status = models.CharField(max_length=16, choices=AppealStatus.choices, default=AppealStatus.OPEN)
    created_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["decision"], condition=Q(status="open"), name="safety_one_open_appeal_per_decision"
            )
        ]

    def __str__(self) -> str:
        return f"appeal {self.pk} on decision {self.decision_id} ({self.status})"
