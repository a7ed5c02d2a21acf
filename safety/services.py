"""Writes of safety: classification results, reports, blocks, queue claims, decisions, appeals.

Every change of a profile's visibility goes through ``profile_set_status`` (feeds and the index
follow through its hooks) and is recorded as a Decision row in the same transaction.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.tasks import enqueue
from recommender.models import Profile, ProfileStatus
from recommender.services.profiles import profile_set_status
from safety import serving
from safety.ml import LABELS
from safety.ml.classifier import SafetyResult
from safety.models import (
    Action,
    Appeal,
    AppealStatus,
    Block,
    Decision,
    ItemStatus,
    PolicyLabel,
    ProfileSafetyScore,
    Queue,
    QueueItem,
    Report,
)
from safety.selectors import behaviour_signals, profile_safety_text

logger = logging.getLogger(__name__)

SYSTEM_RATIONALE_PREFIX = "model:"
# The policy label an auto-hide records, by the label that crossed its threshold.
LABEL_POLICY = {
    "inappropriate": PolicyLabel.SEXUAL_CONTENT,
    "spam_scam": PolicyLabel.SPAM_SCAM,
    "harassment": PolicyLabel.HARASSMENT_HATE,
    "fake_profile": PolicyLabel.FAKE_IMPERSONATION,
}
# Any: Django's choices are untyped here (mypy reads the members as their plain values).
HUMAN_ACTIONS: tuple[Any, ...] = (Action.APPROVE, Action.HIDE, Action.BAN, Action.ESCALATE)
STATUS_AFTER = {Action.HIDE: ProfileStatus.HIDDEN, Action.BAN: ProfileStatus.BANNED}


class SafetyError(Exception):
    """A refused safety operation; ``errors`` maps field names to messages for a person."""

    def __init__(self, errors: dict[str, list[str]] | str) -> None:
        self.errors = errors if isinstance(errors, dict) else {"non_field_errors": [errors]}
        super().__init__(str(self.errors))


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _hours(t: datetime) -> float:
    return t.timestamp() / 3600.0


def _rank_key(item: QueueItem) -> float:
    key = item.severity + settings.SAFETY_REPORT_WEIGHT * math.log1p(item.report_count)
    key -= settings.SAFETY_WAIT_WEIGHT_PER_HOUR * _hours(item.created_at)
    if item.last_reported_at is not None:
        # Reports that keep arriving after the item entered the queue push it up: ongoing abuse.
        key += settings.SAFETY_RECENCY_WEIGHT_PER_HOUR * (_hours(item.last_reported_at) - _hours(item.created_at))
    return key


def severity_of(scores: dict[str, float]) -> float:
    weights = settings.SAFETY_LABEL_WEIGHTS
    return float(sum(weights[k] * float(scores.get(k, 0.0)) for k in LABELS))


def _open_review_item(profile: Profile) -> QueueItem:
    """The profile's one open review item, created if missing; the profile row is locked first so
    that a report and a model flag arriving together merge instead of racing."""
    Profile.objects.select_for_update().filter(pk=profile.pk).first()
    item = QueueItem.objects.filter(profile=profile, queue=Queue.REVIEW, status=ItemStatus.OPEN).first()
    if item is not None:
        return item
    item = QueueItem(tenant_id=profile.tenant_id, profile=profile, queue=Queue.REVIEW)
    score = ProfileSafetyScore.objects.filter(profile=profile).first()
    if score is not None:
        item.severity = severity_of(score.scores)
    item.rank_key = _rank_key(item)
    try:
        with transaction.atomic():
            item.save(force_insert=True)
    except IntegrityError:  # lost a race on a backend without row locks: use the winner's item
        item = QueueItem.objects.get(profile=profile, queue=Queue.REVIEW, status=ItemStatus.OPEN)
    return item


# --- Classification -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassifyOutcome:
    score: ProfileSafetyScore | None
    queued: bool = False
    auto_hidden: bool = False
    skipped: str = ""


@transaction.atomic
def profile_classify(*, profile_id: int, force: bool = False) -> ClassifyOutcome:
    profile = Profile.objects.select_related("tenant").filter(pk=profile_id).first()
    if profile is None:
        return ClassifyOutcome(None, skipped="profile gone")
    if profile.status == ProfileStatus.ERASED:
        return _close_erased(profile)
    text = profile_safety_text(profile)
    digest = text_hash(text)
    existing = _unchanged_score(profile, digest, force=force)
    if existing is not None:
        # Status-only changes (our own hide, a moderator's restore) come back through the hook:
        # same text, same model, nothing to do. This is what stops hide -> hook -> hide loops.
        return ClassifyOutcome(existing, skipped="unchanged")
    results, version, _ = serving.classify(profile.tenant_id, [text], [behaviour_signals(profile)])
    return _record_classification(profile, results[0], version, text, digest)


def _close_erased(profile: Profile) -> ClassifyOutcome:
    # An erased profile is a tombstone: nothing left to moderate.
    QueueItem.objects.filter(profile=profile, status=ItemStatus.OPEN).update(
        status=ItemStatus.DECIDED, decided_at=timezone.now(), claimed_by=None, claim_expires_at=None
    )
    return ClassifyOutcome(None, skipped="erased")


def _unchanged_score(profile: Profile, digest: str, *, force: bool) -> ProfileSafetyScore | None:
    """The stored score when it is for this text and the tenant's current model (nothing to do)."""
    existing = ProfileSafetyScore.objects.filter(profile=profile).first()
    current_version = serving.classifier_for(profile.tenant_id).version
    if not force and existing and existing.text_hash == digest and existing.model_version == current_version:
        return existing
    return None


