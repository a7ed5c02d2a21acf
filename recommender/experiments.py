"""What an A/B experiment's arm achieved, read from the recommender's events for the registry.

The registry reports experiments but sits below the recommender, so it never reads impressions,
swipes or matches itself: ``arm_outcome`` is registered as its outcome reader at start-up
(``registry.experiments.register_outcome_reader``, in RecommenderConfig.ready).

Impressions carry the arm's tag (``x<experiment id>:<arm>``); a swipe counts for an arm when an
impression of that arm showed the same candidate to the same user before it; a match counts when
an impression of the arm showed one of the pair to the other before it matched.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import Count, Exists, OuterRef, Q

from recommender.models import POSITIVE_ACTIONS, Impression, Match, Swipe
from registry.experiments import ArmOutcome


def arm_outcome(*, tenant_id: int, arm_tag: str, start: datetime | None, end: datetime) -> ArmOutcome:
    """The impressions, swipes, likes and matches of the arm tagged ``arm_tag`` in the tenant,
    between ``start`` (None: from the first impression) and ``end``."""
    impressions = Impression.objects.filter(tenant_id=tenant_id, experiment_arm=arm_tag, occurred_at__lte=end)
    if start is not None:
        impressions = impressions.filter(occurred_at__gte=start)
    shown_before_swipe = impressions.filter(
        user=OuterRef("user"), candidate=OuterRef("candidate"), occurred_at__lte=OuterRef("occurred_at")
    )
    swipes = (
        Swipe.objects.filter(tenant_id=tenant_id)
        .filter(Exists(shown_before_swipe))
        .aggregate(total=Count("pk"), positive=Count("pk", filter=Q(action__in=POSITIVE_ACTIONS)))
    )
    shown_before_match = impressions.filter(
        Q(user=OuterRef("user_a"), candidate=OuterRef("user_b"))
        | Q(user=OuterRef("user_b"), candidate=OuterRef("user_a")),
        occurred_at__lte=OuterRef("occurred_at"),
    )
    matches = Match.objects.filter(tenant_id=tenant_id).filter(Exists(shown_before_match)).count()
    return ArmOutcome(
        impressions=impressions.count(),
        swipes=swipes["total"],
        positive_swipes=swipes["positive"],
        matches=matches,
    )
