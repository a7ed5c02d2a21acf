"""Experiments: sticky assignment and its split, the feed's hook, the report, and the lifecycle."""

from __future__ import annotations

import math
import random
import uuid
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from recommender.models import Impression, Match, Swipe
from registry.experiments import (
    Rate,
    assignment_bucket,
    experiment_assign,
    experiment_for_impression,
    experiment_report,
    two_proportion_p_value,
    wilson,
)
from registry.models import AuditAction, AuditLog, Experiment, ExperimentStatus, VersionStatus
from registry.selectors import active_version
from registry.services import (
    ArmSpec,
    RegistryError,
    experiment_arms_set,
    experiment_create,
    experiment_promote,
    experiment_start,
    experiment_stop,
)
from tests.test_registry_support import artifacts, make_staff, register

pytestmark = pytest.mark.django_db
__all__ = ["artifacts"]

SYSTEM = "system:test"


@pytest.fixture
def versions(tenant, artifacts, tmp_path):
    return [register(tenant, tmp_path, float(i)) for i in (1, 2, 3)]


def make_experiment(tenant, versions, split=(50, 50), name="ab", salt="pepper") -> Experiment:
    arm_names = ("control", "treatment")
    arms = [ArmSpec(arm, versions[i], pct) for i, (arm, pct) in enumerate(zip(arm_names, split, strict=True))]
    return experiment_create(tenant=tenant, model_type="ranker", name=name, arms=arms, actor=SYSTEM, salt=salt)


def users(n: int, seed: int = 7) -> list[uuid.UUID]:
    rng = random.Random(seed)
    return [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(n)]


# --- Assignment -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("split", [(50, 50), (10, 90)])
def test_split_over_100k_users_is_within_one_point(tenant, versions, split):
    experiment = Experiment.objects.prefetch_related("arms").get(pk=make_experiment(tenant, versions, split).pk)
    population = users(100_000)
    counts = {"control": 0, "treatment": 0}
    for user in population:
        counts[experiment_assign(experiment, user).name] += 1
    assert abs(counts["control"] / len(population) * 100 - split[0]) < 1.0
    assert abs(counts["treatment"] / len(population) * 100 - split[1]) < 1.0


def test_assignment_is_sticky_and_depends_on_salt(tenant, versions):
    with_arms = Experiment.objects.prefetch_related("arms")
    a = with_arms.get(pk=make_experiment(tenant, versions, salt="one", name="a").pk)
    b = with_arms.get(pk=make_experiment(tenant, versions, salt="two", name="b").pk)
    population = users(2000)
    first = [experiment_assign(a, u).name for u in population]
    # Same answers on a fresh object (nothing cached), with the id as a string in upper case.
    again = with_arms.get(pk=a.pk)
    assert [experiment_assign(again, str(u).upper()).name for u in population] == first
    other = [experiment_assign(b, u).name for u in population]
    assert 0.4 < sum(x != y for x, y in zip(first, other, strict=True)) / len(population) < 0.6


def test_bucket_is_a_pure_function_of_salt_and_user():
    user = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert assignment_bucket("s", user) == assignment_bucket("s", str(user))
    assert 0 <= assignment_bucket("s", user) < 10_000
    buckets = {assignment_bucket("s", u) for u in users(5000)}
    assert len(buckets) > 3500  # spread over the range, not clumped


def test_experiment_for_impression(tenant, versions, make_profile):
    user = make_profile()
    assert experiment_for_impression(tenant, "ranker", user) is None
    experiment = make_experiment(tenant, versions)
    assert experiment_for_impression(tenant, "ranker", user) is None  # a draft does not run
    experiment_start(experiment=experiment, actor=SYSTEM, reason="go")

    tag, label = experiment_for_impression(tenant, "ranker", user)
    arm = experiment_assign(experiment, user.external_id)
    assert (tag, label) == (f"x{experiment.pk}:{arm.name}", arm.version.label)
    assert experiment_for_impression(tenant, "embedding", user) is None


# --- Statistics -----------------------------------------------------------------------------------------------


def test_wilson_interval_known_values():
    rate = wilson(0, 10)
    assert rate.low == 0.0 and math.isclose(rate.high, 0.2775, abs_tol=1e-4)
    rate = wilson(50, 100)
    assert math.isclose(rate.low, 0.4038, abs_tol=1e-4) and math.isclose(rate.high, 0.5962, abs_tol=1e-4)
    assert wilson(0, 0) == Rate(0, 0, 0.0, 1.0)


def test_two_proportion_p_value():
    assert two_proportion_p_value(wilson(50, 100), wilson(50, 100)) == 1.0
    assert math.isclose(two_proportion_p_value(wilson(10, 100), wilson(30, 100)), 0.000407, rel_tol=0.01)
    assert two_proportion_p_value(wilson(1, 10), wilson(0, 0)) is None
    assert two_proportion_p_value(wilson(0, 10), wilson(0, 20)) == 1.0


# --- Report -------------------------------------------------------------------------------------------------------


