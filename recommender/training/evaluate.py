"""Evaluating collaborative models: a trained artifact on the test split of its data, and any
model on any interaction CSV pair (``evaluate_offline``)."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import scipy.sparse as sp
from django.conf import settings

from recommender.ml.collab import (
    IdMap,
    Interactions,
    build_matrix,
    evaluate_model,
    load_recommender,
    model_class,
    validation_ndcg,
)
from recommender.ml.collab.metrics import catalogue_coverage, ranking_metrics
from recommender.training.train import (
    MODEL_TYPE,
    TRAINABLE,
    adapted_config,
    config_values,
    search_configurations,
    splits_load,
)

EVAL_K = 10


class EvaluationError(ValueError):
    """Evaluation cannot run on these inputs; the message says why."""


def latest_artifact() -> Path:
    root = Path(settings.ARTIFACT_ROOT) / MODEL_TYPE
    found = sorted(root.glob("*/model.pt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise EvaluationError(f"no trained model under {root}; run train first or pass --model-path")
    return found[-1]


def _markdown(report: dict[str, Any]) -> str:
    k = report["k"]
    rows = [
        ("NDCG", f"ndcg@{k}"),
        ("Precision", f"precision@{k}"),
        ("Recall", f"recall@{k}"),
        ("MAP", f"map@{k}"),
        ("Hit rate", f"hit_rate@{k}"),
        ("Catalogue coverage", f"coverage@{k}"),
        ("Match precision (reciprocal re-rank)", f"match_precision@{k}"),
        ("Match precision (one-way top-k)", f"one_way_match_precision@{k}"),
    ]
    lines = [
        f"# Evaluation of {report['model']} on the test split",
        "",
        f"Model: `{report['model_path']}`  ",
        f"Data: `{report['data_dir']}` (test from {report['test_start']}; {report['users']} users with a like "
        f"in test, {report.get('match_users', 0)} with a new match)",
        "",
        f"| metric | @{k} |",
        "|---|---:|",
        *[f"| {label} | {report[key]:.4f} |" for label, key in rows if key in report],
        "",
        "Ranking over every profile except those the user already swiped (train and validation);",
        "relevant = liked or superliked in test. Match precision: share of the top-k pairs that became",
        f"mutual likes in test ({report.get('fusion_method', 'harmonic')} fusion of both directions).",
        "",
    ]
    return "\n".join(lines)


def collaborative_evaluate(
    *, model_path: Path | str | None = None, data_dir: Path | str | None = None, k: int = EVAL_K
) -> dict[str, Any]:
    """Test-split metrics of a trained artifact; writes evaluation.json and evaluation.md next
    to the checkpoint and returns the report."""
    path = Path(model_path) if model_path else latest_artifact()
    if path.is_dir():
        path = path / "model.pt"
    if not path.exists():
        raise EvaluationError(f"{path} not found")
    model = load_recommender(path)
    extra = model.extra  # type: ignore[attr-defined]
    folder = Path(data_dir) if data_dir else Path(extra.get("data_dir", ""))
    data = splits_load(folder, ids=IdMap(np.asarray(extra["ids"], dtype=str)))
    # Everything swiped before the test period is excluded, not only train: the validation
    # swipes happened too, and the app never shows a profile twice. The likes of both count
    # as history when deciding which test likes completed a match.
    before = Interactions(
        matrix=(data.train.matrix + data.validation.matrix).tocsr(), users=data.ids, items=data.ids, shared=True
    )
    seen = (data.train.seen() + data.validation.seen()).tocsr()
    report: dict[str, Any] = {
        "model": model.name,
        "model_path": str(path.resolve()),
        "data_dir": str(data.data_dir),
        "test_start": data.split["cuts"]["test_start"],
        "k": k,
    }
    report.update(
        evaluate_model(
            model, before, data.test, k, exclude=seen, reciprocal=True, fusion_method=settings.ML_FUSION_METHOD
        )
    )
    (path.parent / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    (path.parent / "evaluation.md").write_text(_markdown(report))
    return report


# --- evaluate_offline ---------------------------------------------------------------------------

REQUIRED = ("user_id", "item_id")


def _read_interactions(path: Path | str, label: str) -> pa.Table:
    path = Path(path)
    if not path.exists():
        raise EvaluationError(f"{label} file {path} not found")
    try:
        header = next(csv.reader(path.open(newline="")), [])
    except (OSError, UnicodeDecodeError) as exc:
        raise EvaluationError(f"cannot read {label} file {path}: {exc}") from exc
    header = [h.strip() for h in header]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise EvaluationError(
            f"{label} file {path} lacks column(s) {', '.join(missing)}; "
            f"expected user_id,item_id[,rating,timestamp], found {','.join(header) or 'nothing'}"
        )
    # Ids are read as text: "007" and "7" are different ids, and ints and strings both work.
    types = {"user_id": pa.string(), "item_id": pa.string()}
    if "rating" in header:
        types["rating"] = pa.float64()
    try:
        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True))
    except pa.ArrowInvalid as exc:
        raise EvaluationError(f"{label} file {path} is malformed (is every rating a number?): {exc}") from exc
    if table.num_rows == 0:
        raise EvaluationError(f"{label} file {path} has no rows")
    for column in table.column_names:
        if column in (*REQUIRED, "rating") and table.column(column).null_count:
            raise EvaluationError(f"{label} file {path} has empty values in column {column}")
    return table


def _weights(table: pa.Table) -> np.ndarray:
    if "rating" in table.column_names:
        return table.column("rating").to_numpy().astype(np.float32)
    return np.ones(table.num_rows, dtype=np.float32)


VALIDATION_SHARE = 0.125  # of each user's train rows held out to choose the configuration


def _validation_rows(train_t: pa.Table, test_t: pa.Table, seed: int) -> tuple[np.ndarray, str]:
    """(bool mask of TRAIN rows held out for validation, how they were chosen).

    Each user with at least 4 train rows gives ``VALIDATION_SHARE`` of them. When both files
    carry timestamps and every test row is later than every train row (a time split), each
    user's latest rows are held out, so validation looks like test; otherwise a random share."""
    users = train_t.column("user_id").to_numpy(zero_copy_only=False).astype(str)
    timed = "timestamp" in train_t.column_names and "timestamp" in test_t.column_names
    by_time = bool(timed and pc.min(test_t.column("timestamp")).as_py() >= pc.max(train_t.column("timestamp")).as_py())
    rng = np.random.default_rng(seed)
    key = train_t.column("timestamp").to_numpy().astype(np.float64) if by_time else rng.random(len(users))
    order = np.lexsort((key, users))  # by user, then time (or a random key) within each user
    _, starts, sizes = np.unique(users[order], return_index=True, return_counts=True)
    rank = np.arange(users.size) - np.repeat(starts, sizes)
    size = np.repeat(sizes, sizes)
    held_sorted = (size >= 4) & (rank >= size - np.maximum(1, np.floor(size * VALIDATION_SHARE)))
    held = np.empty(users.size, dtype=bool)
    held[order] = held_sorted
    return held, "latest rows of each user (test is later than train)" if by_time else "random rows of each user"


