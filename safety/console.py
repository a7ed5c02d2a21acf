"""The moderation console (Django templates, staff session login through the admin login).

Views only parse input, call ``access_*`` selectors and services, and render.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from safety import charts
from safety.forms import AppealForm, BulkForm, DecisionForm
from safety.highlight import highlight
from safety.ml import LABELS
from safety.models import ItemStatus, PolicyLabel, ProfileSafetyScore, Queue, QueueItem
from safety.selectors import (
    access_console,
    access_queue_item,
    filter_label,
    item_reports,
    profile_decisions,
    queue_health,
    queue_items,
)
from safety.services import (
    HUMAN_ACTIONS,
    SafetyError,
    appeal_resolve,
    decision_record,
    decisions_bulk,
    queue_item_claim_next,
)

LOGIN = "admin:login"
PAGE = 100


def _queue_arg(request: HttpRequest) -> str:
    q = request.GET.get("queue") or request.POST.get("queue") or Queue.REVIEW
    return q if q in Queue.values else Queue.REVIEW


@login_required(login_url=LOGIN)
def queue_list(request: HttpRequest) -> HttpResponse:
    access_console(request.user)
    queue = _queue_arg(request)
    label = request.GET.get("label", "")
    label = label if label in LABELS else ""
    items = filter_label(list(queue_items(queue=queue, label=label)[: PAGE * 3]), label)[:PAGE]
    return render(
        request,
        "safety/queue.html",
        {
            "queue": queue,
            "queues": Queue.choices,
            "label": label,
            "labels": LABELS,
            "items": items,
            "bulk_form": BulkForm(),
            "actions": HUMAN_ACTIONS,
        },
    )


@login_required(login_url=LOGIN)
@require_POST
def take_next(request: HttpRequest) -> HttpResponse:
    access_console(request.user)
    queue = _queue_arg(request)
    item = queue_item_claim_next(user=request.user, queue=queue)
    if item is None:
        messages.info(request, f"The {queue} queue is empty.")
        return HttpResponseRedirect(reverse("safety_console:queue") + f"?queue={queue}")
    return HttpResponseRedirect(reverse("safety_console:item", args=[item.pk]))


def _severe(scores: dict[str, float]) -> bool:
    hide = settings.SAFETY_AUTOHIDE_THRESHOLDS
    review = settings.SAFETY_REVIEW_THRESHOLDS
    return any(float(scores.get(k, 0)) >= hide[k] for k in hide) or any(
        float(scores.get(k, 0)) >= review[k] for k in ("inappropriate", "harassment")
    )


@login_required(login_url=LOGIN)
@require_http_methods(["GET", "POST"])
def item_detail(request: HttpRequest, item_id: int) -> HttpResponse:
    item = access_queue_item(request.user, item_id)
    is_appeal = item.queue == Queue.APPEALS
    form: Any = AppealForm(request.POST or None) if is_appeal else DecisionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        decided = _decide(request, item, form, is_appeal=is_appeal)
        if decided is not None:
            return decided
    return _render_item(request, item, form, is_appeal=is_appeal)


def _decide(request: HttpRequest, item: QueueItem, form: Any, *, is_appeal: bool) -> HttpResponse | None:
    """Record the form's decision and redirect (to the next item if asked), or put the refusal's
    errors on the form and return None (the page is shown again with them)."""
    data = form.cleaned_data
    try:
        if is_appeal:
            appeal_resolve(
                item=item,
                user=request.user,
                accept=data["outcome"] == "accept",
                policy_label=data["policy_label"],
                rationale=data["rationale"],
            )
        else:
            decision_record(
                item=item,
                user=request.user,
                action=data["action"],
                policy_label=data["policy_label"],
                rationale=data["rationale"],
            )
    except SafetyError as exc:
        for field, errs in exc.errors.items():
            form.add_error(field if field in form.fields else None, errs)
        return None
    messages.success(request, f"Item {item.pk} decided.")
    if request.POST.get("then") == "next":
        nxt = queue_item_claim_next(user=request.user, queue=item.queue)
        if nxt is not None:
            return HttpResponseRedirect(reverse("safety_console:item", args=[nxt.pk]))
    return HttpResponseRedirect(reverse("safety_console:queue") + f"?queue={item.queue}")


def _render_item(request: HttpRequest, item: QueueItem, form: Any, *, is_appeal: bool) -> HttpResponse:
    profile = item.profile
    score = ProfileSafetyScore.objects.filter(profile=profile).first()
    evidence = score.evidence if score else {}
    scores = score.scores if score else {}
    prompts = [
        {"question": p.get("question", ""), "answer": highlight(str(p.get("answer", "")), evidence)}
        for p in (profile.prompts or [])
    ]
    status = 400 if request.method == "POST" else 200
    return render(
        request,
        "safety/item.html",
        {
            "item": item,
            "profile": profile,
            "bio": highlight(profile.bio, evidence),
            "prompts": prompts,
            "score": score,
            "label_rows": [
                {
                    "label": k,
                    "p": float(scores.get(k, 0.0)),
                    "review": settings.SAFETY_REVIEW_THRESHOLDS[k],
                    "hide": settings.SAFETY_AUTOHIDE_THRESHOLDS[k],
                    "ev": evidence.get(k, {}),
                }
                for k in LABELS
            ],
            "severe": _severe(scores),
            "reports": item_reports(item)[:50],
            "decisions": profile_decisions(profile)[:50],
            "form": form,
            "is_appeal": is_appeal,
            "held_by_other": item.claimed_by_id not in (None, request.user.pk),
            "open": item.status == ItemStatus.OPEN,
        },
        status=status,
    )


@login_required(login_url=LOGIN)
@require_POST
def bulk_decide(request: HttpRequest) -> HttpResponse:
    access_console(request.user)
    queue = _queue_arg(request)
    form = BulkForm(request.POST)
    ids = [int(x) for x in request.POST.getlist("items") if x.isdigit()]
    if not form.is_valid() or not ids:
        if not ids:
            messages.error(request, "Select at least one item.")
        for field, errs in form.errors.items():
            messages.error(request, f"{field}: {' '.join(errs)}")
        return HttpResponseRedirect(reverse("safety_console:queue") + f"?queue={queue}")
    done, skipped = decisions_bulk(
        item_ids=ids,
        user=request.user,
        action=form.cleaned_data["action"],
        policy_label=form.cleaned_data["policy_label"],
        rationale=form.cleaned_data["rationale"],
    )
    messages.success(request, f"{len(done)} decided, {len(skipped)} skipped (held by others or already decided).")
    return HttpResponseRedirect(reverse("safety_console:queue") + f"?queue={queue}")


@login_required(login_url=LOGIN)
def health(request: HttpRequest) -> HttpResponse:
    access_console(request.user)
    h = queue_health()
    waits = h["wait_minutes"]
    buckets = {"< 5 min": 0, "5-30 min": 0, "30 min-2 h": 0, "2-24 h": 0, "> 24 h": 0}
    for w in waits:
        edges = ((5, "< 5 min"), (30, "5-30 min"), (120, "30 min-2 h"), (1440, "2-24 h"))
        buckets[next((name for edge, name in edges if w < edge), "> 24 h")] += 1
    return render(
        request,
        "safety/health.html",
        {
            "h": h,
            "sizes_svg": charts.bar_chart({k: float(v) for k, v in h["sizes"].items()}, title="Open items per queue"),
            "moderators_svg": charts.bar_chart(
                {k: float(v) for k, v in h["per_moderator"].items()}, title="Decisions per moderator (30 days)"
            ),
            "share_svg": charts.bar_chart(
                {"automated": float(h["automated"]), "human": float(h["human"])}, title="Automated vs human"
            ),
            "wait_svg": charts.bar_chart({k: float(v) for k, v in buckets.items()}, title="Time to decision"),
            "days_svg": charts.stacked_days(h["per_day"], title="Decisions per day"),
        },
    )


def forbidden(request: HttpRequest, exception: PermissionDenied | None = None) -> HttpResponse:
    return HttpResponse("Moderators only.", status=403)


POLICY_CHOICES = PolicyLabel.choices
