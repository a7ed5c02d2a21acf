"""The collaborative pipeline end to end (extract -> build -> train -> evaluate) on a small demo,
and ``evaluate_offline`` on arbitrary interaction files."""

from __future__ import annotations

import csv
import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from accounts.models import Tenant
from recommender.models import Impression, Match, Profile, Swipe
from recommender.training.extract import export_hash
from recommender.training.tasks import evaluate_model as evaluate_task
from recommender.training.tasks import train_collaborative

FAST_ALS = {"factors": 16, "epochs": 4, "threads": 1}
FAST_BPR = {"factors": 16, "epochs": 3, "batch_size": 512, "threads": 1}
# evaluate_offline has no validation split (no early stopping), so the planted files get a fixed,
# sufficient number of epochs.
OFFLINE = {
    "als": {"factors": 8, "epochs": 10, "threads": 1},
    "bpr": {"factors": 8, "epochs": 40, "batch_size": 64, "learning_rate": 0.05, "threads": 1},
    "popularity": {},
}


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.mark.django_db(transaction=False)
def test_pipeline_end_to_end(tenant: Tenant, tmp_path: Path, settings: object) -> None:
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"  # type: ignore[attr-defined]
    call_command("load_demo", "--limit", "400", "--swipes", "4000", "--no-users", verbosity=0)
    events, splits = tmp_path / "events", tmp_path / "splits"
    start = (timezone.now() - timedelta(days=60)).date().isoformat()

    # extract: every event exported, pseudonymised
    call_command("extract_events", "--output", str(events), "--start-date", start, "--tenant", tenant.slug, verbosity=0)
    manifest = json.loads((events / "manifest.json").read_text())
    assert manifest["tables"]["swipes"]["rows"] == Swipe.objects.filter(tenant=tenant).count() > 3000
    assert manifest["tables"]["impressions"]["rows"] == Impression.objects.filter(tenant=tenant).count()
    assert manifest["tables"]["matches"]["rows"] == Match.objects.filter(tenant=tenant).count()
    assert manifest["time_range"]["start"] <= manifest["time_range"]["end"]
    raw_ids = {str(x) for x in Profile.objects.values_list("external_id", flat=True)}
    raw_pks = {str(x) for x in Profile.objects.values_list("id", flat=True)}
    hashes = {export_hash(x) for x in raw_ids}
    for name in ("swipes", "impressions", "matches"):
        table = pq.read_table(events / f"{name}.parquet")
        for column in set(table.column_names) & {"user", "candidate", "user_a", "user_b"}:
            values = set(table.column(column).to_pylist())
            assert values <= hashes and not values & (raw_ids | raw_pks)
        text = (events / f"{name}.parquet").read_bytes()
        assert not any(rid.encode() in text for rid in list(raw_ids)[:50])
    some = Swipe.objects.filter(tenant=tenant).select_related("user").order_by("occurred_at", "id").first()
    assert some is not None
    assert pq.read_table(events / "swipes.parquet").column("user")[0].as_py() == export_hash(some.user.external_id)

    # build: time-ordered splits with the cut recorded
    call_command(
        "build_datasets", "--input", str(events), "--output", str(splits), "--split-ratio", "0.8,0.1,0.1",
        "--strategy", "time",
    )  # fmt: skip
    split = json.loads((splits / "split.json").read_text())
    parts = {s: pq.read_table(splits / f"{s}.parquet") for s in ("train", "validation", "test")}
    assert sum(split["counts"].values()) == manifest["tables"]["swipes"]["rows"]
    assert {s: t.num_rows for s, t in parts.items()} == split["counts"]
    assert abs(split["fractions"]["train"] - 0.8) < 0.05
    train_times, val_times, test_times = (parts[s].column("occurred_at").to_pylist() for s in parts)
    assert max(train_times) < min(val_times) <= max(val_times) < min(test_times)
    assert min(val_times).isoformat() == split["cuts"]["validation_start"]
    assert min(test_times).isoformat() == split["cuts"]["test_start"]

    # train: artifact, metrics with the validation curve, a registered collaborative version
    call_command(
        "train",
        "--model",
        "als",
        "--data",
        str(splits),
        "--config",
        str(write_json(tmp_path / "c.json", FAST_ALS)),
        verbosity=0,
    )
    (artifact,) = (tmp_path / "artifacts" / "collaborative").glob("als-*")
    metrics = json.loads((artifact / "metrics.json").read_text())
    assert len(metrics["curve"]) == metrics["epochs_run"] >= 1
    assert all(0.0 <= point["val_ndcg@10"] <= 1.0 for point in metrics["curve"])
    assert metrics["val_ndcg@10"] == max(point["val_ndcg@10"] for point in metrics["curve"])
    assert json.loads((artifact / "config.json").read_text())["factors"] == 16
    # ALS's collective-MF term gets the profiles' attributes (not the bio columns), so every
    # profile of the tenant has factors, swipes or not.
    assert metrics["feature_columns"] > 0
    from recommender.ml.collab import ALS, load_recommender

    als = load_recommender(artifact / "model.pt")
    assert isinstance(als, ALS) and als.has_features
    assert als.knows_users(np.arange(als.n_users)).all()
    assert (als.user_activity == 0).any()  # some profiles have no train swipe and are still known
    from registry.models import ModelVersion

    version = ModelVersion.objects.get(tenant=tenant, model_type="collaborative")
    assert version.metrics["val_ndcg@10"] == metrics["val_ndcg@10"]
    assert version.parameters["model"] == "als"

    # evaluate: every metric, JSON and Markdown next to the model
    call_command("evaluate", "--model-path", str(artifact), verbosity=0)
    report = json.loads((artifact / "evaluation.json").read_text())
    for key in ("ndcg@10", "precision@10", "recall@10", "map@10", "hit_rate@10", "coverage@10", "match_precision@10"):
        assert 0.0 <= report[key] <= 1.0, key
    assert report["users"] > 0 and report["hit_rate@10"] > 0
    assert "| NDCG |" in (artifact / "evaluation.md").read_text()

    # the same steps as Celery tasks (eager in tests)
    result = train_collaborative.delay("bpr", str(splits), str(write_json(tmp_path / "b.json", FAST_BPR))).get()
    assert Path(result["artifact_dir"]).name.startswith("bpr-") and result["version_id"]
    evaluated = evaluate_task.delay(str(Path(result["artifact_dir"]) / "model.pt")).get()
    assert evaluated["model"] == "bpr" and "ndcg@10" in evaluated


