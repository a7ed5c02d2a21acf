"""Reads of safety data. Permission-checked objects come only from the ``access_*`` helpers."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from recommender.ml.embedding_spec import profile_text
from recommender.models import POSITIVE_ACTIONS, Profile, ProfileEmbedding, ProfileStatus, Swipe
from safety.ml.fake import BehaviourSignals
from safety.models import (
    Action,
    Appeal,
    Block,
    Decision,
    ItemStatus,
    PolicyLabel,
    Queue,
    QueueItem,
    Report,
    ReportReason,
)

User = AbstractBaseUser | AnonymousUser


# --- For the feed ---------------------------------------------------------------------------------


def blocked_or_reported_queries(*, tenant_id: int, user_id: int) -> list[QuerySet[Any]]:
    """One-column querysets of the profiles never to show ``user_id``: those it blocked or
    reported, and those that blocked it. Callers may UNION them with their own (the feed does,
    to read everything it must exclude in one round trip)."""
    blocks = Block.objects.filter(tenant_id=tenant_id)
    return [
        blocks.filter(blocker_id=user_id).values_list("blocked_id"),
        blocks.filter(blocked_id=user_id).values_list("blocker_id"),
        Report.objects.filter(tenant_id=tenant_id, reporter_id=user_id).values_list("reported_id"),
    ]


def blocked_or_reported_sql() -> str:
    """:func:`blocked_or_reported_queries` as SQL: one ``profile_id`` column, parameters
    ``%(tenant_id)s`` and ``%(user_id)s``. The feed wraps it into the one query it reads the
    user's history with; written out once here instead of compiled from the querysets on every
    feed, because compiling them cost about as much as running them (tests pin the two agree)."""
    block, report = Block._meta.db_table, Report._meta.db_table
    return (
        f"SELECT blocked_id AS profile_id FROM {block} WHERE tenant_id = %(tenant_id)s AND blocker_id = %(user_id)s"
        f" UNION ALL SELECT blocker_id FROM {block} WHERE tenant_id = %(tenant_id)s AND blocked_id = %(user_id)s"
        f" UNION ALL SELECT reported_id FROM {report} WHERE tenant_id = %(tenant_id)s AND reporter_id = %(user_id)s"
    )


def blocked_or_reported_by_user(*, tenant_id: int, user_ids: Iterable[int]) -> dict[int, set[int]]:
    """:func:`blocked_or_reported_ids` of each of ``user_ids``, in two queries for all."""
    wanted = set(user_ids)
    out: dict[int, set[int]] = {pk: set() for pk in wanted}
    blocks = Block.objects.filter(tenant_id=tenant_id).filter(Q(blocker_id__in=wanted) | Q(blocked_id__in=wanted))
    for blocker, blocked in blocks.values_list("blocker_id", "blocked_id"):
        if blocker in wanted:
            out[blocker].add(blocked)
        if blocked in wanted:
            out[blocked].add(blocker)
    reports = Report.objects.filter(tenant_id=tenant_id, reporter_id__in=wanted)
    for reporter, reported in reports.values_list("reporter_id", "reported_id"):
        out[reporter].add(reported)
    return out


def blocked_or_reported_ids(*, tenant_id: int, user_id: int) -> set[int]:
    """Profiles never to show ``user_id``: those it blocked or reported, and those that blocked it."""
    first, *rest = blocked_or_reported_queries(tenant_id=tenant_id, user_id=user_id)
    return {pk for (pk,) in first.union(*rest, all=True)}


# --- Console access -------------------------------------------------------------------------------


def can_moderate(user: Any) -> bool:
    return bool(
        getattr(user, "is_authenticated", False)
        and user.is_active
        and user.is_staff
        and user.has_perm("safety.add_decision")
    )


def access_console(user: Any) -> Any:
    """The user, if they may use the moderation console (staff with the Moderators' permissions)."""
    if not can_moderate(user):
        raise PermissionDenied("The moderation console is for moderators.")
    return user


def access_queue_item(user: Any, item_id: int) -> QueueItem:
    access_console(user)
    item = QueueItem.objects.select_related("profile", "tenant", "appeal", "claimed_by").filter(pk=item_id).first()
    if item is None:
        raise Http404("No such queue item.")
    return item


def access_appealable_decision(profile: Profile, decision_id: int | None) -> Decision:
    """A decision the profile's owner may appeal: one against them that hid or banned them."""
    qs = Decision.objects.filter(
        profile=profile, action__in=[Action.HIDE, Action.BAN, Action.AUTO_HIDE], reversed_by__isnull=True
    )
    decision = qs.filter(pk=decision_id).first() if decision_id is not None else qs.order_by("-created_at").first()
    if decision is None:
        raise Http404("No decision of yours to appeal.")
    return decision


# --- Queues ---------------------------------------------------------------------------------------


def queue_items(*, queue: str, label: str = "", status: str = ItemStatus.OPEN) -> QuerySet[QueueItem]:
    qs = QueueItem.objects.filter(queue=queue, status=status).select_related("profile", "tenant", "claimed_by")
    if label:
        qs = qs.filter(flagged_labels__contains=[label]) if settings.USING_POSTGRES else qs
    return qs.order_by("-rank_key", "pk")


def filter_label(items: list[QueueItem], label: str) -> list[QueueItem]:
    # JSON containment is not portable to SQLite: filter the (paged) list in Python there.
    return [i for i in items if not label or label in i.flagged_labels]


def item_reports(item: QueueItem) -> QuerySet[Report]:
    return Report.objects.filter(reported=item.profile).select_related("reporter").order_by("-created_at")


def profile_decisions(profile: Profile) -> QuerySet[Decision]:
    return Decision.objects.filter(profile=profile).select_related("moderator", "item").order_by("-created_at")


def profile_safety_text(profile: Profile) -> str:
    return profile_text(profile.bio, profile.prompts or [])


def unscored_profile_ids(*, limit: int) -> list[int]:
    """Up to ``limit`` profiles (not erased) that have no safety score yet."""
    return list(
        Profile.objects.exclude(status=ProfileStatus.ERASED)
        .filter(safety_score__isnull=True)
        .values_list("pk", flat=True)[:limit]
    )


# --- Behaviour signals for fake_profile -----------------------------------------------------------


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def behaviour_signals(profile: Profile, *, now: datetime | None = None) -> BehaviourSignals:
    now = now or timezone.now()
    bio = _normalise(profile.bio)
    copied = 0
    if len(bio) >= 20:
        copied = (
            Profile.objects.filter(tenant_id=profile.tenant_id, bio__iexact=profile.bio.strip())
            .exclude(pk=profile.pk)
            .count()
        )
        if not copied:  # whitespace variants: compare normalised bios of same-length candidates
            copied = sum(
                1
                for other in Profile.objects.filter(tenant_id=profile.tenant_id, bio__istartswith=bio[:12])
                .exclude(pk=profile.pk)
                .values_list("bio", flat=True)[:200]
                if _normalise(other) == bio
            )
    near = _near_copy_similarity(profile) if len(bio) >= 20 and not copied else 0.0
    swipes = Swipe.objects.filter(user=profile)
    total = swipes.count()
    likes = swipes.filter(action__in=POSITIVE_ACTIONS).count() if total else 0
    timed = swipes.exclude(duration_ms__isnull=True).order_by("-occurred_at")
    durations = list(timed.values_list("duration_ms", flat=True)[:500])
    last_hour = swipes.filter(occurred_at__gte=now - timedelta(hours=1)).count() if total else 0
    reporters = Report.objects.filter(reported=profile).values("reason").annotate(n=Count("reporter", distinct=True))
    fake = sum(r["n"] for r in reporters if r["reason"] == ReportReason.FAKE_PROFILE)
    other = sum(r["n"] for r in reporters if r["reason"] != ReportReason.FAKE_PROFILE)
    return BehaviourSignals(
        has_text=bool(profile_safety_text(profile).strip()),
        copied_bio_count=copied,
        near_copy_similarity=near,
        swipes_total=total,
        like_share=likes / total if total else 0.0,
        median_duration_ms=float(statistics.median(durations)) if durations else None,
        swipes_last_hour=last_hour,
        account_age_hours=(now - profile.created_at).total_seconds() / 3600.0,
        fake_reporters=fake,
        other_reporters=other,
    )


def _near_copy_similarity(profile: Profile) -> float:
    """Max cosine of the profile's stored bio embedding with the tenant's other embeddings."""
    mine = ProfileEmbedding.objects.filter(profile=profile).values_list("vector", flat=True).first()
    if mine is None:
        return 0.0
    v = np.frombuffer(bytes(mine), dtype=np.float32)
    best = 0.0
    others = ProfileEmbedding.objects.filter(tenant_id=profile.tenant_id).exclude(profile=profile)
    qs = others.values_list("vector", flat=True)
    batch: list[bytes] = []
    for raw in qs.iterator(chunk_size=2000):
        batch.append(bytes(raw))
        if len(batch) == 2000:
            best = max(best, float((np.frombuffer(b"".join(batch), dtype=np.float32).reshape(-1, v.size) @ v).max()))
            batch = []
    if batch:
        best = max(best, float((np.frombuffer(b"".join(batch), dtype=np.float32).reshape(-1, v.size) @ v).max()))
    return best


# --- Queue health ---------------------------------------------------------------------------------


def queue_health(*, now: datetime | None = None, days: int = 30) -> dict[str, Any]:
    now = now or timezone.now()
    since = now - timedelta(days=days)
    sizes = {q: QueueItem.objects.filter(queue=q, status=ItemStatus.OPEN).count() for q in Queue.values}
    open_items = QueueItem.objects.filter(status=ItemStatus.OPEN).order_by("created_at")
    oldest = {q: open_items.filter(queue=q).values_list("created_at", flat=True).first() for q in Queue.values}
    decisions = list(
        Decision.objects.filter(created_at__gte=since).select_related("moderator", "item").order_by("created_at")
    )
    human = [d for d in decisions if not d.automated]
    waits = [(d.created_at - d.item.created_at).total_seconds() / 60.0 for d in human]
    per_moderator: dict[str, int] = {}
    for d in human:
        name = d.moderator.get_username() if d.moderator else "(deleted)"
        per_moderator[name] = per_moderator.get(name, 0) + 1
    # Agreement: on human review decisions, did the model flag (any label over review) match the
    # moderator (anything but approve = violation)?
    agree = total = 0
    review = settings.SAFETY_REVIEW_THRESHOLDS
    for d in human:
        if d.action not in (Action.APPROVE, Action.HIDE, Action.BAN) or not d.scores:
            continue
        model_flag = any(float(d.scores.get(k, 0.0)) >= review[k] for k in review)
        total += 1
        agree += int(model_flag == (d.action != Action.APPROVE))
    per_day: dict[str, list[int]] = {}
    for d in decisions:
        key = d.created_at.date().isoformat()
        per_day.setdefault(key, [0, 0])[0 if d.automated else 1] += 1
    return {
        "sizes": sizes,
        "oldest": oldest,
        "oldest_wait_minutes": {q: ((now - t).total_seconds() / 60.0 if t else None) for q, t in oldest.items()},
        "median_minutes_to_decision": statistics.median(waits) if waits else None,
        "wait_minutes": waits,
        "per_moderator": dict(sorted(per_moderator.items(), key=lambda kv: -kv[1])),
        "automated": len(decisions) - len(human),
        "human": len(human),
        "agreement": (agree / total) if total else None,
        "agreement_n": total,
        "per_day": dict(sorted(per_day.items())),
        "open_appeals": Appeal.objects.filter(status="open").count(),
    }


# --- Learning from decisions ----------------------------------------------------------------------

# Which text labels a human decision sets: a violation of a text policy is a positive of its
# label; an approval (no violation) is a negative of every text label. Escalations and fake/other
# policies say nothing about text and are not used.
POLICY_TEXT_LABELS = {
    PolicyLabel.SEXUAL_CONTENT: ("inappropriate",),
    PolicyLabel.SPAM_SCAM: ("spam_scam",),
    PolicyLabel.HARASSMENT_HATE: ("harassment", "inappropriate"),
}


def decision_examples(*, tenant_id: int) -> dict[str, list[tuple[str, int]]]:
    """Labelled (text, 0/1) examples per text label from the latest human verdict per text.
    An accepted appeal overturns its decision: that text counts as no violation."""
    out: dict[str, list[tuple[str, int]]] = {"inappropriate": [], "spam_scam": [], "harassment": []}
    seen: set[str] = set()
    qs = Decision.objects.filter(tenant_id=tenant_id, automated=False).exclude(text_snapshot="").order_by("-created_at")
    for d in qs:
        if d.text_hash in seen or d.action == Action.ESCALATE:
            continue
        seen.add(d.text_hash)
        if d.action == Action.APPROVE or (d.action == Action.APPEAL_ACCEPT):
            for label in out:
                out[label].append((d.text_snapshot, 0))
        elif d.action in (Action.HIDE, Action.BAN, Action.APPEAL_REJECT):
            for label in POLICY_TEXT_LABELS.get(d.policy_label, ()):
                out[label].append((d.text_snapshot, 1))
    return out


def report_q(profile: Profile) -> Q:
    return Q(reported=profile)
