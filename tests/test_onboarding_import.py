"""import_profiles and import_events: an existing app's data from CSV / Parquet files."""

from __future__ import annotations

import csv
import json
import random
import uuid
from datetime import datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from accounts.models import Tenant
from accounts.services import tenant_create
from recommender.models import EloRating, Impression, Match, Profile, ProfileEmbedding, Swipe
from recommender.services.events import SwipeIn, swipe_batch_ingest
from tests.conftest import profile_data
from tests.test_api_profiles import BAD_PROFILES
from tests.test_onboarding_batch import tasks  # noqa: F401  (a fixture: spies on the derived-work tasks)


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str] | None = None) -> Path:
    columns = columns or list(rows[0])
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in columns])
    return path


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def run(command: str, *args: Any, **options: Any) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(command, *[str(a) for a in args], stdout=out, stderr=err, verbosity=0, **options)
    return out.getvalue(), err.getvalue()


def fails(command: str, *args: Any, **options: Any) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as caught:
        call_command(command, *[str(a) for a in args], stdout=out, stderr=err, verbosity=0, **options)
    return str(caught.value), err.getvalue()


# --- import_profiles -------------------------------------------------------------------------------


def profile_row(**overrides: Any) -> dict[str, Any]:
    """A file row: the API's fields, lifestyle attributes as columns, lists ;-separated."""
    data = profile_data(**overrides)
    attributes = data.pop("attributes")
    data["seeking"] = ";".join(data["seeking"])
    data["interests"] = ";".join(data["interests"])
    return {**data, **attributes}


def test_import_profiles_csv_stores_what_the_api_would(
    tenant,
    tmp_path,
    tasks,  # noqa: F811  (the fixture imported above)
    monkeypatch,
    django_capture_on_commit_callbacks,
):
    monkeypatch.setattr("recommender.management.commands.import_profiles.DERIVED_CHUNK_SIZE", 2)
    rows = [profile_row(bio=f"Bio {i}.") for i in range(5)]
    rows[1].update(seeking='["man", "woman"]', diet=None, attributes={"pets": "has cats"})
    path = write_csv(tmp_path / "profiles.csv", rows, [*rows[0], "attributes"])
    with django_capture_on_commit_callbacks(execute=True):
        out, _err = run("import_profiles", path)
    assert "5 created, 0 existing skipped, 0 invalid" in out
    assert "build_index --tenant default" in out
    second = Profile.objects.get(external_id=rows[1]["external_id"])
    assert (second.seeking, second.pets, second.diet, second.height) == (["man", "woman"], "has cats", "", 168)
    first = Profile.objects.get(external_id=rows[0]["external_id"])
    assert first.prompts == profile_data()["prompts"] and first.interests == ["hiking", "coffee"]
    # the derived work, after the import, in batches of DERIVED_CHUNK_SIZE: 3 per concern, not 5
    sizes = sorted((name, len(ids)) for name, ids in tasks)
    assert sizes == [("recommender.tasks.embed_profiles", n) for n in (1, 2, 2)] + [
        ("safety.tasks.classify_profiles", n) for n in (1, 2, 2)
    ]
    assert ProfileEmbedding.objects.count() == 5
    # a re-run skips them all and enqueues nothing
    tasks.clear()
    with django_capture_on_commit_callbacks(execute=True):
        out, _err = run("import_profiles", path)
    assert "0 created, 5 existing skipped" in out and tasks == []
    assert Profile.objects.count() == 5


def test_update_existing_changes_the_given_columns_only(tenant, tmp_path, make_profile):
    profile = make_profile(bio="old", attributes={"diet": "vegan", "smokes": "no"})
    path = write_csv(tmp_path / "p.csv", [{"external_id": profile.external_id, "bio": "new", "smokes": "yes"}])
    out, _err = run("import_profiles", path, "--update-existing")
    assert "0 created, 1 existing updated" in out
    profile.refresh_from_db()
    assert (profile.bio, profile.smokes, profile.diet, profile.age) == ("new", "yes", "vegan", 30)