def _tuned(
    model: str,
    config_path: Path | str | None,
    fit_part: Interactions,
    val_part: Interactions,
    trials: int,
    progress: bool,
) -> tuple[Any, dict[str, Any]]:
    """(the configuration the search chose on ``val_part``, a report of the search)."""
    values = config_values(model, config_path)
    config, schedule = adapted_config(model, values, fit_part.nnz)
    validate = validation_ndcg(fit_part, val_part, EVAL_K)
    found = search_configurations(model, config, values, fit_part, validate, trials, progress)
    return found.config, {"schedule": schedule, **found.summary()}


def offline_evaluate(
    *,
    train_csv: Path | str,
    test_csv: Path | str,
    model: str = "als",
    k: int = EVAL_K,
    recs_out: Path | str | None = None,
    json_out: Path | str | None = None,
    config_path: Path | str | None = None,
    search_trials: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Fit ``model`` on TRAIN.csv as ``train`` would, recommend top-k over every train item for
    each test user (never an item the user has in train), score against TEST.csv.

    As ``train``: the schedule adapts to the data, and a bounded search (``search_trials`` fits,
    default ``ML_TRAIN_SEARCH_TRIALS``; 1: the defaults only) chooses the configuration and
    epoch count on validation rows held out of TRAIN.csv (:func:`_validation_rows`), then the
    chosen configuration is fitted on all of TRAIN.csv. A rating, when present, is the weight:
    > 0 positive evidence, < 0 negative; a test row is relevant when its rating is > 0 (or
    without a rating column). Items only in test cannot be recommended; they stay relevant, so
    recall is not flattered, and their count is reported.
    """
    if model not in TRAINABLE:
        raise EvaluationError(f"unknown model {model!r}; expected one of {', '.join(TRAINABLE)}")
    if k <= 0:
        raise EvaluationError("k must be positive")
    trials = settings.ML_TRAIN_SEARCH_TRIALS if search_trials is None else int(search_trials)
    if trials < 1:
        raise EvaluationError("the search needs at least 1 trial (1: the default configuration only)")
    config_values(model, config_path)  # a bad config file fails before any work
    files = _OfflineFiles.read(train_csv, test_csv)
    held, how = _validation_rows(files.train_t, files.test_t, seed=0)
    config, tuning = _tuned(model, config_path, files.part(~held), files.part(held), trials, progress)
    recommender = model_class(model)(config)
    train = files.part(slice(None))
    recommender.fit(train)
    test_users = np.unique(files.users.index(files.te_users))  # every test user gets a list, relevant or not
    recs, _ = recommender.recommend(test_users, k, exclude=train.seen())
    relevant, unknown = files.relevant()
    report: dict[str, Any] = dict(ranking_metrics(recs, relevant[test_users], k))
    report["evaluated_users"] = report.pop("users")
    report[f"coverage@{k}"] = catalogue_coverage(recs, len(files.items))
    report.update(
        {
            "model": model,
            "config": {"model": model, **asdict(config)},
            "validation": {"rows": int(held.sum()), "chosen": how},
            "search": tuning,
            "k": k,
            "train_rows": files.train_t.num_rows,
            "test_rows": files.test_t.num_rows,
            "test_users": int(test_users.size),
            "catalogue_items": len(files.items),
            "test_rows_with_unknown_items": unknown,
        }
    )
    _write_outputs(report, files, test_users, recs, recs_out, json_out)
    return report


def _write_outputs(
    report: dict[str, Any],
    files: _OfflineFiles,
    test_users: np.ndarray,
    recs: np.ndarray,
    recs_out: Path | str | None,
    json_out: Path | str | None,
) -> None:
    if recs_out:
        _write_recs(Path(recs_out), files.users.ids[test_users], recs, files.items.ids)
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(report, indent=2) + "\n")


@dataclass
class _OfflineFiles:
    """TRAIN.csv and TEST.csv on one user map and the train catalogue."""

    train_t: pa.Table
    test_t: pa.Table
    users: IdMap
    items: IdMap  # the catalogue: what a model can score
    te_users: np.ndarray
    te_items: np.ndarray
    te_relevant: np.ndarray  # (test rows,) bool

    @classmethod
    def read(cls, train_csv: Path | str, test_csv: Path | str) -> _OfflineFiles:
        train_t, test_t = _read_interactions(train_csv, "train"), _read_interactions(test_csv, "test")
        te_users = test_t.column("user_id").to_numpy(zero_copy_only=False).astype(str)
        tr_users = train_t.column("user_id").to_numpy(zero_copy_only=False).astype(str)
        tr_items = train_t.column("item_id").to_numpy(zero_copy_only=False).astype(str)
        files = cls(
            train_t=train_t,
            test_t=test_t,
            users=IdMap(np.concatenate([tr_users, te_users])),
            items=IdMap(tr_items),
            te_users=te_users,
            te_items=test_t.column("item_id").to_numpy(zero_copy_only=False).astype(str),
            te_relevant=_weights(test_t) > 0,
        )
        if not files.te_relevant.any():
            raise EvaluationError(f"test file {test_csv} has no positive interaction to evaluate against")
        if files.part(slice(None)).positives().nnz == 0:
            raise EvaluationError(f"train file {train_csv} has no positive interaction to learn from")
        return files

    def part(self, rows: np.ndarray | slice) -> Interactions:
        """The train rows ``rows`` as an interaction matrix (users x catalogue)."""
        t = self.train_t
        u = self.users.index(t.column("user_id").to_numpy(zero_copy_only=False).astype(str)[rows])
        i = self.items.index(t.column("item_id").to_numpy(zero_copy_only=False).astype(str)[rows])
        matrix = build_matrix(u, i, _weights(t)[rows], (len(self.users), len(self.items)))
        return Interactions(matrix=matrix, users=self.users, items=self.items)

    def relevant(self) -> tuple[sp.csr_matrix, int]:
        """(relevant test pairs over users x (catalogue + one column per unknown test item), how
        many relevant test rows name an item outside the catalogue)."""
        ids = self.te_items[self.te_relevant]
        ti = self.items.index(ids, missing=-1)
        tu = self.users.index(self.te_users[self.te_relevant])
        unknown = ti < 0
        unknown_ids = IdMap(ids[unknown])
        ti[unknown] = len(self.items) + unknown_ids.index(ids[unknown])
        shape = (len(self.users), len(self.items) + len(unknown_ids))
        return build_matrix(tu, ti, np.ones(tu.size, dtype=np.float32), shape), int(unknown.sum())


def _write_recs(path: Path, user_ids: np.ndarray, recs: np.ndarray, item_ids: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["user_id", "rank", "item_id"])
        for user, row in zip(user_ids.tolist(), recs.tolist(), strict=True):
            for rank, item in enumerate(row, start=1):
                if item >= 0:
                    writer.writerow([user, rank, item_ids[item]])