def _record_classification(
    profile: Profile, result: SafetyResult, version: str, text: str, digest: str
) -> ClassifyOutcome:
    """Store a classification; open or update the review item and auto-hide over the thresholds."""
    score, _ = ProfileSafetyScore.objects.update_or_create(
        profile=profile,
        defaults={
            "tenant_id": profile.tenant_id,
            "scores": result.labels,
            "evidence": result.evidence,
            "model_version": version,
            "text_hash": digest,
            "classified_at": timezone.now(),
        },
    )
    review, hide = settings.SAFETY_REVIEW_THRESHOLDS, settings.SAFETY_AUTOHIDE_THRESHOLDS
    flagged = [k for k in LABELS if result.labels[k] >= review[k]]
    over_hide = [k for k in LABELS if result.labels[k] >= hide[k]]
    item = QueueItem.objects.filter(profile=profile, queue=Queue.REVIEW, status=ItemStatus.OPEN).first()
    if not flagged and item is None:
        return ClassifyOutcome(score)
    if flagged and _approved_as_is(profile, digest):
        # A moderator already cleared exactly this text: a model change must not re-flag it.
        return ClassifyOutcome(score, skipped="approved text")
    if item is None:
        item = _open_review_item(profile)
    item.severity = severity_of(result.labels)
    item.flagged_labels = sorted(set(item.flagged_labels) | set(flagged))
    auto_hidden = False
    if over_hide and profile.status == ProfileStatus.ACTIVE:
        _auto_hide(profile, item, result, version, text, digest, over_hide)
        item.auto_hidden = auto_hidden = True
    item.rank_key = _rank_key(item)
    item.save(update_fields=["severity", "flagged_labels", "auto_hidden", "rank_key"])
    return ClassifyOutcome(score, queued=True, auto_hidden=auto_hidden)


def _auto_hide(
    profile: Profile, item: QueueItem, result: SafetyResult, version: str, text: str, digest: str, over: list[str]
) -> None:
    hide = settings.SAFETY_AUTOHIDE_THRESHOLDS
    before = profile.status
    profile_set_status(profile=profile, status=ProfileStatus.HIDDEN)
    top = max(over, key=lambda k: result.labels[k])
    Decision.objects.create(
        tenant_id=profile.tenant_id,
        item=item,
        profile=profile,
        automated=True,
        action=Action.AUTO_HIDE,
        policy_label=LABEL_POLICY[top],
        rationale=f"{SYSTEM_RATIONALE_PREFIX} "
        + ", ".join(f"{k} {result.labels[k]:.3f} >= {hide[k]:.2f}" for k in over),
        status_before=before,
        status_after=ProfileStatus.HIDDEN,
        scores=result.labels,
        model_version=version,
        text_snapshot=text,
        text_hash=digest,
    )