def test_report_counts_match_hand_made_events(tenant, versions, make_profile):
    experiment = make_experiment(tenant, versions)
    experiment_start(experiment=experiment, actor=SYSTEM, reason="go")
    t0 = timezone.now() - timedelta(days=1)
    Experiment.objects.filter(pk=experiment.pk).update(started_at=t0)
    experiment.refresh_from_db()
    control, treatment = experiment.arms.all()
    u1, u2, u3, c1, c2, c3 = (make_profile() for _ in range(6))

    def at(minutes: int):
        return t0 + timedelta(minutes=minutes)

    def show(user, candidate, arm_tag, minutes):
        Impression.objects.create(
            tenant=tenant, user=user, candidate=candidate, position=0, experiment_arm=arm_tag, occurred_at=at(minutes)
        )

    def swipe(user, candidate, action, minutes):
        Swipe.objects.create(
            tenant=tenant, user=user, candidate=candidate, action=action, session_id="s", occurred_at=at(minutes)
        )

    def match(a, b, minutes):
        a, b = sorted((a, b), key=lambda p: p.pk)
        Match.objects.create(tenant=tenant, user_a=a, user_b=b, occurred_at=at(minutes))

    # Control: 3 impressions; 2 swipes follow them (1 like); 1 match follows one.
    show(u1, c1, control.tag, 10)
    show(u1, c2, control.tag, 10)
    show(u2, c1, control.tag, 10)
    swipe(u1, c1, "like", 11)
    swipe(u1, c2, "pass", 11)
    swipe(u2, c1, "superlike", 5)  # before its impression: not caused by it
    swipe(u2, c3, "like", 12)  # never shown: not counted
    match(u1, c1, 20)
    # Treatment: 2 impressions (one shows the pair the other way round); 1 like; 1 match.
    show(u3, c1, treatment.tag, 10)
    show(c2, u3, treatment.tag, 10)
    swipe(u3, c1, "superlike", 11)
    match(u3, c2, 30)
    match(u2, c3, 30)  # never shown
    # Noise: another experiment's arm of the same name, and an impression before the start.
    show(u1, c3, f"x{experiment.pk + 1}:control", 10)
    show(u3, c3, treatment.tag, -60)

    report = experiment_report(experiment)
    got = {a.arm.name: (a.impressions, a.swipes, a.positive_swipes, a.matches) for a in report.arms}
    assert got == {"control": (3, 2, 1, 1), "treatment": (2, 1, 1, 1)}
    control_row, treatment_row = report.arms
    assert control_row.like == wilson(1, 2) and treatment_row.match == wilson(1, 2)
    assert control_row.like_p_value is None
    assert treatment_row.like_p_value == two_proportion_p_value(wilson(1, 2), wilson(1, 1))


# --- Lifecycle ------------------------------------------------------------------------------------------------------


def test_start_stop_promote_are_audited_and_promote_activates(tenant, versions):
    experiment = make_experiment(tenant, versions)
    experiment_start(experiment=experiment, actor=SYSTEM, reason="go")
    experiment_stop(experiment=experiment, actor=SYSTEM, reason="enough data")
    winner = experiment.arms.get(name="treatment")
    promoted = experiment_promote(experiment=experiment, arm=winner, actor=SYSTEM, reason="better like rate")

    assert promoted.status == ExperimentStatus.PROMOTED and promoted.winner == winner
    assert active_version(tenant_id=tenant.pk, model_type="ranker") == versions[1]
    actions = list(AuditLog.objects.filter(experiment=experiment).order_by("pk").values_list("action", flat=True))
    assert actions == [AuditAction.EXPERIMENT_START, AuditAction.EXPERIMENT_STOP, AuditAction.EXPERIMENT_PROMOTE]
    row = AuditLog.objects.get(action=AuditAction.EXPERIMENT_PROMOTE)
    assert (row.from_version, row.to_version) == (versions[0], versions[1])


def test_promoting_the_already_active_arm_only_records_it(tenant, versions):
    experiment = make_experiment(tenant, versions)
    experiment_start(experiment=experiment, actor=SYSTEM, reason="go")
    experiment_promote(experiment=experiment, arm=experiment.arms.get(name="control"), actor=SYSTEM, reason="tie")
    assert active_version(tenant_id=tenant.pk, model_type="ranker") == versions[0]
    assert Experiment.objects.get(pk=experiment.pk).status == ExperimentStatus.PROMOTED


def test_arms_cannot_change_once_started(tenant, versions):
    experiment = make_experiment(tenant, versions)
    new_split = [ArmSpec("control", versions[0], 20), ArmSpec("treatment", versions[1], 80)]
    experiment_arms_set(experiment=experiment, arms=new_split, actor=SYSTEM)  # fine while a draft
    experiment_start(experiment=experiment, actor=SYSTEM, reason="go")
    with pytest.raises(RegistryError, match="can no longer change"):
        experiment_arms_set(experiment=experiment, arms=new_split[::-1], actor=SYSTEM)
    assert [a.percent for a in experiment.arms.all()] == [20, 80]


def test_invalid_arms_are_refused(tenant, other_tenant, versions, tmp_path):
    with pytest.raises(RegistryError, match="sum to 90"):
        make_experiment(tenant, versions, split=(40, 50))
    foreign = register(other_tenant, tmp_path, 9.0)
    with pytest.raises(RegistryError, match="not a ranker version of this tenant"):
        make_experiment(tenant, [versions[0], foreign])


def test_one_running_experiment_per_slot(tenant, versions):
    first = make_experiment(tenant, versions, name="first")
    second = make_experiment(tenant, versions, name="second")
    experiment_start(experiment=first, actor=SYSTEM, reason="go")
    with pytest.raises(RegistryError, match="already running"):
        experiment_start(experiment=second, actor=SYSTEM, reason="go")
    assert Experiment.objects.get(pk=second.pk).status == ExperimentStatus.DRAFT


def test_experiment_actions_need_permission(tenant, versions, django_user_model):
    staff = make_staff(django_user_model)
    experiment = make_experiment(tenant, versions)
    with pytest.raises(PermissionDenied):
        experiment_start(experiment=experiment, actor=staff, reason="go")
    experiment_start(experiment=experiment, actor=SYSTEM, reason="go")
    with pytest.raises(PermissionDenied):
        experiment_promote(experiment=experiment, arm=experiment.arms.first(), actor=staff, reason="x")
    assert versions[1].status == VersionStatus.READY
    assert Experiment.objects.get(pk=experiment.pk).status == ExperimentStatus.RUNNING