def test_a_bad_row_stores_nothing_and_every_bad_row_is_reported(tenant, tmp_path):
    rows = [profile_row(), profile_row(age=12), profile_row(), profile_row(lat=200, gender="robot")]
    rows[2]["prompts"] = "{not json"
    rows.append(dict(rows[0]))  # the same external id again
    path = write_csv(tmp_path / "p.csv", rows)
    report = tmp_path / "errors.csv"
    message, err = fails("import_profiles", path, "--error-report", report)
    assert "4 of 5 rows are invalid" in message and "nothing was stored" in message
    assert "line 3: age:" in err and "line 4: prompts: Not valid JSON" in err
    assert "line 5: lat:" in err and "line 5: gender:" in err
    assert "line 6: external_id: Duplicate external_id: first given at line 2." in err
    assert Profile.objects.count() == 0
    with open(report) as handle:
        problems = list(csv.DictReader(handle))
    assert {(p["where"], p["field"]) for p in problems} == {
        ("line 3", "age"), ("line 4", "prompts"), ("line 5", "lat"), ("line 5", "gender"), ("line 6", "external_id"),
    }  # fmt: skip
    # --dry-run says the same and stores nothing; --skip-invalid stores the valid row
    assert "4 of 5 rows are invalid" in fails("import_profiles", path, "--dry-run")[0]
    out, _err = run("import_profiles", path, "--skip-invalid")
    assert "1 created" in out and "4 invalid (not stored)" in out
    assert list(Profile.objects.values_list("external_id", flat=True)) == [uuid.UUID(rows[0]["external_id"])]


@pytest.mark.parametrize(("case", "change", "field"), BAD_PROFILES, ids=[c[0] for c in BAD_PROFILES])
def test_a_row_is_refused_exactly_when_the_api_refuses_it(tenant, tmp_path, service_client, case, change, field):
    """The API's own table of bad profiles: each is refused by the import too, on the same field."""
    assert service_client.post("/internal/v1/profiles", profile_data(**change), format="json").status_code == 400
    path = write_csv(tmp_path / "p.csv", [profile_data(**change)])
    message, err = fails("import_profiles", path, "--dry-run")
    assert "1 of 1 rows are invalid" in message
    assert f"line 2: {field}" in err, err


def test_parquet_with_native_nested_types(tenant, tmp_path):
    data = profile_data()
    table = pa.table(
        {
            "external_id": [data["external_id"]],
            "age": pa.array([31], pa.int16()),
            "gender": ["woman"],
            "seeking": [["man", "nonbinary"]],
            "lat": [37.7],
            "lon": [-122.4],
            "prompts": [[{"question": "Sunday?", "answer": "Hiking."}]],
            "attributes": [{"diet": "vegan", "height": 170, "pets": None}],
            "interests": [None],
        }
    )
    pq.write_table(table, tmp_path / "p.parquet")
    out, _err = run("import_profiles", tmp_path / "p.parquet")
    assert "1 created" in out
    p = Profile.objects.get()
    assert (p.age, p.seeking, p.diet, p.height, p.pets, p.interests) == (31, ["man", "nonbinary"], "vegan", 170, "", [])
    assert p.prompts == [{"question": "Sunday?", "answer": "Hiking."}]


def test_file_level_problems_are_refused(tenant, tmp_path):
    path = write_csv(tmp_path / "p.csv", [{**profile_row(), "star_sign": "leo"}])
    assert "Unknown columns: star_sign" in fails("import_profiles", path)[0]
    row = profile_row()
    del row["lat"]
    assert "Missing required columns: lat" in fails("import_profiles", write_csv(tmp_path / "q.csv", [row]))[0]
    assert "No such file" in fails("import_profiles", tmp_path / "none.csv")[0]
    (tmp_path / "p.txt").write_text("x")
    assert "--format" in fails("import_profiles", tmp_path / "p.txt")[0]


def test_tenant_is_required_when_several_exist(tenant, other_tenant, tmp_path):
    path = write_csv(tmp_path / "p.csv", [profile_row()])
    assert "--tenant is required: 2 tenants exist (default, other)" in fails("import_profiles", path)[0]
    assert "Unknown tenant 'nope'" in fails("import_profiles", path, "--tenant", "nope")[0]
    run("import_profiles", path, "--tenant", "other")
    assert Profile.objects.get().tenant == other_tenant


# --- import_events ---------------------------------------------------------------------------------

NOW = timezone.now().replace(microsecond=0)