def profiles_classify(*, profile_ids: Sequence[int], force: bool = False) -> list[ClassifyOutcome]:
    """Classify many profiles (bulk onboarding) with one model call per tenant, then record each
    result exactly as :func:`profile_classify` does, in one short transaction per profile.

    The model runs outside any transaction (seconds for hundreds of texts); a profile whose text
    changed meanwhile is left to the classification its own change enqueued.
    """
    outcomes: list[ClassifyOutcome] = []
    todo: dict[int, list[tuple[Profile, str, str]]] = {}  # tenant id -> (profile, text, digest)
    for profile in Profile.objects.select_related("tenant").filter(pk__in=list(profile_ids)).order_by("pk"):
        text = profile_safety_text(profile)
        digest = text_hash(text)
        if profile.status == ProfileStatus.ERASED or _unchanged_score(profile, digest, force=force) is not None:
            outcomes.append(profile_classify(profile_id=profile.pk, force=force))  # the cheap paths
        else:
            todo.setdefault(profile.tenant_id, []).append((profile, text, digest))
    for tenant_id, items in todo.items():
        signals = [behaviour_signals(p) for p, _t, _d in items]
        results, version, _ = serving.classify(tenant_id, [t for _p, t, _d in items], signals)
        for (profile, text, digest), result in zip(items, results, strict=True):
            with transaction.atomic():
                current = Profile.objects.select_for_update().filter(pk=profile.pk).first()
                if current is None or current.status == ProfileStatus.ERASED or profile_safety_text(current) != text:
                    outcomes.append(ClassifyOutcome(None, skipped="changed meanwhile"))
                    continue
                outcomes.append(_record_classification(current, result, version, text, digest))
    return outcomes


def _approved_as_is(profile: Profile, digest: str) -> bool:
    last = Decision.objects.filter(profile=profile, automated=False, action__in=HUMAN_ACTIONS).first()
    return bool(last and last.action == Action.APPROVE and last.text_hash == digest)


def enqueue_classification(profile_id: int, *, force: bool = False) -> None:
    """The profile hook (runs on commit): classify in the ``safety`` queue. Never raises: a lost
    classification is recovered by the hourly ``classify_unscored`` sweep, and the profile write
    that triggered it has already been accepted."""
    try:
        enqueue("safety.tasks.classify_profile", profile_id, force=force)
    except Exception:
        logger.exception("enqueueing the safety classification of profile %s failed", profile_id)


def enqueue_classifications(profile_ids: list[int]) -> None:
    """The batch hook (recommender.services.derived, after a bulk write has committed): classify
    ``profile_ids`` in one ``safety`` task. Never raises, as :func:`enqueue_classification`."""
    try:
        enqueue("safety.tasks.classify_profiles", list(profile_ids))
    except Exception:
        logger.exception(
            "safety.tasks.classify_profiles of %d profiles failed; classify_unscored catches up", len(profile_ids)
        )


# --- Reports and blocks ---------------------------------------------------------------------------


@transaction.atomic
def report_create(*, reporter: Profile, reported: Profile, reason: str, text: str = "") -> Report:
    if reporter.pk == reported.pk:
        raise SafetyError({"profile_id": ["You cannot report yourself."]})
    if reporter.tenant_id != reported.tenant_id:
        raise SafetyError({"profile_id": ["No such profile."]})
    item = _open_review_item(reported)
    now = timezone.now()
    report = Report.objects.create(
        tenant_id=reported.tenant_id,
        reporter=reporter,
        reported=reported,
        reason=reason,
        text=text,
        item=item,
        created_at=now,
    )
    item.report_count = Report.objects.filter(item=item).count()
    item.last_reported_at = now
    item.rank_key = _rank_key(item)
    item.save(update_fields=["report_count", "last_reported_at", "rank_key"])
    # Reports feed fake_profile's signals: re-score (forced, the text did not change).
    transaction.on_commit(lambda: enqueue_classification(reported.pk, force=True))
    return report


def block_create(*, blocker: Profile, blocked: Profile) -> tuple[Block, bool]:
    if blocker.pk == blocked.pk:
        raise SafetyError({"profile_id": ["You cannot block yourself."]})
    if blocker.tenant_id != blocked.tenant_id:
        raise SafetyError({"profile_id": ["No such profile."]})
    try:
        with transaction.atomic():
            return Block.objects.create(tenant_id=blocker.tenant_id, blocker=blocker, blocked=blocked), True
    except IntegrityError:  # already blocked: blocking is idempotent
        return Block.objects.get(blocker=blocker, blocked=blocked), False


# --- Claims ---------------------------------------------------------------------------------------


