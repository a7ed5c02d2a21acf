"""Record one swipe for a user and print their updated feed.

python manage.py interact --user-id 6f1c… 0b9e… like|superlike|reject [--tenant default] [--top-n 10]

Both ids are external UUIDs. The swipe goes through the same service as the API (a new session
id, timestamped now), so Elo, matches and the feed's exclusions all see it.
"""

from __future__ import annotations

import uuid
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from core import refresher
from recommender.feed.pipeline import MAX_COUNT, feed_for
from recommender.management.commands.recommend import resolve_tenant, resolve_user, write_feed
from recommender.services.events import EventValidationError, SwipeIn, swipe_batch_ingest

ACTIONS: tuple[str, ...] = ("like", "superlike", "reject")


class Command(BaseCommand):
    help = "Record a like, superlike or reject by a user and print the updated feed."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--user-id", required=True, help="the swiping user's external UUID")
        parser.add_argument("target_id", help="the swiped profile's external UUID")
        parser.add_argument("action", help=f"one of {', '.join(ACTIONS)}")
        parser.add_argument("--tenant", default="default", help="tenant slug (default: default)")
        parser.add_argument("--top-n", type=int, default=10, help=f"feed length, 1..{MAX_COUNT} (default 10)")

    def handle(self, *args: Any, **opts: Any) -> None:
        action = opts["action"].lower()
        if action not in ACTIONS:
            raise CommandError(f"Unknown action {opts['action']!r}; use one of {', '.join(ACTIONS)}.")
        if not 1 <= opts["top_n"] <= MAX_COUNT:
            raise CommandError(f"--top-n must be in 1..{MAX_COUNT}.")
        tenant = resolve_tenant(opts["tenant"])
        user = resolve_user(tenant, opts["user_id"])
        target = resolve_user(tenant, opts["target_id"], what="target")
        if target.pk == user.pk:
            raise CommandError("A user cannot swipe their own profile.")
        try:
            result = swipe_batch_ingest(
                tenant=tenant,
                user=user,
                session_id=f"cli-{uuid.uuid4()}",
                timestamp=timezone.now(),
                swipes=[SwipeIn(candidate_id=target.external_id, action=action)],
            )
        except EventValidationError as exc:
            raise CommandError(f"Swipe refused: {exc.errors}") from exc
        match = " It's a match!" if result.matches else ""
        self.stdout.write(f"Recorded {action} by {user.external_id} on {target.external_id}.{match}")
        with refresher.inline():  # a one-shot process: wait for the store however long it takes
            feed = feed_for(tenant=tenant, user=user, count=opts["top_n"], log_impressions=False)
        write_feed(self, user, feed)
