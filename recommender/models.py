"""Profiles and the event tables.

Every row belongs to exactly one tenant (``accounts.Tenant``, where tenants and credentials
live). Events carry their tenant too (denormalised) so that every query can be scoped by tenant
without a join, and so that an index can lead with it.
"""

from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from recommender.vocabulary import LIFESTYLE_FIELDS, MAX_AGE, MIN_AGE


class Gender(models.TextChoices):
    WOMAN = "woman"
    MAN = "man"
    NONBINARY = "nonbinary"


class ProfileStatus(models.TextChoices):
    ACTIVE = "active"
    HIDDEN = "hidden"
    BANNED = "banned"
    # An erased profile is a tombstone: personal fields wiped, external id replaced by a random
    # one, kept only so that its events survive in anonymised form.
    ERASED = "erased"


# LIFESTYLE_FIELDS (recommender.vocabulary) are both Profile columns and the keys of the API's
# `attributes` object.


class Profile(models.Model):
    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="profiles")
    external_id = models.UUIDField(help_text="The app's user UUID; unique per tenant.")
    status = models.CharField(max_length=16, choices=ProfileStatus.choices, default=ProfileStatus.ACTIVE)

    age = models.PositiveSmallIntegerField(validators=[MinValueValidator(MIN_AGE), MaxValueValidator(MAX_AGE)])
    gender = models.CharField(max_length=16, choices=Gender.choices)
    seeking = models.JSONField(default=list, help_text="Genders sought, a list of gender values.")
    age_min = models.PositiveSmallIntegerField(
        default=MIN_AGE, validators=[MinValueValidator(MIN_AGE), MaxValueValidator(MAX_AGE)]
    )
    age_max = models.PositiveSmallIntegerField(
        default=MAX_AGE, validators=[MinValueValidator(MIN_AGE), MaxValueValidator(MAX_AGE)]
    )
    max_distance_km = models.FloatField(default=50.0, validators=[MinValueValidator(1.0), MaxValueValidator(20_000.0)])
    lat = models.FloatField(validators=[MinValueValidator(-90.0), MaxValueValidator(90.0)])
    lon = models.FloatField(validators=[MinValueValidator(-180.0), MaxValueValidator(180.0)])
    bio = models.TextField(blank=True, default="")
    prompts = models.JSONField(default=list, blank=True, help_text="A list of {question, answer}.")
    interests = models.JSONField(default=list, blank=True, help_text="A list of strings.")

    body_type = models.CharField(max_length=64, blank=True, default="")
    diet = models.CharField(max_length=64, blank=True, default="")
    drinks = models.CharField(max_length=64, blank=True, default="")
    drugs = models.CharField(max_length=64, blank=True, default="")
    education = models.CharField(max_length=128, blank=True, default="")
    ethnicity = models.CharField(max_length=200, blank=True, default="")
    height = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(50), MaxValueValidator(272)], help_text="cm"
    )
    job = models.CharField(max_length=128, blank=True, default="")
    offspring = models.CharField(max_length=128, blank=True, default="")
    orientation = models.CharField(max_length=64, blank=True, default="")
    pets = models.CharField(max_length=128, blank=True, default="")
    religion = models.CharField(max_length=128, blank=True, default="")
    smokes = models.CharField(max_length=64, blank=True, default="")
    speaks = models.CharField(max_length=255, blank=True, default="")
    relationship_status = models.CharField(max_length=64, blank=True, default="")

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    erased_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "external_id"], name="profile_unique_external_id"),
            models.CheckConstraint(condition=Q(age_min__lte=F("age_max")), name="profile_age_range_ordered"),
            models.CheckConstraint(condition=Q(age__gte=MIN_AGE, age__lte=MAX_AGE), name="profile_age_bounds"),
            models.CheckConstraint(condition=Q(lat__gte=-90.0, lat__lte=90.0), name="profile_lat_bounds"),
            models.CheckConstraint(condition=Q(lon__gte=-180.0, lon__lte=180.0), name="profile_lon_bounds"),
        ]
        indexes = [
            models.Index(fields=["tenant", "status"], name="profile_tenant_status"),
            # Serving processes poll for changes since their watermark every few seconds.
            models.Index(fields=["tenant", "updated_at"], name="profile_tenant_updated"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.external_id}"

    def clean(self) -> None:
        if self.age_min is not None and self.age_max is not None and self.age_min > self.age_max:
            raise ValidationError({"age_min": "age_min must not be greater than age_max."})

    @property
    def is_visible(self) -> bool:
        return self.status == ProfileStatus.ACTIVE

    def attributes(self) -> dict[str, str | int | None]:
        return {name: getattr(self, name) for name in LIFESTYLE_FIELDS}


# --- Events ---------------------------------------------------------------------------------


class SwipeAction(models.TextChoices):
    LIKE = "like"
    PASS = "pass"
    SUPERLIKE = "superlike"


POSITIVE_ACTIONS = (SwipeAction.LIKE, SwipeAction.SUPERLIKE)


class Impression(models.Model):
    """A candidate shown to a user in a feed."""

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="+")
    user = models.ForeignKey(Profile, on_delete=models.PROTECT, related_name="impressions")
    candidate = models.ForeignKey(Profile, on_delete=models.PROTECT, related_name="+")
    position = models.PositiveIntegerField()
    context_hash = models.CharField(max_length=128, blank=True, default="")
    model_version = models.CharField(max_length=64, blank=True, default="")
    experiment_arm = models.CharField(max_length=64, blank=True, default="")
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "candidate", "occurred_at"], name="impression_unique_user_candidate_time"
            )
        ]
        indexes = [models.Index(fields=["tenant", "occurred_at"], name="impression_tenant_time")]

    def __str__(self) -> str:
        return f"{self.user_id} saw {self.candidate_id} at #{self.position}"


