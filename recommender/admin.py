"""The Django admin for moderators (profiles and their activity) and ML admins (the event tables).

Rules that hold for every model here:

* Anything that changes data goes through ``recommender.services``, never a direct model write,
  so feeds, indexes and tokens follow (the services run the profile hooks).
* Event tables (impressions, swipes, matches, Elo ratings) are strictly read-only: they are the
  training data and the audit trail. They hold millions of rows, so their pages avoid full counts,
  select lists of every profile and unindexed searches.
* Profiles are never deleted here: erasure goes through the API's erase service, which keeps the
  events in anonymised form.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.text import Truncator

from core.admin import PatraModelAdmin, ReadOnlyAdmin
from recommender.models import (
    LIFESTYLE_FIELDS,
    EloRating,
    Impression,
    Match,
    Profile,
    ProfileStatus,
    Swipe,
)
from recommender.services.profiles import PROFILE_PLAIN_FIELDS, profile_set_status, profile_update
from recommender.validation import ProfileSerializer

admin.site.site_header = "Patra administration"
admin.site.site_title = "Patra admin"
admin.site.index_title = "Site administration"

# --- Profiles ----------------------------------------------------------------------------------


def _flatten_errors(errors: Any) -> list[str]:
    """DRF error details (nested lists and dicts) as flat strings for a form error."""
    if isinstance(errors, dict):
        return [f"{key}: {msg}" for key, value in errors.items() for msg in _flatten_errors(value)]
    if isinstance(errors, list):
        return [msg for item in errors for msg in _flatten_errors(item)]
    return [str(errors)]


class ProfileAdminForm(forms.ModelForm):
    """Edits are checked by the API's ProfileSerializer, so the admin cannot store what the API
    would refuse (a malformed prompt list, an unknown gender, or the status "erased", which only
    the erase service may set)."""

    class Meta:
        model = Profile
        # The ModelAdmin narrows this to its fieldsets minus the read-only fields.
        fields = (*PROFILE_PLAIN_FIELDS, *LIFESTYLE_FIELDS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.validated_changes: dict[str, Any] = {}
        if "status" in self.fields:
            self.fields["status"].choices = [c for c in ProfileStatus.choices if c[0] != ProfileStatus.ERASED]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        changed = [name for name in self.changed_data if name in cleaned]
        if not changed:
            return cleaned
        # The whole profile is validated, not just the changes: with partial=True DRF does not
        # require the keys of nested items, so a prompt without a question would slip through.
        payload = dict(ProfileSerializer(self.instance).data)
        payload.update({n: cleaned[n] for n in changed if n not in LIFESTYLE_FIELDS})
        payload["attributes"] = {**payload["attributes"], **{n: cleaned[n] for n in changed if n in LIFESTYLE_FIELDS}}
        serializer = ProfileSerializer(instance=self.instance, data=payload)
        if serializer.is_valid():
            valid = serializer.validated_data
            self.validated_changes = {n: valid[n] for n in changed if n not in LIFESTYLE_FIELDS}
            attributes = {n: valid["attributes"][n] for n in changed if n in LIFESTYLE_FIELDS}
            if attributes:
                self.validated_changes["attributes"] = attributes
            return cleaned
        for name, errors in serializer.errors.items():
            if name == "attributes" and isinstance(errors, dict):
                for attr, attr_errors in errors.items():
                    self.add_error(attr if attr in self.fields else None, _flatten_errors(attr_errors))
            else:
                self.add_error(name if name in self.fields else None, _flatten_errors(errors))
        return cleaned


@admin.register(Profile)
class ProfileAdmin(PatraModelAdmin):
    form = ProfileAdminForm
    list_display = ("external_id", "tenant", "status", "age", "gender", "short_bio", "created_at")
    list_filter = ("tenant", "status", "gender")
    list_select_related = ("tenant",)
    search_fields = ("=external_id", "bio")
    search_help_text = "An exact external id (UUID), or words of the bio."
    date_hierarchy = "created_at"
    ordering = ("-pk",)
    actions = ("hide", "restore", "ban")
    readonly_fields = (
        "tenant",
        "external_id",
        "created_at",
        "updated_at",
        "erased_at",
        "swipes_made_count",
        "swipes_received_count",
        "elo_rating",
    )
    fieldsets = (
        ("Identity and status", {"fields": ("tenant", "external_id", "status", "age", "gender")}),
        ("Preferences", {"fields": ("seeking", ("age_min", "age_max"), "max_distance_km")}),
        ("Location", {"fields": (("lat", "lon"),)}),
        ("Content", {"fields": ("bio", "prompts", "interests")}),
        ("Lifestyle attributes", {"fields": LIFESTYLE_FIELDS, "classes": ("collapse",)}),
        ("Activity", {"fields": ("swipes_made_count", "swipes_received_count", "elo_rating")}),
        ("Timestamps", {"fields": ("created_at", "updated_at", "erased_at")}),
    )

    @admin.display(description="bio")
    def short_bio(self, obj: Profile) -> str:
        return Truncator(obj.bio).chars(60)

    # One indexed COUNT each (swipe_user_candidate, swipe_candidate_action): cheap even for
    # heavy users, unlike an inline that would render every swipe.
    @admin.display(description="swipes made")
    def swipes_made_count(self, obj: Profile) -> int:
        return obj.swipes_made.count()

    @admin.display(description="swipes received")
    def swipes_received_count(self, obj: Profile) -> int:
        return obj.swipes_received.count()

    @admin.display(description="Elo rating")
    def elo_rating(self, obj: Profile) -> str:
        rating = EloRating.objects.filter(profile=obj).values_list("rating", flat=True).first()
        return "—" if rating is None else f"{rating:.0f}"

    def get_readonly_fields(self, request: HttpRequest, obj: Profile | None = None) -> Sequence[str]:
        if obj is not None and obj.status == ProfileStatus.ERASED:
            # A tombstone: nothing about it may change any more.
            every_field = [f.name for f in Profile._meta.fields if f.name != "id"]
            return list(dict.fromkeys([*every_field, *self.readonly_fields]))
        return self.readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Profiles come from the apps through the API, with the app's own user id.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Profile | None = None) -> bool:
        # Erasure goes through the API's erase service, which anonymises instead of deleting.
        return False

    def save_model(self, request: HttpRequest, obj: Profile, form: ProfileAdminForm, change: bool) -> None:
        # Through the service, so feeds and the index follow the change.
        profile_update(profile=obj, data=form.validated_changes)

    def _set_status(self, request: HttpRequest, queryset: QuerySet[Profile], status: str, verb: str) -> None:
        changed = skipped_erased = 0
        for profile in queryset:
            if profile.status == ProfileStatus.ERASED:
                skipped_erased += 1
            elif profile.status != status:
                profile_set_status(profile=profile, status=status)
                changed += 1
        self.message_user(request, f"{changed} profile(s) {verb}.", messages.SUCCESS)
        if skipped_erased:
            self.message_user(
                request, f"{skipped_erased} erased profile(s) skipped: erasure is final.", messages.WARNING
            )

    @admin.action(description="Hide selected profiles", permissions=["change"])
    def hide(self, request: HttpRequest, queryset: QuerySet[Profile]) -> None:
        self._set_status(request, queryset, ProfileStatus.HIDDEN, "hidden")

    @admin.action(description="Restore (activate) selected profiles", permissions=["change"])
    def restore(self, request: HttpRequest, queryset: QuerySet[Profile]) -> None:
        self._set_status(request, queryset, ProfileStatus.ACTIVE, "restored")

    @admin.action(description="Ban selected profiles", permissions=["change"])
    def ban(self, request: HttpRequest, queryset: QuerySet[Profile]) -> None:
        self._set_status(request, queryset, ProfileStatus.BANNED, "banned")


# --- Events ------------------------------------------------------------------------------------


@admin.register(Impression)
class ImpressionAdmin(ReadOnlyAdmin):
    list_display = ("id", "tenant", "user", "candidate", "position", "model_version", "experiment_arm", "occurred_at")
    list_filter = ("tenant",)
    list_select_related = ("tenant", "user", "candidate")
    search_fields = ("=user__external_id", "=candidate__external_id")
    search_help_text = "The external id (UUID) of the user or the candidate."
    date_hierarchy = "occurred_at"
    raw_id_fields = ("user", "candidate")
    # Newest first by primary key: always indexed, and close to arrival order.
    ordering = ("-pk",)


@admin.register(Swipe)
class SwipeAdmin(ReadOnlyAdmin):
    list_display = ("id", "tenant", "user", "candidate", "action", "duration_ms", "occurred_at")
    list_filter = ("tenant", "action")
    list_select_related = ("tenant", "user", "candidate")
    search_fields = ("=user__external_id", "=candidate__external_id")
    search_help_text = "The external id (UUID) of the swiper or the swiped."
    date_hierarchy = "occurred_at"
    raw_id_fields = ("user", "candidate")
    ordering = ("-pk",)


@admin.register(Match)
class MatchAdmin(ReadOnlyAdmin):
    list_display = ("id", "tenant", "user_a", "user_b", "match_type", "occurred_at")
    list_filter = ("tenant", "match_type")
    list_select_related = ("tenant", "user_a", "user_b")
    search_fields = ("=user_a__external_id", "=user_b__external_id")
    search_help_text = "The external id (UUID) of either profile."
    date_hierarchy = "occurred_at"
    raw_id_fields = ("user_a", "user_b")
    ordering = ("-pk",)


@admin.register(EloRating)
class EloRatingAdmin(ReadOnlyAdmin):
    list_display = ("profile", "tenant", "rating", "swipes_received", "updated_at")
    list_filter = ("tenant",)
    list_select_related = ("tenant", "profile")
    search_fields = ("=profile__external_id",)
    search_help_text = "A profile's external id (UUID)."
    raw_id_fields = ("profile",)
    ordering = ("-rating",)