@pytest.mark.django_db
def test_pipeline_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="not found; run extract_events"):
        call_command("build_datasets", "--input", str(tmp_path), "--output", str(tmp_path / "o"))
    with pytest.raises(CommandError, match="summing to 1"):
        call_command(
            "build_datasets", "--input", str(tmp_path), "--output", str(tmp_path / "o"), "--split-ratio", "0.5,0.2"
        )
    with pytest.raises(CommandError, match="run build_datasets first"):
        call_command("train", "--model", "als", "--data", str(tmp_path))
    with pytest.raises(CommandError, match="not a date"):
        call_command("extract_events", "--output", str(tmp_path), "--start-date", "last tuesday")


# --- evaluate_offline ---------------------------------------------------------------------------


def planted_files(folder: Path, *, as_strings: bool, seed: int = 0) -> tuple[Path, Path, dict[str, set[str]]]:
    """Users in two taste groups over items (songs, not profiles); one user has a single
    train interaction. Returns the files and each user's train items."""
    rng = np.random.default_rng(seed)
    n_users, n_items = 80, 60

    def uid(u: int) -> str:
        return f"user-{u:03d}" if as_strings else str(1000 + u)

    def iid(i: int) -> str:
        return f"song/{i}" if as_strings else str(i * 7)

    rows: list[tuple[str, str, float, int]] = []
    for u in range(n_users):
        liked = np.flatnonzero((np.arange(n_items) % 2) == (u % 2))
        picks = rng.choice(liked, size=1 if u == 0 else 12, replace=False)
        rows += [(uid(u), iid(int(i)), float(rng.integers(1, 6)), int(rng.integers(0, 10**6))) for i in picks]
    rng.shuffle(rows)
    cut = int(len(rows) * 0.8)
    train, test = rows[:cut], rows[cut:]
    # the single-interaction user must be in train, and also asked in test
    train = [r for r in rows if r[0] == uid(0)] + [r for r in train if r[0] != uid(0)]
    test = [r for r in test if r[0] != uid(0)] + [(uid(0), iid(2), 4.0, 5)]
    paths = []
    for name, data in (("train", train), ("test", test)):
        path = folder / f"{name}.csv"
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["user_id", "item_id", "rating", "timestamp"])
            writer.writerows(data)
        paths.append(path)
    seen: dict[str, set[str]] = {}
    for u, i, *_ in train:
        seen.setdefault(u, set()).add(i)
    return paths[0], paths[1], seen


