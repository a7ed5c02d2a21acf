"""Print a user's ranked feed as a table.

python manage.py recommend --user-id 6f1c…  [--top-n 10] [--tenant default] [--log-impressions]

The user id is the app's external UUID. Nothing is logged unless --log-impressions is given: an
operator looking at a feed is not the user seeing it.
"""

from __future__ import annotations

import uuid
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Tenant
from core import refresher
from recommender.feed.pipeline import MAX_COUNT, FeedResult, feed_for
from recommender.ml.structured import haversine_km
from recommender.models import Profile, ProfileStatus

COLUMNS: tuple[tuple[str, int], ...] = (
    ("rank", 4),
    ("external id", 36),
    ("age", 3),
    ("gender", 9),
    ("km", 6),
    ("score", 6),
    ("p_user", 6),
    ("p_cand", 6),
    ("sim", 5),
    ("struct", 6),
    ("elo", 5),
    ("liked", 5),
    ("explore", 7),
)


def resolve_tenant(slug: str) -> Tenant:
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        raise CommandError(f"No tenant {slug!r}.")
    return tenant


def resolve_user(tenant: Tenant, raw_id: str, what: str = "user") -> Profile:
    try:
        external_id = uuid.UUID(raw_id)
    except ValueError:
        raise CommandError(f"{what} id {raw_id!r} is not a UUID (use the app's external id).") from None
    profile = (
        Profile.objects.filter(tenant=tenant, external_id=external_id).exclude(status=ProfileStatus.ERASED).first()
    )
    if profile is None:
        raise CommandError(f"No {what} {external_id} in tenant {tenant.slug}.")
    return profile


def _fmt(value: object, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def feed_table(user: Profile, result: FeedResult) -> list[str]:
    """The feed as fixed-width text lines, a header first."""
    profiles = Profile.objects.in_bulk([item.profile_id for item in result.items])
    lines = ["  ".join(name.ljust(width) for name, width in COLUMNS)]
    for rank, item in enumerate(result.items, start=1):
        p = profiles[item.profile_id]
        c = item.components
        km = float(haversine_km(user.lat, user.lon, p.lat, p.lon))
        cells = (
            rank,
            item.external_id,
            p.age,
            p.gender,
            f"{km:.1f}",
            _fmt(item.score),
            _fmt(c.get("p_user_likes")),
            _fmt(c.get("p_candidate_likes")),
            _fmt(c.get("similarity"), 2),
            _fmt(c.get("structured")),
            _fmt(c.get("elo"), 2),
            _fmt(c.get("liked_you")),
            _fmt(c.get("explore")),
        )
        lines.append("  ".join(str(cell).ljust(width) for cell, (_, width) in zip(cells, COLUMNS, strict=True)))
    return lines


def feed_summary(result: FeedResult) -> str:
    stages = ", ".join(f"{k} {v:.1f}" for k, v in result.stage_ms.items())
    return (
        f"{len(result.items)} recommendations, model {result.model_version}, fallback {result.fallback or 'none'}, "
        f"{result.latency_ms:.1f} ms ({stages})"
    )


def write_feed(command: BaseCommand, user: Profile, result: FeedResult) -> None:
    for line in feed_table(user, result):
        command.stdout.write(line)
    command.stdout.write(feed_summary(result))


class Command(BaseCommand):
    help = "Print a user's ranked reciprocal feed (rank, id, age, gender, distance, score, components)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--user-id", required=True, help="the user's external UUID")
        parser.add_argument("--top-n", type=int, default=10, help=f"feed length, 1..{MAX_COUNT} (default 10)")
        parser.add_argument("--tenant", default="default", help="tenant slug (default: default)")
        parser.add_argument("--log-impressions", action="store_true", help="log the feed as impressions")

    def handle(self, *args: Any, **opts: Any) -> None:
        if not 1 <= opts["top_n"] <= MAX_COUNT:
            raise CommandError(f"--top-n must be in 1..{MAX_COUNT}.")
        tenant = resolve_tenant(opts["tenant"])
        user = resolve_user(tenant, opts["user_id"])
        with refresher.inline():  # a one-shot process: wait for the store however long it takes
            result = feed_for(tenant=tenant, user=user, count=opts["top_n"], log_impressions=opts["log_impressions"])
        self.stdout.write(f"Feed of {user.external_id} ({user.age}, {user.gender}, seeking {', '.join(user.seeking)})")
        write_feed(self, user, result)