def people(make_profile: Any, tenant: Tenant, n: int = 4) -> list[Profile]:
    women = [make_profile(tenant, gender="woman", seeking=["man"]) for _ in range(n)]
    return women + [make_profile(tenant, gender="man", seeking=["woman"]) for _ in range(n)]


def swipe_history(population: list[Profile], days: int = 40, seed: int = 3) -> list[dict[str, Any]]:
    """Swipes both ways over ``days`` (mutual likes included), in random file order."""
    rng = random.Random(seed)
    half = len(population) // 2
    rows = []
    for day in range(days, 0, -1):
        swiper = population[day % len(population)]
        others = population[half:] if population.index(swiper) < half else population[:half]
        for j, other in enumerate(rng.sample(others, 2)):
            at = NOW - timedelta(days=day, minutes=j)
            rows.append({"user_id": swiper.external_id, "candidate_id": other.external_id,
                         "action": rng.choice(["like", "superlike", "pass", "reject", "like"]),
                         "timestamp": at.isoformat(), "session_id": f"s-{day}", "duration_ms": 900 + j})  # fmt: skip
    # A like each way, then a superlike after the match: the match stays a mutual_like, as the API
    # (which sees the superlike only once matched) made it.
    u, c = population[0], population[half]
    for swiper, other, action, day in ((u, c, "like", 35.5), (c, u, "like", 25.5), (u, c, "superlike", 5.5)):
        rows.append({"user_id": swiper.external_id, "candidate_id": other.external_id, "action": action,
                     "timestamp": (NOW - timedelta(days=day)).isoformat(), "session_id": f"x-{day}",
                     "duration_ms": 700})  # fmt: skip
    rng.shuffle(rows)
    return rows


