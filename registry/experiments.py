"""A/B experiments between model versions: assignment, the feed's hook, and the report.

Assignment is sticky without storing anything: ``sha256(salt + ":" + user id)`` gives a bucket
0..9999 and the arms, in a fixed order, own consecutive ranges of buckets by their percentages.
A user therefore keeps their arm for the whole experiment, as long as the salt and the split do
not change, which is why the services refuse to change the arms of a started experiment.

The report needs what each arm's users did, which the app that records impressions, swipes and
matches knows (recommender, above the registry): it registers an *outcome reader* at start-up
(``register_outcome_reader`` in its AppConfig.ready) and the report asks it, arm by arm. Feeds tag
the impressions they serve with the arm (``ExperimentArm.tag``), so the reader can tell the arms
apart.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from django.conf import settings
from django.utils import timezone

from accounts.models import Tenant
from core.refresher import refresh_later
from registry.models import Experiment, ExperimentArm
from registry.selectors import running_experiment

BUCKETS = 10_000
Z_95 = 1.959963984540054


def assignment_bucket(salt: str, user_external_id: uuid.UUID | str) -> int:
    # Normalise so a UUID and its string (any case) land in the same bucket.
    user = str(uuid.UUID(str(user_external_id)))
    digest = hashlib.sha256(f"{salt}:{user}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def assign_bucket_to_arm(bucket: int, arms: list[ExperimentArm]) -> ExperimentArm:
    edge = 0
    for arm in arms:
        edge += arm.percent * (BUCKETS // 100)
        if bucket < edge:
            return arm
    raise ValueError(f"The arms cover {edge} of {BUCKETS} buckets; their percentages must sum to 100.")


def experiment_assign(experiment: Experiment, user_external_id: uuid.UUID | str) -> ExperimentArm:
    """The arm of a user: a pure function of the experiment's salt, its arms and the user id."""
    arms = list(experiment.arms.all())  # the model's ordering (pk), prefetched when available
    return assign_bucket_to_arm(assignment_bucket(experiment.salt, user_external_id), arms)


# --- The feed's hook -------------------------------------------------------------------------------

_cache_lock = threading.Lock()
_running_cache: dict[tuple[int, str], tuple[float, Experiment | None]] = {}


def _running(tenant_id: int, model_type: str) -> Experiment | None:
    """The running experiment, remembered for REGISTRY_REFRESH_SECONDS so a feed request costs
    no query most of the time (a started or stopped experiment is noticed within that delay)."""
    ttl = float(settings.REGISTRY_REFRESH_SECONDS)
    key = (tenant_id, model_type)
    with _cache_lock:
        cached = _running_cache.get(key)
    if ttl > 0 and cached is not None:
        if cached[0] <= time.monotonic():
            # Stale: re-read on the refresher thread; this request keeps the remembered answer.
            refresh_later(("running-experiment", key), lambda: _remember_running(key, ttl))
        return cached[1]
    return _remember_running(key, ttl)


def _remember_running(key: tuple[int, str], ttl: float) -> Experiment | None:
    now = time.monotonic()
    experiment = running_experiment(tenant_id=key[0], model_type=key[1])
    with _cache_lock:
        _running_cache[key] = (now + ttl, experiment)
    return experiment


class _User(Protocol):
    # A profile of the app that serves feeds: all the assignment needs of it.
    @property
    def external_id(self) -> uuid.UUID: ...


def experiment_for_impression(tenant: Tenant, model_type: str, user: _User) -> tuple[str, str] | None:
    """``(arm tag, version label)`` to record on the user's impressions and to serve the user
    with, or None when no experiment of this type runs for the tenant."""
    experiment = _running(tenant.pk, model_type)
    if experiment is None:
        return None
    arm = experiment_assign(experiment, user.external_id)
    return arm.tag, arm.version.label


# --- Statistics -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    successes: int
    trials: int
    low: float
    high: float

    @property
    def value(self) -> float:
        return self.successes / self.trials if self.trials else 0.0