def queue_item_claim_next(*, user: Any, queue: str = Queue.REVIEW, now: datetime | None = None) -> QueueItem | None:
    """Claim the highest-ranked free item (or keep one's own unexpired claim). Rows locked by a
    concurrent claim are skipped, never waited on, so two moderators never get the same item."""
    now = now or timezone.now()
    expires = now + timedelta(minutes=settings.SAFETY_CLAIM_MINUTES)
    with transaction.atomic():
        own = (
            QueueItem.objects.select_for_update(skip_locked=True)
            .filter(queue=queue, status=ItemStatus.OPEN, claimed_by=user, claim_expires_at__gt=now)
            .order_by("-rank_key", "pk")
            .first()
        )
        if own is not None:
            return own
        free = QueueItem.objects.select_for_update(skip_locked=True).filter(queue=queue, status=ItemStatus.OPEN)
        item = (
            free.filter(claimed_by__isnull=True).order_by("-rank_key", "pk").first()
            or free.filter(claim_expires_at__lte=now).order_by("-rank_key", "pk").first()
        )
        if item is None:
            return None
        item.claimed_by, item.claim_expires_at = user, expires
        item.save(update_fields=["claimed_by", "claim_expires_at"])
        return item


def queue_item_release(*, item: QueueItem, user: Any) -> None:
    QueueItem.objects.filter(pk=item.pk, claimed_by=user).update(claimed_by=None, claim_expires_at=None)


# --- Decisions ------------------------------------------------------------------------------------


def _validate(action: str, policy_label: str, rationale: str, allowed: Iterable[str]) -> str:
    errors: dict[str, list[str]] = {}
    if action not in allowed:
        errors["action"] = [f"Choose one of: {', '.join(allowed)}."]
    if policy_label not in PolicyLabel.values:
        errors["policy_label"] = ["A policy label is required."]
    rationale = (rationale or "").strip()
    if len(rationale) < 3:
        errors["rationale"] = ["A short rationale is required."]
    elif len(rationale) > 2000:
        errors["rationale"] = ["Keep the rationale under 2000 characters."]
    if errors:
        raise SafetyError(errors)
    return rationale


def _close(item: QueueItem, now: datetime) -> None:
    item.status, item.decided_at = ItemStatus.DECIDED, now
    item.claimed_by, item.claim_expires_at = None, None
    item.save(update_fields=["status", "decided_at", "claimed_by", "claim_expires_at"])


def _check_not_held_by_another(item: QueueItem, user: Any, now: datetime, what: str) -> None:
    """One rule for decisions and appeals: an unexpired claim by someone else blocks the decision."""
    if item.claimed_by_id not in (None, user.pk) and item.claim_expires_at and item.claim_expires_at > now:
        raise SafetyError(f"Another moderator holds this {what}.")


def decision_record(
    *, item: QueueItem, user: Any, action: str, policy_label: str, rationale: str, bulk: bool = False
) -> Decision:
    """Decide a review or specialist item: approve (restores a hidden/banned profile), hide, ban,
    or escalate (to the specialist queue). Refused without a policy label and rationale, on a
    decided item, or on an item another moderator holds."""
    rationale = _validate(action, policy_label, rationale, [a.value for a in HUMAN_ACTIONS])
    now = timezone.now()
    with transaction.atomic():
        item = QueueItem.objects.select_for_update().get(pk=item.pk)
        _check_decidable(item, user, now)
        profile = Profile.objects.select_for_update().get(pk=item.profile_id)
        before = profile.status
        if profile.status == ProfileStatus.ERASED:
            raise SafetyError("This profile was erased.")
        after = _status_after(action, before)
        if after != before:
            profile_set_status(profile=profile, status=after)
        score = ProfileSafetyScore.objects.filter(profile=profile).first()
        text = profile_safety_text(profile)
        decision = Decision.objects.create(
            tenant_id=item.tenant_id,
            item=item,
            profile=profile,
            moderator=user,
            action=action,
            policy_label=policy_label,
            rationale=rationale,
            status_before=before,
            status_after=after,
            scores=score.scores if score else {},
            model_version=score.model_version if score else "",
            text_snapshot=text,
            text_hash=text_hash(text),
            bulk=bulk,
            created_at=now,
        )
        _close(item, now)
        if action == Action.ESCALATE:
            _escalate(item, profile)
        return decision


def _check_decidable(item: QueueItem, user: Any, now: datetime) -> None:
    if item.queue == Queue.APPEALS:
        raise SafetyError("Appeals are accepted or rejected, not decided like this.")
    if item.status != ItemStatus.OPEN:
        raise SafetyError("This item was already decided.")
    _check_not_held_by_another(item, user, now, "item")


def _status_after(action: str, before: str) -> str:
    """The profile's status after a human decision: approve restores, hide and ban set theirs."""
    if action == Action.APPROVE and before in (ProfileStatus.HIDDEN, ProfileStatus.BANNED):
        return ProfileStatus.ACTIVE
    return STATUS_AFTER.get(action, before)


