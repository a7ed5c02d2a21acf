"""The score components of the feed and rank answers are documented, once, and answered in full.

recommender/api/components.py is the one list: the OpenAPI schema is built from it, docs/api.md
lists it, and every component that real answers of ``GET /api/v1/feed``, ``POST
/internal/ml/recommendations`` and ``POST /api/v1/ml/profiles/rank/batch`` carry must be in it (a
component added to the scoring without a description fails here). Scores and components are
full-precision floats: rounding them made ties of candidates that scored differently.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from accounts.models import Tenant
from recommender.api.components import FEED_COMPONENTS, FEED_ONLY, RANK_COMPONENTS
from recommender.models import Profile
from recommender.serving.ranker import ranker_wait
from tests.test_feed_ranker import ranker_preferring, register_ranker

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("isolated_ml_state")]

FEED = "/api/v1/feed"
RECOMMENDATIONS = "/internal/ml/recommendations"
RANK = "/api/v1/ml/profiles/rank/batch"
COMPONENTS_TABLE_HEADER = "| component | type, range | meaning |"


@pytest.fixture
def demo(tenant: Tenant, settings: Any, tmp_path: Path) -> Tenant:
    """A demo population with history, and an active ranker (so the feed answers ``ranker`` too)."""
    settings.ML_ENABLED = False  # loading needs no model: the structured pre-filter supplies candidates
    call_command("load_demo", "--limit", "300", "--swipes", "2000", "--no-users", verbosity=0)
    settings.ML_ENABLED = True
    settings.ML_EXPLORATION_SHARE = 0.2  # some exploration slots: explore is true somewhere
    register_ranker(tenant, ranker_preferring("cand_age", tmp_path / "ranker"))
    assert ranker_wait(tenant.pk) is not None
    return tenant


def swipers(tenant: Tenant, n: int) -> list[Profile]:
    users = Profile.objects.filter(tenant=tenant, status="active").order_by("pk")
    return [u for u in users if u.swipes_made.exists()][:n]  # type: ignore[attr-defined]


def answers(
    demo: Tenant, service_client: APIClient, user_client_for: Callable[[Profile], APIClient]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(feed items, ranked candidates) of real answers of the three endpoints, for a few users."""
    feed_items: list[dict[str, Any]] = []
    ranked: list[dict[str, Any]] = []
    users = 0
    for user in swipers(demo, 40):
        own = user_client_for(user).get(FEED, {"count": 20})
        assert own.status_code == 200, own.content
        if len(own.json()["recommendations"]) < 10:
            continue  # a small demo: some users have few eligible candidates left
        users += 1
        body = {"tenant_id": demo.slug, "user_id": str(user.external_id), "count": 20}
        served = service_client.post(RECOMMENDATIONS, body, format="json")
        assert served.status_code == 200, served.content
        feed_items += own.json()["recommendations"] + served.json()["recommendations"]
        candidates = [item["user_id"] for item in own.json()["recommendations"]]
        request = {"requests": [{"user_id": str(user.external_id), "candidate_ids": candidates}]}
        rank = service_client.post(RANK, request, format="json")
        assert rank.status_code == 200, rank.content
        ranked += [c for r in rank.json()["rankings"] for c in r["candidates"]]
        if users == 3:
            break
    assert len(feed_items) >= 60 and len(ranked) >= 30
    return feed_items, ranked


def test_every_answered_component_is_documented_and_typed(
    demo: Tenant, service_client: APIClient, user_client_for: Callable[[Profile], APIClient]
) -> None:
    feed_items, ranked = answers(demo, service_client, user_client_for)
    for answered, documented in ((feed_items, FEED_COMPONENTS), (ranked, RANK_COMPONENTS)):
        seen: set[str] = set()
        for item in answered:
            components = item["components"]
            undocumented = set(components) - set(documented)
            assert not undocumented, f"add {sorted(undocumented)} to recommender/api/components.py"
            missing = {name for name, c in documented.items() if c.required} - set(components)
            assert not missing, f"documented as in every answer, but absent: {sorted(missing)}"
            for name, value in components.items():
                spec = documented[name]
                if value is None:
                    assert spec.nullable, f"{name} is null but documented as never null"
                elif spec.type == "boolean":
                    assert isinstance(value, bool), name
                else:
                    assert isinstance(value, float) and not isinstance(value, bool), (name, value)
                    assert spec.minimum is None or value >= spec.minimum, (name, value)
                    assert spec.maximum is None or value <= spec.maximum, (name, value)
            seen |= set(components)
        assert seen == set(documented), f"documented but never answered: {sorted(set(documented) - seen)}"
    assert any(item["components"]["explore"] for item in feed_items)
    assert all("ranker" in item["components"] for item in feed_items)  # the ranker served every feed


def test_scores_and_components_are_full_precision(
    demo: Tenant, service_client: APIClient, user_client_for: Callable[[Profile], APIClient]
) -> None:
    feed_items, ranked = answers(demo, service_client, user_client_for)
    scores = [item["score"] for item in feed_items + ranked]
    assert sum(s != round(s, 6) for s in scores) > len(scores) / 2  # were rounded to 6 decimals
    floats = [v for item in feed_items + ranked for v in item["components"].values() if type(v) is float]
    assert sum(v != round(v, 4) for v in floats) > len(floats) / 2  # were rounded to 4 decimals
    for c in ranked:
        assert c["score"] == c["components"]["reciprocal"]


def test_the_schema_describes_every_component_from_the_one_list() -> None:
    schema = json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True), default=str))
    objects = schema["components"]["schemas"]
    for name, documented in (("FeedComponents", FEED_COMPONENTS), ("RankComponents", RANK_COMPONENTS)):
        described = objects[name]
        assert set(described["properties"]) == set(documented), name
        assert set(described.get("required", [])) == {k for k, c in documented.items() if c.required}, name
        for key, component in documented.items():
            prop = described["properties"][key]
            assert prop["description"] == component.description, (name, key)
            assert prop["type"] == component.type, (name, key)
            assert prop.get("nullable", False) == component.nullable, (name, key)
            assert prop.get("minimum") == component.minimum and prop.get("maximum") == component.maximum, (name, key)
    feed_item = objects["FeedItem"]["properties"]
    assert feed_item["components"]["$ref"].endswith("/FeedComponents")
    assert objects["RankedCandidate"]["properties"]["components"]["$ref"].endswith("/RankComponents")


def test_docs_list_every_component() -> None:
    text = (Path(settings.BASE_DIR) / "docs" / "api.md").read_text()
    section = text.split("### `POST /api/v1/ml/profiles/rank/batch`", 1)[1].split("\n### ", 1)[0]
    table = section.split(COMPONENTS_TABLE_HEADER, 1)[1].split("\n\n", 1)[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| (.+) \|$", table, flags=re.MULTILINE))
    assert set(rows) == set(FEED_COMPONENTS), sorted(set(rows) ^ set(FEED_COMPONENTS))
    for name in FEED_ONLY:
        assert "feed only" in rows[name], name