def test_swipes_import_gives_what_the_api_would_have(tenant, make_profile, tmp_path):
    """The same history through the API's service, in time order, in a second tenant: the same
    swipes, the same matches (pair, type, time) and the same Elo ratings."""
    mine = people(make_profile, tenant)
    reference = tenant_create(slug="reference", name="Reference")
    theirs = {p.external_id: make_profile(reference, external_id=str(p.external_id), gender=p.gender,
                                          seeking=p.seeking) for p in mine}  # fmt: skip
    rows = swipe_history(mine)
    out, _err = run("import_events", "--tenant", "default", "--kind", "swipes", write_csv(tmp_path / "s.csv", rows))
    assert f"{len(rows)} stored, 0 duplicates" in out and "Elo rebuilt" in out
    for row in sorted(rows, key=lambda r: r["timestamp"]):
        swipe_batch_ingest(
            tenant=reference, user=theirs[row["user_id"]], session_id=row["session_id"],
            timestamp=datetime.fromisoformat(row["timestamp"]),
            swipes=[SwipeIn(row["candidate_id"], row["action"], row["duration_ms"])],
        )  # fmt: skip

    def matches(t: Tenant) -> set[tuple[frozenset[uuid.UUID], str, datetime]]:
        found = Match.objects.filter(tenant=t).select_related("user_a", "user_b")
        return {(frozenset({m.user_a.external_id, m.user_b.external_id}), m.match_type, m.occurred_at) for m in found}

    def elo(t: Tenant) -> dict[uuid.UUID, tuple[float, int, int, int]]:
        rows_ = EloRating.objects.filter(tenant=t).select_related("profile")
        return {r.profile.external_id: (round(r.rating, 6), r.swipes_received, r.swipes_given, r.likes_given)
                for r in rows_}  # fmt: skip

    assert Swipe.objects.filter(tenant=tenant).count() == Swipe.objects.filter(tenant=reference).count() == len(rows)
    assert matches(tenant) == matches(reference) and len(matches(tenant)) > 1
    u, c = mine[0], mine[len(mine) // 2]
    assert (frozenset({u.external_id, c.external_id}), "mutual_like", NOW - timedelta(days=25.5)) in matches(tenant)
    assert elo(tenant) == elo(reference)
    # re-importing the file stores nothing new
    out, _err = run("import_events", "--tenant", "default", "--kind", "swipes", tmp_path / "s.csv")
    assert f"0 stored, {len(rows)} duplicates" in out and "0 matches created" in out
    assert Swipe.objects.filter(tenant=tenant).count() == len(rows)


def test_expired_events_are_refused_unless_skipped(tenant, make_profile, tmp_path, settings):
    settings.EVENT_RETENTION_DAYS = 30
    a, b = people(make_profile, tenant, 1)
    old = NOW - timedelta(days=45)
    rows = [{"user_id": a.external_id, "candidate_id": b.external_id, "action": "like", "timestamp": t.isoformat()}
            for t in (NOW - timedelta(days=2), old, NOW - timedelta(days=31))]  # fmt: skip
    path = write_csv(tmp_path / "s.csv", rows)
    message, _err = fails("import_events", "--kind", "swipes", path)
    assert "2 swipes are older than the retention window (EVENT_RETENTION_DAYS=30)" in message
    # 45 days and a few seconds old: 46 days, plus one of margin for the next nightly run
    assert f"the oldest at {old.isoformat()}" in message and "EVENT_RETENTION_DAYS=47" in message
    assert "--skip-expired" in message and Swipe.objects.count() == 0
    out, _err = run("import_events", "--kind", "swipes", path, "--skip-expired")
    assert "1 stored" in out and "not stored: 2 expired" in out
    assert Swipe.objects.get().occurred_at == NOW - timedelta(days=2)
    # matches are kept by retention: an old one is imported
    match = [{"user_id": a.external_id, "candidate_id": b.external_id, "timestamp": old.isoformat()}]
    out, _err = run("import_events", "--kind", "matches", write_csv(tmp_path / "m.csv", match))
    assert "1 stored" in out and Match.objects.get().occurred_at == old


def test_bad_event_rows_are_all_reported_and_nothing_is_stored(tenant, make_profile, tmp_path, other_tenant):
    a, b = people(make_profile, tenant, 1)
    stranger = make_profile(other_tenant)
    ok = {"user_id": a.external_id, "candidate_id": b.external_id, "action": "like", "timestamp": NOW.isoformat()}
    rows = [
        ok,
        {**ok, "candidate_id": stranger.external_id},  # line 3: another tenant's profile
        {**ok, "candidate_id": a.external_id},  # line 4: self
        {**ok, "action": "maybe", "duration_ms": -5},  # line 5
        {**ok, "timestamp": (NOW + timedelta(hours=2)).isoformat()},  # line 6: the future
        {**ok, "user_id": "42", "timestamp": "yesterday"},  # line 7
        {**ok, "action": None},  # line 8: missing
    ]
    path = write_csv(tmp_path / "s.csv", rows, ["user_id", "candidate_id", "action", "timestamp", "duration_ms"])
    message, err = fails("import_events", "--tenant", "default", "--kind", "swipes", path)
    assert "6 rows are invalid" in message and Swipe.objects.count() == 0
    for expected in (
        f"line 3: candidate_id: Unknown profile {stranger.external_id} in this tenant.",
        "line 4: candidate_id: A user cannot act on their own profile.",
        'line 5: action: "maybe" is not a valid choice.',
        "line 5: duration_ms: Ensure this value is greater than or equal to 0.",
        "line 6: timestamp: Timestamp is in the future",
        "line 7: user_id: Must be a valid UUID.",
        "line 7: timestamp: Datetime has wrong format.",
        "line 8: action: This field is required.",
    ):
        assert expected in err, (expected, err)
    out, _err = run("import_events", "--tenant", "default", "--kind", "swipes", path, "--skip-invalid")
    assert "1 stored" in out and "not stored: 6 invalid" in out and Swipe.objects.count() == 1


SWIPE_VALUES: list[tuple[str, Any, bool]] = [
    # (field, value, accepted by the API) -- the import must agree on every one
    ("action", "maybe", False),
    ("action", "reject", True),
    ("duration_ms", "abc", False),
    ("duration_ms", "3600001", False),
    ("duration_ms", "1200.0", True),
    ("event_id", "x" * 129, False),
    ("event_id", "  e-1  ", True),
    ("session_id", "x" * 129, False),
    ("candidate_id", "42", False),
    ("candidate_id", "CANDIDATE-HEX", True),
    ("timestamp", "2026-02-30T10:00:00Z", False),
    ("timestamp", "2026-01-01T12:00:00+02:00", True),
    ("timestamp", "2026-01-01 12:00", True),
    ("timestamp", "FUTURE", False),
]


@pytest.mark.parametrize(("name", "value", "accepted"), SWIPE_VALUES, ids=[f"{c[0]}={c[1][:20]}" for c in SWIPE_VALUES])
def test_a_swipe_value_is_accepted_exactly_when_the_api_accepts_it(
    tenant, make_profile, tmp_path, service_client, settings, name, value, accepted
):
    settings.EVENT_RETENTION_DAYS = 36500  # the fixed 2026 timestamps must not expire
    a, b = people(make_profile, tenant, 1)
    value = {"CANDIDATE-HEX": b.external_id.hex, "FUTURE": (NOW + timedelta(days=1)).isoformat()}.get(value, value)
    item = {"candidate_id": str(b.external_id), "action": "like", "duration_ms": 900, "event_id": "e-0"}
    batch = {"user_id": str(a.external_id), "session_id": "s", "timestamp": "2026-01-01T12:00:00Z"}
    (item if name in item else batch)[name] = value
    api = service_client.post("/api/v1/events/swipes", {**batch, "swipes": [item]}, format="json")
    assert (api.status_code == 201) is accepted, api.json()
    Swipe.objects.all().delete()
    path = write_csv(tmp_path / "s.csv", [{**batch, **item}])
    if accepted:
        out, _err = run("import_events", "--kind", "swipes", path)
        assert "1 stored" in out
    else:
        _message, err = fails("import_events", "--kind", "swipes", path)
        assert f"line 2: {name}:" in err, err


def test_impressions_without_positions_are_numbered_per_screen(tenant, make_profile, tmp_path):
    user, *cands = people(make_profile, tenant, 2)
    first, second = (NOW - timedelta(hours=h) for h in (2, 1))
    rows = [{"user_id": user.external_id, "candidate_id": c.external_id, "timestamp": t.isoformat(),
             "context_hash": "browse"} for t in (first, second) for c in cands]  # fmt: skip
    rows[-1]["model_version"] = "feed-v1"
    path = write_csv(tmp_path / "i.csv", rows, [*rows[0], "model_version"])
    out, _err = run("import_events", "--kind", "impressions", path)
    assert "6 stored" in out
    stored = Impression.objects.order_by("occurred_at", "position")
    assert [(i.occurred_at, i.position) for i in stored] == [(first, n) for n in range(3)] + [
        (second, n) for n in range(3)
    ]
    assert [i.model_version for i in stored][-1] == "feed-v1"
    again, _err = run("import_events", "--kind", "impressions", tmp_path / "i.csv")
    assert "0 stored, 6 duplicates" in again


@pytest.mark.parametrize("tz", [None, "UTC"], ids=["naive-means-utc", "utc"])
def test_parquet_events_and_dry_run(tenant, make_profile, tmp_path, tz):
    a, b = people(make_profile, tenant, 1)
    times = [NOW - timedelta(days=1), NOW - timedelta(days=1) + timedelta(minutes=1)]
    table = pa.table(
        {
            "user_id": [str(a.external_id), str(b.external_id)],
            "candidate_id": [str(b.external_id), str(a.external_id)],
            "action": ["like", "superlike"],
            "timestamp": pa.array([t.replace(tzinfo=None) if tz is None else t for t in times], pa.timestamp("us", tz)),
        }
    )
    pq.write_table(table, tmp_path / "s.parquet")
    out, _err = run("import_events", "--kind", "swipes", tmp_path / "s.parquet", "--dry-run")
    assert "2 valid, 0 invalid" in out and Swipe.objects.count() == 0
    out, _err = run("import_events", "--kind", "swipes", tmp_path / "s.parquet")
    assert "2 stored" in out and "1 matches created from mutual likes" in out
    match = Match.objects.get()
    assert (match.match_type, match.occurred_at) == ("superlike", times[1])


def test_events_need_known_columns_and_a_tenant(tenant, other_tenant, tmp_path):
    path = write_csv(tmp_path / "s.csv", [{"user_id": "x", "candidate_id": "y", "timestamp": "z", "swiped": "1"}])
    assert "--tenant is required" in fails("import_events", "--kind", "swipes", path)[0]
    message = fails("import_events", "--kind", "swipes", path, "--tenant", "default")[0]
    assert "Unknown columns: swiped" in message
    path = write_csv(tmp_path / "t.csv", [{"user_id": "x", "candidate_id": "y", "timestamp": "z"}])
    assert (
        "Missing required columns: action" in fails("import_events", "--kind", "swipes", path, "--tenant", "other")[0]
    )
