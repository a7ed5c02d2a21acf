"""Read-only admin views of safety data: every change goes through the console's services, which
audit it; the admin is for looking things up."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from safety.models import Appeal, Block, Decision, ProfileSafetyScore, QueueItem, Report


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(QueueItem)
class QueueItemAdmin(ReadOnly):
    list_display = ("pk", "queue", "status", "profile", "severity", "report_count", "auto_hidden", "created_at")
    list_filter = ("queue", "status", "auto_hidden")


@admin.register(Decision)
class DecisionAdmin(ReadOnly):
    list_display = ("pk", "created_at", "action", "policy_label", "moderator", "automated", "profile", "status_after")
    list_filter = ("action", "automated", "policy_label")


@admin.register(Report)
class ReportAdmin(ReadOnly):
    list_display = ("pk", "created_at", "reason", "reporter", "reported")


@admin.register(Block)
class BlockAdmin(ReadOnly):
    list_display = ("pk", "created_at", "blocker", "blocked")


@admin.register(Appeal)
class AppealAdmin(ReadOnly):
    list_display = ("pk", "created_at", "status", "profile", "decision")


@admin.register(ProfileSafetyScore)
class ProfileSafetyScoreAdmin(ReadOnly):
    list_display = ("profile", "model_version", "classified_at")
