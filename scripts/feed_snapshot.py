"""Write the feeds of N users of a prepared tenant to JSON, or compare two such files: the
before/after check of a change that must not change what users see (issue 18's restructuring).

    PATRA_VAR_DIR=var/demo-snapshot .venv/bin/python scripts/feed_snapshot.py write before.json [--users 200]
    ... (change the code) ...
    PATRA_VAR_DIR=var/demo-snapshot .venv/bin/python scripts/feed_snapshot.py write after.json
    .venv/bin/python scripts/feed_snapshot.py compare before.json after.json

Every variant (reciprocal, one_way, popularity, random) for the first N active profiles by id,
20 items each, no impressions logged (the database is left as it was, so the two runs see the
same data). The feed's random draws are seeded by tenant, user, day and variant, so the clock is
frozen at ``--at`` (default 2026-12-08T12:00:00Z) while the feeds are made; the file records it
and compare refuses two different ones.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "patra.settings")

VARIANTS = ("reciprocal", "one_way", "popularity", "random")


def write(path: Path, users: int, at: str) -> None:
    from datetime import datetime
    from unittest import mock

    import django

    django.setup()
    frozen = datetime.fromisoformat(at)
    with mock.patch("django.utils.timezone.now", return_value=frozen):
        _write(path, users, at)


def _write(path: Path, users: int, at: str) -> None:
    from recommender.models import Profile, ProfileStatus

    # The same script runs before and after a move of these functions: the first home found wins.
    tenant_model = _first("Tenant", "accounts.models", "recommender.models")
    collaborative_wait = _first(
        "collaborative_wait", "recommender.serving.collaborative", "recommender.services.collaborative"
    )
    feed_for = _first("feed_for", "recommender.feed.pipeline", "recommender.services.feed")
    serving_index = _first("serving_index", "recommender.serving.index", "recommender.services.index")

    tenant = tenant_model.objects.get(slug="default")
    collaborative_wait(tenant.pk)
    serving_index(tenant.pk)
    profiles = Profile.objects.filter(tenant=tenant, status=ProfileStatus.ACTIVE).order_by("id")[:users]
    out: dict[str, Any] = {"at": at, "feeds": {}}
    for user in profiles:
        for variant in VARIANTS:
            result = feed_for(tenant=tenant, user=user, count=20, log_impressions=False, variant=variant)
            out["feeds"][f"{user.external_id}:{variant}"] = {
                "model_version": result.model_version,
                "fallback": result.fallback,
                "items": [[str(i.external_id), i.score, i.components] for i in result.items],
            }
    path.write_text(json.dumps(out, indent=1, sort_keys=True))
    print(f"{len(out['feeds'])} feeds of {len(profiles)} users written to {path}")


def _first(name: str, *modules: str) -> Any:
    import importlib

    for module in modules:
        try:
            found = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if found is not None:
            return found
    raise ImportError(f"{name} is in none of {modules}")


def compare(before: Path, after: Path) -> int:
    a, b = json.loads(before.read_text()), json.loads(after.read_text())
    if a["at"] != b["at"]:
        print(f"written at different frozen times ({a['at']}, {b['at']}): the feeds' random draws differ")
        return 2
    if a["feeds"].keys() != b["feeds"].keys():
        print("the files hold different users or variants")
        return 1
    differ = [key for key in a["feeds"] if a["feeds"][key] != b["feeds"][key]]
    items = sum(len(f["items"]) for f in a["feeds"].values())
    print(f"{len(a['feeds'])} feeds ({items} items): {len(differ)} differ")
    for key in differ[:10]:
        print("  differs:", key)
    return 1 if differ else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write")
    w.add_argument("path", type=Path)
    w.add_argument("--users", type=int, default=200)
    w.add_argument("--at", default="2026-12-08T12:00:00+00:00", help="the frozen clock (ISO datetime)")
    c = sub.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    args = parser.parse_args()
    if args.command == "write":
        write(args.path, args.users, args.at)
        return 0
    return compare(args.before, args.after)


if __name__ == "__main__":
    raise SystemExit(main())