def _escalate(item: QueueItem, profile: Profile) -> None:
    """Move a decided review item's case to the specialist queue (its one open item there),
    with its reports."""
    special = QueueItem.objects.filter(profile=profile, queue=Queue.SPECIALIST, status=ItemStatus.OPEN).first()
    if special is None:
        special = QueueItem(
            tenant_id=item.tenant_id,
            profile=profile,
            queue=Queue.SPECIALIST,
            severity=item.severity,
            flagged_labels=item.flagged_labels,
            report_count=item.report_count,
            last_reported_at=item.last_reported_at,
            auto_hidden=item.auto_hidden,
            created_at=item.created_at,  # waiting time carries over
        )
        special.rank_key = _rank_key(special)
        special.save(force_insert=True)
    Report.objects.filter(item=item).update(item=special)


def decisions_bulk(
    *, item_ids: list[int], user: Any, action: str, policy_label: str, rationale: str
) -> tuple[list[Decision], list[int]]:
    """Decide many items at once; items held by another moderator or already decided are skipped
    (returned), never overridden. Each decision is audited like a single one."""
    _validate(action, policy_label, rationale, [a.value for a in HUMAN_ACTIONS])
    done: list[Decision] = []
    skipped: list[int] = []
    for item_id in item_ids:
        item = QueueItem.objects.filter(pk=item_id).first()
        if item is None:
            skipped.append(item_id)
            continue
        try:
            done.append(
                decision_record(
                    item=item, user=user, action=action, policy_label=policy_label, rationale=rationale, bulk=True
                )
            )
        except SafetyError:
            skipped.append(item_id)
    return done, skipped


# --- Appeals --------------------------------------------------------------------------------------


@transaction.atomic
def appeal_create(*, profile: Profile, decision: Decision, text: str) -> Appeal:
    text = (text or "").strip()
    if not text:
        raise SafetyError({"text": ["Say why the decision is wrong."]})
    if decision.profile_id != profile.pk:
        raise SafetyError({"decision_id": ["No such decision."]})
    if Appeal.objects.filter(decision=decision, status=AppealStatus.OPEN).exists():
        raise SafetyError({"decision_id": ["An appeal of this decision is already open."]})
    appeal = Appeal.objects.create(tenant_id=profile.tenant_id, decision=decision, profile=profile, text=text)
    item = QueueItem(
        tenant_id=profile.tenant_id,
        profile=profile,
        queue=Queue.APPEALS,
        appeal=appeal,
        severity=severity_of(decision.scores or {}),
    )
    item.rank_key = _rank_key(item)
    item.save(force_insert=True)
    return appeal


def appeal_resolve(*, item: QueueItem, user: Any, accept: bool, policy_label: str, rationale: str) -> Decision:
    """Accept (the appealed decision's effect is reversed: the profile gets its earlier status
    back, if nothing changed it since) or reject an appeal; either is audited as a Decision."""
    action: Any = Action.APPEAL_ACCEPT if accept else Action.APPEAL_REJECT
    rationale = _validate(action, policy_label, rationale, [action])
    now = timezone.now()
    with transaction.atomic():
        # No select_related: FOR UPDATE cannot lock the nullable side of an outer join (PostgreSQL).
        item = QueueItem.objects.select_for_update().get(pk=item.pk)
        if item.queue != Queue.APPEALS or item.appeal is None:
            raise SafetyError("Not an appeal.")
        if item.status != ItemStatus.OPEN:
            raise SafetyError("This appeal was already resolved.")
        _check_not_held_by_another(item, user, now, "appeal")
        appeal = item.appeal
        appealed = Decision.objects.select_for_update().get(pk=appeal.decision_id)
        profile = Profile.objects.select_for_update().get(pk=appeal.profile_id)
        before = after = profile.status
        if accept and profile.status == appealed.status_after and profile.status != appealed.status_before:
            after = appealed.status_before
            profile_set_status(profile=profile, status=after)
        decision = Decision.objects.create(
            tenant_id=item.tenant_id,
            item=item,
            profile=profile,
            moderator=user,
            action=action,
            policy_label=policy_label,
            rationale=rationale,
            status_before=before,
            status_after=after,
            scores=appealed.scores,
            model_version=appealed.model_version,
            text_snapshot=appealed.text_snapshot,
            text_hash=appealed.text_hash,
            reverses=appealed if accept else None,
            created_at=now,
        )
        appeal.status = AppealStatus.ACCEPTED if accept else AppealStatus.REJECTED
        appeal.resolved_at = now
        appeal.save(update_fields=["status", "resolved_at"])
        _close(item, now)
        return decision