def wilson(successes: int, trials: int, z: float = Z_95) -> Rate:
    """The Wilson score interval: well-behaved for small counts and rates near 0 (unlike p±z·se)."""
    if trials == 0:
        return Rate(0, 0, 0.0, 1.0)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return Rate(successes, trials, max(0.0, centre - half), min(1.0, centre + half))


def two_proportion_p_value(a: Rate, b: Rate) -> float | None:
    """Two-sided p-value of the pooled two-proportion z-test; None without data on either side."""
    if a.trials == 0 or b.trials == 0:
        return None
    pooled = (a.successes + b.successes) / (a.trials + b.trials)
    se = math.sqrt(pooled * (1 - pooled) * (1 / a.trials + 1 / b.trials))
    if se == 0:
        return 1.0  # both all-zero or all-one: no evidence of a difference
    z = (a.value - b.value) / se
    return math.erfc(abs(z) / math.sqrt(2))


# --- Report -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArmReport:
    arm: ExperimentArm
    impressions: int
    swipes: int
    positive_swipes: int
    matches: int
    like: Rate
    match: Rate
    like_p_value: float | None  # against the first arm (the control); None for the control
    match_p_value: float | None

    @property
    def like_significant(self) -> bool:
        return self.like_p_value is not None and self.like_p_value < 0.05

    @property
    def match_significant(self) -> bool:
        return self.match_p_value is not None and self.match_p_value < 0.05


@dataclass(frozen=True)
class ExperimentReport:
    experiment: Experiment
    start: datetime | None
    end: datetime
    arms: list[ArmReport]


# --- Outcomes: read by the app that records the events (a hook; the registry sits below it) ------------


@dataclass(frozen=True)
class ArmOutcome:
    """What the users of one arm did while it served them."""

    impressions: int  # impressions tagged with the arm
    swipes: int  # swipes on a candidate an impression of the arm showed the swiper before
    positive_swipes: int  # of which likes (the app's positive actions)
    matches: int  # matches where an impression of the arm showed one of the pair to the other before


class OutcomeReader(Protocol):
    def __call__(self, *, tenant_id: int, arm_tag: str, start: datetime | None, end: datetime) -> ArmOutcome: ...


_outcome_readers: list[OutcomeReader] = []  # at most one: the last registered


def register_outcome_reader(reader: OutcomeReader) -> None:
    """Make ``reader`` the source of arms' outcomes. Called from an AppConfig.ready(); a second
    call replaces the first, so an app set up twice (tests) is not counted twice."""
    _outcome_readers[:] = [reader]


def arm_outcome(*, tenant_id: int, arm_tag: str, start: datetime | None, end: datetime) -> ArmOutcome:
    """The outcome of the arm tagged ``arm_tag`` between ``start`` (None: from its first
    impression) and ``end``, from the registered reader."""
    if not _outcome_readers:
        raise RuntimeError("No experiment outcome reader is registered: the app recording impressions registers one.")
    return _outcome_readers[0](tenant_id=tenant_id, arm_tag=arm_tag, start=start, end=end)


def experiment_report(experiment: Experiment) -> ExperimentReport:
    start = experiment.started_at
    end = experiment.stopped_at or timezone.now()
    arms = list(experiment.arms.select_related("version"))
    counts = [arm_outcome(tenant_id=experiment.tenant_id, arm_tag=arm.tag, start=start, end=end) for arm in arms]
    likes = [wilson(c.positive_swipes, c.swipes) for c in counts]
    matches = [wilson(c.matches, c.impressions) for c in counts]
    reports = [
        ArmReport(
            arm=arm,
            impressions=c.impressions,
            swipes=c.swipes,
            positive_swipes=c.positive_swipes,
            matches=c.matches,
            like=likes[i],
            match=matches[i],
            like_p_value=None if i == 0 else two_proportion_p_value(likes[0], likes[i]),
            match_p_value=None if i == 0 else two_proportion_p_value(matches[0], matches[i]),
        )
        for i, (arm, c) in enumerate(zip(arms, counts, strict=True))
    ]
    return ExperimentReport(experiment=experiment, start=start, end=end, arms=reports)