class Swipe(models.Model):
    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="+")
    user = models.ForeignKey(Profile, on_delete=models.PROTECT, related_name="swipes_made")
    candidate = models.ForeignKey(Profile, on_delete=models.PROTECT, related_name="swipes_received")
    action = models.CharField(max_length=16, choices=SwipeAction.choices)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    session_id = models.CharField(max_length=128)
    # NULL, not "", when the app sends no id: the partial unique constraint below skips NULLs.
    client_event_id = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "client_event_id"],
                condition=Q(client_event_id__isnull=False),
                name="swipe_unique_client_event",
            ),
            models.UniqueConstraint(
                fields=["user", "candidate", "session_id", "occurred_at"], name="swipe_unique_natural_key"
            ),
            models.CheckConstraint(condition=~Q(user=F("candidate")), name="swipe_not_self"),
        ]
        indexes = [
            # "everyone this user has swiped"
            models.Index(fields=["user", "candidate"], name="swipe_user_candidate"),
            # "who liked this user"
            models.Index(fields=["candidate", "action"], name="swipe_candidate_action"),
            models.Index(fields=["tenant", "occurred_at"], name="swipe_tenant_time"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.action} {self.candidate_id}"


class MatchType(models.TextChoices):
    MUTUAL_LIKE = "mutual_like"
    SUPERLIKE = "superlike", "mutual, at least one superlike"
    EXTERNAL = "external", "reported by a service"


class Match(models.Model):
    """A pair stored once, in canonical order (user_a.id < user_b.id)."""

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="+")
    user_a = models.ForeignKey(Profile, on_delete=models.PROTECT, related_name="+")
    user_b = models.ForeignKey(Profile, on_delete=models.PROTECT, related_name="+")
    match_type = models.CharField(max_length=16, choices=MatchType.choices, default=MatchType.MUTUAL_LIKE)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name_plural = "matches"
        constraints = [
            models.UniqueConstraint(fields=["user_a", "user_b"], name="match_unique_pair"),
            models.CheckConstraint(condition=Q(user_a__lt=F("user_b")), name="match_canonical_order"),
        ]
        indexes = [
            models.Index(fields=["user_b"], name="match_user_b"),
            models.Index(fields=["tenant", "occurred_at"], name="match_tenant_time"),
        ]

    def __str__(self) -> str:
        return f"match {self.user_a_id} & {self.user_b_id}"


class EloRating(models.Model):
    """A profile's desirability rating, derived from swipes (rebuildable from the Swipe table)."""

    profile = models.OneToOneField(Profile, on_delete=models.CASCADE, primary_key=True, related_name="elo")
    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="+")
    rating = models.FloatField(default=1500.0)
    swipes_received = models.PositiveIntegerField(default=0)
    # How selective the profile is as a swiper: the feed's estimate of P(v likes u) scales with
    # v's own like rate (a like from someone who likes few people is rare).
    swipes_given = models.PositiveIntegerField(default=0)
    likes_given = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "-rating"], name="elo_tenant_rating"),
            models.Index(fields=["tenant", "updated_at"], name="elo_tenant_updated"),
        ]

    def __str__(self) -> str:
        return f"{self.profile_id}: {self.rating:.0f}"


def new_external_id() -> uuid.UUID:
    return uuid.uuid4()


class ProfileEmbedding(models.Model):
    """A profile's bio embedding (float32 bytes), the source of truth for the ANN index and the
    Redis cache, both of which are derived and rebuildable from this table."""

    profile = models.OneToOneField(Profile, on_delete=models.CASCADE, primary_key=True, related_name="embedding")
    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="+")
    model_name = models.CharField(max_length=200)
    dim = models.PositiveSmallIntegerField()
    vector = models.BinaryField(help_text="float32 little-endian, L2-normalised")
    text_hash = models.CharField(
        max_length=64, help_text="sha256 of the embedded text: unchanged text is not re-embedded"
    )
    updated_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "updated_at"], name="embedding_tenant_updated")]

    def __str__(self) -> str:
        return f"embedding of {self.profile_id} ({self.model_name})"


class EloBaseline(models.Model):
    """A profile's Elo state after the swipes that retention deleted (recommender/services/retention.py).

    Retention folds every swipe it deletes into this row, in time order, before deleting it, so
    ``elo_rebuild`` (which replays the swipe table) starts from here and ends where the
    incremental updates ended: pruning raw events never loses the aggregate the feed needs.
    """

    profile = models.OneToOneField(Profile, on_delete=models.CASCADE, primary_key=True, related_name="+")
    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="+")
    rating = models.FloatField()
    swipes_received = models.PositiveIntegerField(default=0)
    swipes_given = models.PositiveIntegerField(default=0)
    likes_given = models.PositiveIntegerField(default=0)
    # The newest occurred_at folded in: every swipe of this profile up to here is in the row.
    pruned_through = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["tenant"], name="elo_baseline_tenant")]

    def __str__(self) -> str:
        return f"baseline {self.profile_id}: {self.rating:.0f}"