@pytest.mark.parametrize("as_strings", [False, True], ids=["int-ids", "string-ids"])
@pytest.mark.parametrize("model", ["als", "bpr", "popularity"])
def test_evaluate_offline(tmp_path: Path, model: str, as_strings: bool) -> None:
    train, test, seen = planted_files(tmp_path, as_strings=as_strings)
    recs_path, json_path = tmp_path / "recs.csv", tmp_path / "m.json"
    config = write_json(tmp_path / "c.json", OFFLINE[model])
    call_command(
        "evaluate_offline", "--train", str(train), "--test", str(test), "--model", model, "--k", "10",
        "--recs-out", str(recs_path), "--json", str(json_path), "--config", str(config), verbosity=0,
    )  # fmt: skip
    metrics = json.loads(json_path.read_text())
    assert metrics["model"] == model and metrics["k"] == 10
    for key in ("ndcg@10", "precision@10", "recall@10", "map@10", "hit_rate@10", "coverage@10"):
        assert 0.0 <= metrics[key] <= 1.0
    with recs_path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["user_id", "rank", "item_id"]
        recs = list(reader)
    test_users = {row["user_id"] for row in csv.DictReader(test.open(newline=""))}
    assert {r["user_id"] for r in recs} == test_users
    train_items = set().union(*seen.values())
    by_user: dict[str, list[str]] = {}
    for r in recs:
        by_user.setdefault(r["user_id"], []).append(r["item_id"])
        assert r["item_id"] not in seen.get(r["user_id"], set()), "recommended a train item"
        assert r["item_id"] in train_items
    assert all(len(items) == 10 and len(set(items)) == 10 for items in by_user.values())
    single = "user-000" if as_strings else "1000"
    assert len(by_user[single]) == 10
    if model != "popularity":  # the planted two-group taste is learnt: most recs match the group
        group_of = {i: (int(i.split("/")[1]) if as_strings else int(i) // 7) % 2 for i in train_items}
        user_group = {u: (int(u.split("-")[1]) if as_strings else int(u) - 1000) % 2 for u in by_user}
        share = np.mean([group_of[i] == user_group[u] for u, items in by_user.items() for i in items])
        assert share > 0.8
        assert metrics["ndcg@10"] > 0.1


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.mark.parametrize(
    ("train_rows", "test_rows", "message"),
    [
        ((["user", "item_id"], [[1, 2]]), (["user_id", "item_id"], [[1, 3]]), "lacks column\\(s\\) user_id"),
        ((["user_id", "item_id"], [[1, 2]]), (["user_id", "item_id"], []), "has no rows"),
        (
            (["user_id", "item_id", "rating"], [[1, 2, "five"]]),
            (["user_id", "item_id"], [[1, 3]]),
            "is every rating a number",
        ),
        (
            (["user_id", "item_id"], [[1, 2]]),
            (["user_id", "item_id", "rating"], [[1, 3, -1]]),
            "no positive interaction",
        ),
        ((["user_id", "item_id"], [[1, ""]]), (["user_id", "item_id"], [[1, 3]]), "empty values in column item_id"),
    ],
    ids=["missing-column", "empty-test", "non-numeric-rating", "no-positive-test", "empty-id"],
)
def test_evaluate_offline_malformed_files(
    tmp_path: Path,
    train_rows: tuple[list[str], list[list[object]]],
    test_rows: tuple[list[str], list[list[object]]],
    message: str,
) -> None:
    train = write_csv(tmp_path / "train.csv", *train_rows)
    test = write_csv(tmp_path / "test.csv", *test_rows)
    with pytest.raises(CommandError, match=message):
        call_command("evaluate_offline", "--train", str(train), "--test", str(test), "--model", "als", verbosity=0)


def test_evaluate_offline_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="not found"):
        call_command(
            "evaluate_offline",
            "--train",
            str(tmp_path / "nope.csv"),
            "--test",
            str(tmp_path / "x.csv"),
            "--model",
            "als",
        )
