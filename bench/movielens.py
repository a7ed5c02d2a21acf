"""MovieLens-100K: the default training path on real human decisions, against the simple
baseline and against ``implicit``'s ALS tuned on the same data, in one run.

    .venv/bin/python -m bench.movielens [--data var/datasets/ml-100k] [--seed 0]

MovieLens may be used but not redistributed: it is not in the repository. Restore it with::

    mkdir -p var/datasets && cd var/datasets \\
      && curl -LO https://files.grouplens.org/datasets/movielens/ml-100k.zip && unzip ml-100k.zip

(``var/`` is git-ignored; ``--data`` or ``MOVIELENS_100K_DIR`` point elsewhere). Without it the
benchmark says so and exits 0 without results.

What is measured, on one seeded random 80/20 split of the 100,000 ratings:

* **Decisions** (the dating question): a rating of 4 or 5 is a like, 1 to 3 a pass. ``lmf``
  trained the way ``train`` trains it (``recommender.training.train.adapted_config``: the
  schedule for the data; the configuration search on a per-user validation split of train; the
  chosen configuration refitted on all of train), against the baseline: the movie's share of
  likes received times the user's share of likes given, over train. One-way AUC on test, with a
  95 % bootstrap interval of the difference (1,000 resamples of the test ratings).
* **Ranking** (the recommender question): ``evaluate_offline`` with its defaults (``--model
  als``, and ``--model bpr``) on the train and test CSVs (``user_id,item_id,rating,timestamp``),
  NDCG@10 over every test user; against ``implicit``'s ALS on the binary train matrix, tuned on a
  random 1/8 of train over factors {32, 64, 128} x regularization {0.01, 0.1, 1, 10} x alpha
  {1, 5, 20, 40} with the iteration count from a per-iteration validation callback (up to 30),
  then refitted on all of train. Ratio with a 95 % bootstrap interval over test users.

Results: ``bench/results/movielens.json`` and a table; recorded runs in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO_DIR, format_table, isolate, machine_info, setup_django, write_result

DEFAULT_DIR = REPO_DIR / "var" / "datasets" / "ml-100k"
BOOTSTRAP = 1000
LIKE_AT = 4
IMPLICIT_GRID = {"factors": [32, 64, 128], "regularization": [0.01, 0.1, 1.0, 10.0], "alpha": [1.0, 5.0, 20.0, 40.0]}
IMPLICIT_MAX_ITERATIONS = 30
THREADS = 1


def load_ratings(folder: Path) -> np.ndarray | None:
    """[100000, 4] user, item, rating, timestamp; None when the file is missing."""
    path = folder / "u.data"
    if not path.exists():
        return None
    data = np.loadtxt(path, dtype=np.int64)
    if data.shape != (100_000, 4):
        raise SystemExit(f"{path} has shape {data.shape}, not MovieLens-100K's (100000, 4): a damaged copy?")
    return data


def split(data: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(len(data))
    n_test = len(data) // 5
    return data[order[n_test:]], data[order[:n_test]]


def bootstrap_diff(a: np.ndarray, b: np.ndarray, stat: Any, n: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(BOOTSTRAP):
        idx = rng.integers(0, n, n)
        x, y = stat(a, idx), stat(b, idx)
        if x is not None and y is not None:
            diffs.append(x - y)
    return [float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))]


# --- decisions: lmf against popularity x pickiness ----------------------------------------------


def decisions(train: np.ndarray, test: np.ndarray, seed: int) -> dict[str, Any]:
    from recommender.ml.collab import IdMap, interactions_from_events, model_class, validation_like_auc
    from recommender.ml.collab.tuning import search
    from recommender.training.fusion import auc
    from recommender.training.train import adapted_config

    def ids(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.char.add("u", rows[:, 0].astype(str)), np.char.add("m", rows[:, 1].astype(str))

    everyone = IdMap(np.concatenate([*ids(train), *ids(test)]))
    weights = {True: 1.0, False: -0.5}

    def inter(rows: np.ndarray) -> Any:
        u, m = ids(rows)
        w = np.where(rows[:, 2] >= LIKE_AT, weights[True], weights[False]).astype(np.float32)
        return interactions_from_events(u, m, w, user_map=everyone, shared=True)

    held = per_user_holdout(train, seed)
    started = time.perf_counter()
    config, schedule = adapted_config("lmf", {}, int((~held).sum()))
    found = search(model_class("lmf"), config, inter(train[~held]), validation_like_auc(inter(train[held])))
    model = model_class("lmf")(found.config)
    model.fit(inter(train))
    seconds = time.perf_counter() - started
    tu, tm = ids(test)
    y = test[:, 2] >= LIKE_AT
    lmf = model.pair_log_odds(everyone.index(tu), everyone.index(tm))
    base = popularity_x_pickiness(train, test)
    stat = lambda s, idx: auc(s[idx], y[idx])  # noqa: E731
    return {
        "test_ratings": len(test),
        "like_share": float(y.mean()),
        "baseline_auc": auc(base, y),
        "lmf_auc": auc(lmf, y),
        "lmf_minus_baseline_ci95": bootstrap_diff(lmf, base, stat, len(y), seed),
        "lmf_seconds": seconds,
        "schedule": schedule,
        "search": {k: found.summary()[k] for k in ("tried", "best", "default_validation")},
    }


def per_user_holdout(train: np.ndarray, seed: int) -> np.ndarray:
    """A random 1/8 of each user's train ratings (users with at least 4)."""
    rng = np.random.default_rng(seed + 1)
    held = np.zeros(len(train), dtype=bool)
    for user in np.unique(train[:, 0]):
        rows = np.flatnonzero(train[:, 0] == user)
        if len(rows) >= 4:
            held[rng.choice(rows, size=max(1, len(rows) // 8), replace=False)] = True
    return held


def popularity_x_pickiness(train: np.ndarray, test: np.ndarray) -> np.ndarray:
    liked = train[:, 2] >= LIKE_AT
    overall = float(liked.mean())

    def share(keys: np.ndarray, at: np.ndarray) -> np.ndarray:
        size = int(max(keys.max(), at.max())) + 1
        n = np.bincount(keys, minlength=size).astype(np.float64)
        k = np.bincount(keys, weights=liked.astype(np.float64), minlength=size)
        rate = np.divide(k, n, out=np.full(size, overall), where=n > 0)
        return rate[at]

    return share(train[:, 0], test[:, 0]) * share(train[:, 1], test[:, 1])


# --- ranking: evaluate_offline against tuned implicit ALS --------------------------------------


def write_csv(path: Path, rows: np.ndarray) -> Path:
    np.savetxt(path, rows, fmt="%d", delimiter=",", header="user_id,item_id,rating,timestamp", comments="")
    return path


def ranking(train: np.ndarray, test: np.ndarray, seed: int) -> dict[str, Any]:
    from recommender.training.evaluate import offline_evaluate

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        train_csv, test_csv = write_csv(Path(tmp) / "train.csv", train), write_csv(Path(tmp) / "test.csv", test)
        for model in ("als", "bpr"):
            started = time.perf_counter()
            recs = Path(tmp) / f"{model}.csv"
            report = offline_evaluate(train_csv=train_csv, test_csv=test_csv, model=model, recs_out=recs)
            out[f"evaluate_offline_{model}"] = {
                "ndcg@10": report["ndcg@10"],
                "seconds": time.perf_counter() - started,
                "search": {k: report["search"][k] for k in ("tried", "best", "schedule")},
                "per_user": per_user_ndcg(recs, test),
            }
    started = time.perf_counter()
    tuned, per_user = implicit_tuned(train, test, seed)
    out["implicit_als_tuned"] = {**tuned, "seconds": time.perf_counter() - started, "per_user": per_user}
    for model in ("als", "bpr"):
        ours, theirs = out[f"evaluate_offline_{model}"]["per_user"], per_user
        users = sorted(set(ours) & set(theirs))
        a, b = np.array([ours[u] for u in users]), np.array([theirs[u] for u in users])
        ratio = lambda s, idx: s[idx].mean()  # noqa: E731
        rng = np.random.default_rng(seed)
        draws = [rng.integers(0, len(users), len(users)) for _ in range(BOOTSTRAP)]
        ratios = [ratio(a, i) / ratio(b, i) for i in draws]
        out[f"evaluate_offline_{model}"]["ratio_to_implicit"] = float(a.mean() / b.mean())
        out[f"evaluate_offline_{model}"]["ratio_ci95"] = [
            float(np.percentile(ratios, 2.5)),
            float(np.percentile(ratios, 97.5)),
        ]
    for part in out.values():
        part.pop("per_user")
    return out


def per_user_ndcg(recs_csv: Path, test: np.ndarray, k: int = 10) -> dict[int, float]:
    """NDCG@k of each test user from a ``user_id,rank,item_id`` file (the test's relevant items:
    every rated one, as ``evaluate_offline`` counts them)."""
    rows = np.loadtxt(recs_csv, delimiter=",", skiprows=1, dtype=np.int64).reshape(-1, 3)
    return _ndcg_by_user({(int(u), int(r)): int(i) for u, r, i in rows}, test, k)


def _ndcg_by_user(ranked: dict[tuple[int, int], int], test: np.ndarray, k: int) -> dict[int, float]:
    relevant: dict[int, set[int]] = {}
    for u, i in test[:, :2].tolist():
        relevant.setdefault(u, set()).add(i)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    out = {}
    for u, rel in relevant.items():
        hits = np.array([ranked.get((u, r)) in rel for r in range(1, k + 1)], dtype=np.float64)
        out[u] = float(hits @ discounts / discounts[: min(len(rel), k)].sum())
    return out


def implicit_tuned(train: np.ndarray, test: np.ndarray, seed: int) -> tuple[dict[str, Any], dict[int, float]]:
    """``implicit``'s ALS on binary train, tuned on a random 1/8 of it (grid x iterations)."""
    from implicit.cpu.als import AlternatingLeastSquares

    from bench.collab import implicit_as_model
    from recommender.ml.collab import IdMap, Interactions, build_matrix, validation_ndcg

    users, items = IdMap(np.concatenate([train[:, 0], test[:, 0]])), IdMap(train[:, 1])
    order = np.random.default_rng(seed + 2).permutation(len(train))
    fit_rows, val_rows = train[order[len(train) // 8 :]], train[order[: len(train) // 8]]

    def inter(rows: np.ndarray) -> Interactions:
        ii = items.index(rows[:, 1], missing=-1)
        keep = ii >= 0
        m = build_matrix(
            users.index(rows[keep, 0]), ii[keep], np.ones(int(keep.sum()), np.float32), (len(users), len(items))
        )
        return Interactions(matrix=m, users=users, items=items)

    fit, val, full = inter(fit_rows), inter(val_rows), inter(train)
    validate = validation_ndcg(fit, val, 10)
    best: tuple[float, dict[str, Any], int] | None = None
    for values in itertools.product(*IMPLICIT_GRID.values()):
        params = dict(zip(IMPLICIT_GRID, values, strict=True))
        model = AlternatingLeastSquares(
            **params, iterations=IMPLICIT_MAX_ITERATIONS, num_threads=THREADS, random_state=seed
        )
        curve: list[tuple[float, int]] = []

        def record(it: int, *_: Any, m: Any = model, c: list[tuple[float, int]] = curve) -> None:
            c.append((validate(implicit_as_model(m, fit)), it + 1))

        model.fit(fit.matrix, show_progress=False, callback=record)
        score, iterations = max(curve)
        if best is None or score > best[0]:
            best = (score, params, iterations)
    assert best is not None
    model = AlternatingLeastSquares(**best[1], iterations=best[2], num_threads=THREADS, random_state=seed)
    model.fit(full.matrix, show_progress=False)
    tu = np.unique(users.index(test[:, 0]))
    recs, _ = implicit_as_model(model, full).recommend(tu, 10, exclude=full.seen())
    ranked = {
        (int(users.ids[u]), r + 1): int(items.ids[i])
        for u, row in zip(tu, recs, strict=True)
        for r, i in enumerate(row)
        if i >= 0
    }
    per_user = _ndcg_by_user(ranked, test, 10)
    return {"ndcg@10": float(np.mean(list(per_user.values()))), "params": best[1], "iterations": best[2],
            "validation_ndcg@10": best[0]}, per_user  # fmt: skip


# --- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("MOVIELENS_100K_DIR", str(DEFAULT_DIR)))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-ranking", action="store_true", help="the decisions part only (a few minutes less)")
    args = parser.parse_args()
    ratings = load_ratings(Path(args.data))
    if ratings is None:
        print(__doc__.split("What is measured")[0].strip())
        print(f"\nMovieLens-100K not found in {args.data}: nothing measured.")
        return
    isolate("patra_bench_movielens", embedded=True)
    setup_django()
    train, test = split(ratings, args.seed)
    started = time.perf_counter()
    payload: dict[str, Any] = {"benchmark": "movielens", "seed": args.seed, "machine": machine_info()}
    print("decisions: lmf as train trains it, and the baseline ...", flush=True)
    payload["decisions"] = decisions(train, test, args.seed)
    if not args.skip_ranking:
        print("ranking: evaluate_offline (als, bpr) and implicit's ALS tuned on a grid ...", flush=True)
        payload["ranking"] = ranking(train, test, args.seed)
    payload["seconds"] = time.perf_counter() - started
    path = write_result("movielens", payload)
    print(report(payload))
    print(f"\nwritten to {path}")


def report(payload: dict[str, Any]) -> str:
    d = payload["decisions"]
    lines = [format_table(
        ["decisions (rating >= 4 is a like)", "one-way AUC"],
        [["popularity x pickiness", f"{d['baseline_auc']:.4f}"],
         ["lmf, train's defaults", f"{d['lmf_auc']:.4f} (minus baseline, 95% CI {d['lmf_minus_baseline_ci95'][0]:+.4f} "
                                   f"to {d['lmf_minus_baseline_ci95'][1]:+.4f})"]],
    )]  # fmt: skip
    if "ranking" in payload:
        r = payload["ranking"]
        rows = [["implicit ALS, tuned", f"{r['implicit_als_tuned']['ndcg@10']:.4f}", "1.00"]]
        for model in ("als", "bpr"):
            part = r[f"evaluate_offline_{model}"]
            ci = part["ratio_ci95"]
            rows.append([f"evaluate_offline --model {model} (defaults)", f"{part['ndcg@10']:.4f}",
                         f"{part['ratio_to_implicit']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"])  # fmt: skip
        lines.append(format_table(["ranking", "NDCG@10", "ratio to implicit [95% CI]"], rows))
    return "\n\n".join(lines)


if __name__ == "__main__":
    main()
