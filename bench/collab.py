"""Collaborative filtering: our ALS, BPR and popularity against the ``implicit`` library.

    .venv/bin/python -m bench.collab              # quality + 100k timing + 10M timing
    .venv/bin/python -m bench.collab --no-10m     # skip the 10M-interaction timing

What is measured (one run, one data set, one protocol for every model):

* **Data**: the vendored 3,000-profile OkCupid sample (``build_population``, seed 7) and a
  100,000-swipe history from ``SwipeSimulator.simulate_history`` (30 days, seed 7), with no
  database. Weights as in settings: like 1, superlike 2, pass -0.5.
* **Side features** (``ours_als_side`` only): each profile's attributes as the feed knows them
  (``profile_feature_matrix`` without the bio embedding: gender, seeking, ages, distance, location,
  interests, lifestyle; no ethnicity), used by collective-MF ALS (``ALSConfig.side_weight``).
  ``implicit`` has no way to use them; ``ours_als`` is the like-for-like comparison.
* **Split**: global time cut points at 80% / 90% of the swipes (as ``build_datasets``).
* **Protocol**: for every user with a like in the held-out split, top-10 over all 3,000
  profiles excluding the user and every profile they swiped before the split (train, plus
  validation for test); relevant = liked in the held-out split. Users with no train swipe
  get the popularity ranking, for every model alike (``Recommender.recommend``).
* **Tuning**: every model's grid (below, in ``GRIDS``) is searched on validation NDCG@10; the
  epoch count is part of the search (early stopping for ours; a per-iteration validation
  callback for implicit, whose best iteration count is then refitted). The test numbers are of
  the best validation configuration only.
* **Training time**: the final fit of the chosen configuration with its chosen epoch count,
  no validation inside, wall clock, median of ``--repeats`` fits. Both libraries get the same
  number of threads (``--threads``, default 1: this 2-core machine is shared, and spinning
  OpenMP threads of either library slow down badly under load; see docs/benchmarks.md).
* **Scaling**: fit time of ALS and BPR (ours and implicit's, default-size configs) on 100k and
  on 10M interactions from a planted low-rank model (``planted_interactions``), per epoch.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import scipy.sparse as sp
import threadpoolctl
import torch

from bench.common import format_table, machine_info, write_result
from recommender.ml.collab import (
    ALS,
    BPR,
    ALSConfig,
    BPRConfig,
    EventWeights,
    FactorModel,
    IdMap,
    Interactions,
    Popularity,
    PopularityConfig,
    Recommender,
    build_matrix,
    evaluate_model,
    validation_ndcg,
)
from recommender.ml.collab.features import profile_feature_matrix
from recommender.ml.collab.metrics import ranking_metrics
from recommender.ml.structured import ProfileFeatures
from recommender.simulation import SimProfile, SwipeSimulator, build_population, load_sample

SEED = 7
K = 10

# Grids searched on validation NDCG@10 (documented in docs/benchmarks.md).
GRIDS: dict[str, dict[str, list[Any]]] = {
    "ours_als": {
        "factors": [32, 64],
        "regularization": [1.0, 10.0],
        "alpha": [2.0, 10.0],
        "pass_confidence": [0.0, 0.25, 1.0],  # 0 = passes ignored, 1 = confidence alpha * 0.5
    },
    "ours_als_side": {
        "factors": [32, 64],
        "regularization": [1.0, 10.0],
        "alpha": [2.0, 10.0],
        "pass_confidence": [0.0, 0.25],
        "side_weight": [0.01, 0.03, 0.1],  # weight of the profile-attribute reconstruction
    },
    "ours_bpr": {"factors": [32, 64], "learning_rate": [0.005, 0.02], "hard_negative_share": [0.0, 0.25]},
    "implicit_als": {
        "factors": [32, 64],
        "regularization": [1.0, 10.0],
        "alpha": [2.0, 10.0],
        "passes": ["negative", "dropped"],  # negative: value -0.5, read by implicit as p = 0, c = 1 + alpha * 0.5
    },
    "implicit_bpr": {"factors": [32, 64], "learning_rate": [0.01, 0.05], "regularization": [0.01, 0.001]},
}
MAX_EPOCHS = {"ours_als": 20, "ours_als_side": 20, "ours_bpr": 60, "implicit_als": 20, "implicit_bpr": 150}


def grid(name: str) -> list[dict[str, Any]]:
    keys = list(GRIDS[name])
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*GRIDS[name].values())]


# --- data -----------------------------------------------------------------------------------


def simulated_swipes(n_swipes: int) -> dict[str, np.ndarray]:
    population = build_population(load_sample(), seed=SEED)
    simulator = SwipeSimulator(population, seed=SEED)
    users: list[int] = []
    items: list[int] = []
    actions: list[str] = []
    times: list[float] = []
    start = datetime(2024, 3, 1, tzinfo=UTC)
    for batch in simulator.simulate_history(n_swipes, start=start, days=30):
        n = len(batch.candidates)
        users += [batch.user] * n
        items += batch.candidates
        actions += batch.actions
        times += [batch.timestamp.timestamp()] * n
    order = np.argsort(np.asarray(times), kind="stable")
    return {
        "users": np.asarray(users)[order],
        "items": np.asarray(items)[order],
        "actions": np.asarray(actions)[order],
        "times": np.asarray(times)[order],
        "n": np.asarray(len(population)),
    }


def profile_features(population: list[SimProfile]) -> list[ProfileFeatures]:
    """What the feed knows about each simulated profile (the structured-match inputs)."""
    return [
        ProfileFeatures(
            age=p.age,
            gender=p.gender,
            seeking=tuple(p.seeking),
            age_min=p.age_min,
            age_max=p.age_max,
            max_distance_km=float(p.max_distance_km),
            lat=p.lat,
            lon=p.lon,
            interests=frozenset(p.interests),
            attributes=p.attributes,
        )
        for p in population
    ]


def attribute_features() -> np.ndarray:
    """[n, f] side features of the benchmark population, without bio embeddings (their 384
    columns swamped the attribute columns in ALS's reconstruction term: validation NDCG@10 0.139
    with them against 0.148 without, 32 factors)."""
    return profile_feature_matrix(profile_features(build_population(load_sample(), seed=SEED)), None)


def time_split(events: dict[str, np.ndarray]) -> tuple[Interactions, Interactions, Interactions, Interactions]:
    """Train, validation, test and train+validation (for test exclusion), cut by time."""
    ts, n = events["times"], events["times"].size
    cuts = [ts[int(np.floor(q * n))] for q in (0.8, 0.9)]
    bounds = [0, int(np.searchsorted(ts, cuts[0], "left")), int(np.searchsorted(ts, cuts[1], "left")), n]
    ids = IdMap(np.arange(int(events["n"])))
    weights = EventWeights().of(events["actions"])

    def part(lo: int, hi: int) -> Interactions:
        m = build_matrix(events["users"][lo:hi], events["items"][lo:hi], weights[lo:hi], (len(ids), len(ids)))
        return Interactions(matrix=m, users=ids, items=ids, shared=True)

    return part(0, bounds[1]), part(bounds[1], bounds[2]), part(bounds[2], n), part(0, bounds[2])


def planted_interactions(n_users: int, n_items: int, nnz: int, seed: int = 0, rank: int = 16) -> Interactions:
    """Synthetic interactions from a planted low-rank model: each user sees items drawn by a
    Zipf-like popularity and likes them with probability sigmoid(u . v + b), else passes."""
    rng = np.random.default_rng(seed)
    u_f = rng.normal(0, 1 / np.sqrt(rank), (n_users, rank)).astype(np.float32)
    v_f = rng.normal(0, 1, (n_items, rank)).astype(np.float32)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    pop /= pop.sum()
    per_user = rng.poisson(nnz / n_users, n_users)
    rows_l, cols_l, w_l = [], [], []
    for start in range(0, n_users, 20_000):
        users = np.arange(start, min(n_users, start + 20_000))
        r = np.repeat(users, per_user[users])
        c = rng.choice(n_items, size=r.size, p=pop)
        logit = np.einsum("ij,ij->i", u_f[r], v_f[c]) - 0.5
        liked = rng.random(r.size) < 1 / (1 + np.exp(-logit))
        rows_l.append(r)
        cols_l.append(c)
        w_l.append(np.where(liked, 1.0, -0.5).astype(np.float32))
    m = build_matrix(np.concatenate(rows_l), np.concatenate(cols_l), np.concatenate(w_l), (n_users, n_items))
    return Interactions(matrix=m, users=IdMap(np.arange(n_users)), items=IdMap(np.arange(n_items)))


# --- implicit, through our evaluation -------------------------------------------------------


class External(FactorModel):
    """Factors learnt elsewhere (implicit), scored and evaluated exactly like ours."""

    def __init__(self, taste: np.ndarray, appeal: np.ndarray, train: Interactions) -> None:
        super().__init__(PopularityConfig())
        self.taste = torch.from_numpy(np.ascontiguousarray(taste, dtype=np.float32))
        self.appeal = torch.from_numpy(np.ascontiguousarray(appeal, dtype=np.float32))
        self.bias = torch.zeros(self.appeal.shape[0])
        self.n_users, self.n_items = train.shape
        self.shared = train.shared
        self.popularity = torch.from_numpy(np.asarray(train.positives().sum(axis=0)).reshape(-1).astype(np.float32))
        self.user_activity = torch.from_numpy(train.user_activity().astype(np.int64))
        self.fitted = True

    def _setup(self, data: Interactions) -> None:  # pragma: no cover - never trained here
        raise NotImplementedError

    def _epoch(self, data: Interactions, epoch: int) -> float:  # pragma: no cover
        raise NotImplementedError


def implicit_matrix(train: Interactions, kind: str, passes: str = "dropped") -> sp.csr_matrix:
    if kind == "bpr" or passes == "dropped":
        return train.positives()
    return train.matrix.copy()  # implicit's ALS reads a negative value as preference 0 with confidence


def implicit_fit(kind: str, params: dict[str, Any], train: Interactions, iterations: int, threads: int,
                 callback: Callable[..., None] | None = None) -> Any:  # fmt: skip
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    params = dict(params)
    passes = params.pop("passes", "dropped")
    cls = AlternatingLeastSquares if kind == "als" else BayesianPersonalizedRanking
    model = cls(**params, iterations=iterations, num_threads=threads, random_state=SEED)
    model.fit(implicit_matrix(train, kind, passes), show_progress=False, callback=callback)
    return model


def implicit_as_model(model: Any, train: Interactions) -> External:
    return External(np.asarray(model.user_factors), np.asarray(model.item_factors), train)


# --- tuning ---------------------------------------------------------------------------------


def tune_ours(
    name: str, cls: type[Recommender], base: Any, train: Interactions, val: Interactions, threads: int
) -> dict[str, Any]:
    validate = validation_ndcg(train, val, K)
    trials = []
    for params in grid(name):
        model = cls(replace(base, **params, epochs=MAX_EPOCHS[name], patience=4, threads=threads))
        model.fit(train, validate=validate)
        best = max(r.validation or 0.0 for r in model.history)
        trials.append({"params": params, "val_ndcg@10": best, "epochs": (model.best_epoch or 0) + 1})
        print(f"  {name} {params} val {best:.4f} @ {trials[-1]['epochs']} epochs", flush=True)
    return max(trials, key=lambda t: t["val_ndcg@10"]) | {"trials": trials}


def tune_implicit(name: str, kind: str, train: Interactions, val: Interactions, threads: int) -> dict[str, Any]:
    """implicit restores no best epoch, so the validation curve is recorded through its per-iteration
    callback and the best iteration count is what the final refit uses."""
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    validate = validation_ndcg(train, val, K)
    every = 1 if kind == "als" else 5  # BPR runs many cheap iterations: validate every 5th
    trials = []
    for params in grid(name):
        p = dict(params)
        passes = p.pop("passes", "dropped")
        cls = AlternatingLeastSquares if kind == "als" else BayesianPersonalizedRanking
        model = cls(**p, iterations=MAX_EPOCHS[name], num_threads=threads, random_state=SEED)
        curve: list[tuple[int, float]] = []

        def callback(iteration: int, *_: Any, model: Any = model, curve: list[tuple[int, float]] = curve) -> None:
            if (iteration + 1) % every == 0:
                curve.append((iteration + 1, validate(implicit_as_model(model, train))))

        model.fit(implicit_matrix(train, kind, passes), show_progress=False, callback=callback)
        iterations, best = max(curve, key=lambda point: point[1])
        trials.append({"params": params, "val_ndcg@10": best, "epochs": iterations})
        print(f"  {name} {params} val {best:.4f} @ {iterations} iterations", flush=True)
    return max(trials, key=lambda t: t["val_ndcg@10"]) | {"trials": trials}


def timed(fn: Callable[[], Any], repeats: int) -> tuple[Any, float, list[float]]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times), times


# --- main -----------------------------------------------------------------------------------


def quality(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    events = simulated_swipes(args.swipes)
    train, val, test, train_val = time_split(events)
    train_side = train.with_features(attribute_features())
    print(f"data: {events['users'].size:,} swipes, train {train.nnz:,} val {val.nnz:,} test {test.nnz:,} "
          f"({time.perf_counter() - t0:.0f}s)", flush=True)  # fmt: skip
    results: dict[str, Any] = {}
    per_user: dict[str, np.ndarray] = {}
    specs: list[tuple[str, Callable[[], dict[str, Any]], Callable[[dict[str, Any]], Callable[[], Recommender]]]] = []

    def ours(name: str, cls: type[Recommender], base: Any, data: Interactions = train) -> None:
        def tune() -> dict[str, Any]:
            return tune_ours(name, cls, base, data, val, args.threads)

        def final(best: dict[str, Any]) -> Callable[[], Recommender]:
            def fit() -> Recommender:
                model = cls(replace(base, **best["params"], epochs=best["epochs"], threads=args.threads))
                model.fit(data)
                return model

            return fit

        specs.append((name, tune, final))

    def theirs(name: str, kind: str) -> None:
        def tune() -> dict[str, Any]:
            return tune_implicit(name, kind, train, val, args.threads)

        def final(best: dict[str, Any]) -> Callable[[], Recommender]:
            def fit() -> Recommender:
                return implicit_as_model(implicit_fit(kind, best["params"], train, best["epochs"], args.threads), train)

            return fit

        specs.append((name, tune, final))

    ours("ours_als", ALS, ALSConfig(seed=SEED))
    ours("ours_als_side", ALS, ALSConfig(seed=SEED), train_side)
    ours("ours_bpr", BPR, BPRConfig(seed=SEED, batch_size=1024))
    theirs("implicit_als", "als")
    theirs("implicit_bpr", "bpr")
    for name, tune, final in specs:
        started = time.perf_counter()
        best = tune()
        model, seconds, all_times = timed(final(best), args.repeats)
        report = evaluate_model(model, train_val, test, K)
        per_user[name] = per_user_ndcg(model, train_val, test)
        results[name] = {
            "best_params": best["params"],
            "epochs": best["epochs"],
            "val_ndcg@10": best["val_ndcg@10"],
            "test": report,
            "train_seconds": seconds,
            "train_seconds_all": all_times,
            "tuning_seconds": time.perf_counter() - started,
            "grid": GRIDS[name],
            "trials": best["trials"],
        }
        print(f"{name}: test ndcg@10 {report['ndcg@10']:.4f} recall@10 {report['recall@10']:.4f} "
              f"train {seconds:.2f}s", flush=True)  # fmt: skip
    pop, seconds, all_times = timed(lambda: _fit(Popularity(PopularityConfig()), train), args.repeats)
    per_user["popularity"] = per_user_ndcg(pop, train_val, test)
    results["popularity"] = {
        "test": evaluate_model(pop, train_val, test, K),
        "train_seconds": seconds,
        "train_seconds_all": all_times,
        "val_ndcg@10": validation_ndcg(train, val, K)(pop),
    }
    return {
        "data": {
            "profiles": int(events["n"]),
            "swipes": int(events["users"].size),
            "like_rate": float((events["actions"] != "pass").mean()),
            "train": train.nnz,
            "validation": val.nnz,
            "test": test.nnz,
        },
        "models": results,
        "per_user_ndcg": per_user,
    }


def per_user_ndcg(model: Recommender, train_val: Interactions, test: Interactions) -> np.ndarray:
    """NDCG@K of each test user (the users ``evaluate_model`` averages over, in the same order)."""
    relevant = test.positives()
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    recs, _ = model.recommend(users, K, exclude=train_val.seen())
    one = [ranking_metrics(recs[i : i + 1], relevant[users[i : i + 1]], K)[f"ndcg@{K}"] for i in range(users.size)]
    return np.asarray(one)


def ratio_interval(ours: np.ndarray, theirs: np.ndarray, resamples: int = 2000) -> list[float]:
    """95 % paired-bootstrap interval (over test users) of mean(ours) / mean(theirs)."""
    rng = np.random.default_rng(SEED)
    picks = rng.integers(0, ours.size, size=(resamples, ours.size))
    ratios = ours[picks].mean(axis=1) / np.maximum(theirs[picks].mean(axis=1), 1e-12)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return [round(float(low), 3), round(float(high), 3)]


def _fit(model: Recommender, data: Interactions, **kw: Any) -> Recommender:
    model.fit(data, **kw)
    return model


def scaling_runs(data: Interactions, epochs: int, threads: int) -> dict[str, Callable[[], Any]]:
    return {
        "ours_als": lambda: _fit(ALS(ALSConfig(seed=SEED, factors=64, epochs=epochs, threads=threads)), data),
        "ours_bpr": lambda: _fit(
            BPR(BPRConfig(seed=SEED, factors=64, epochs=epochs, batch_size=8192, threads=threads)), data
        ),
        "implicit_als": lambda: implicit_fit("als", {"factors": 64}, data, epochs, threads),
        "implicit_bpr": lambda: implicit_fit("bpr", {"factors": 64}, data, epochs, threads),
    }


def scaling(args: argparse.Namespace) -> dict[str, Any]:
    """Fit time per epoch at 100k and 10M planted interactions (default-size configs)."""
    sizes = [(100_000, 3_000, 3_000)]
    if not args.no_10m:
        sizes.append((10_000_000, 200_000, 50_000))
    out: dict[str, Any] = {}
    for nnz, n_users, n_items in sizes:
        t0 = time.perf_counter()
        data = planted_interactions(n_users, n_items, nnz, seed=SEED)
        label = f"{data.nnz:,}"
        print(f"scaling {label} interactions ({n_users:,} x {n_items:,}), made in {time.perf_counter() - t0:.0f}s",
              flush=True)  # fmt: skip
        epochs = args.scaling_epochs
        row: dict[str, Any] = {"interactions": data.nnz, "users": n_users, "items": n_items, "epochs": epochs}
        runs = scaling_runs(data, epochs, args.threads)
        for name, fn in runs.items():
            _, seconds, _ = timed(fn, 1)
            row[name] = {"seconds": seconds, "seconds_per_epoch": seconds / epochs}
            print(f"  {name}: {seconds:.1f}s ({seconds / epochs:.2f}s/epoch)", flush=True)
        out[label] = row
        del data
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--swipes", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=1, help="threads for both libraries (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="final fits timed (median reported)")
    parser.add_argument("--scaling-epochs", type=int, default=2)
    parser.add_argument("--no-10m", action="store_true", help="skip the 10M-interaction timing")
    args = parser.parse_args()
    torch.manual_seed(SEED)
    torch.set_num_threads(args.threads)
    # implicit asks for its BLAS pool to be limited (it parallelises itself); same cap for torch's.
    threadpoolctl.threadpool_limits(args.threads)
    started = time.perf_counter()
    q = quality(args)
    models, per_user = q["models"], q.pop("per_user_ndcg")
    # "Best" is picked on validation, never on test, on both sides.
    ours_best = max(("ours_als", "ours_als_side", "ours_bpr", "popularity"), key=lambda m: models[m]["val_ndcg@10"])
    theirs_best = max(("implicit_als", "implicit_bpr"), key=lambda m: models[m]["val_ndcg@10"])
    ndcg_ratio = models[ours_best]["test"]["ndcg@10"] / models[theirs_best]["test"]["ndcg@10"]
    time_ratio = models[ours_best]["train_seconds"] / models[theirs_best]["train_seconds"]
    verdict = {
        "ours_best": ours_best,
        "implicit_best": theirs_best,
        "ndcg_ratio": ndcg_ratio,
        "ndcg_ratio_95ci": ratio_interval(per_user[ours_best], per_user[theirs_best]),
        "ndcg_target": ">= 1.05",
        "ndcg_target_met": ndcg_ratio >= 1.05,
        "train_time_ratio": time_ratio,
        "time_target": "<= 3.0",
        "time_target_met": time_ratio <= 3.0,
    }
    s = scaling(args)
    payload = {
        "benchmark": "collab",
        "machine": machine_info(),
        "threads": args.threads,
        "settings": {
            "k": K,
            "seed": SEED,
            "repeats": args.repeats,
            "max_epochs": MAX_EPOCHS,
            "configs_base": {"ours_als": asdict(ALSConfig()), "ours_bpr": asdict(BPRConfig(batch_size=1024))},
            "side_features": "profile_feature_matrix without bio (ours_als_side only)",
        },
        "quality": q,
        "verdict": verdict,
        "scaling": s,
        "total_seconds": time.perf_counter() - started,
    }
    path = write_result("collab", payload)
    rows = []
    for name in ("ours_als", "ours_als_side", "ours_bpr", "popularity", "implicit_als", "implicit_bpr"):
        m = models[name]
        rows.append([name, f"{m['val_ndcg@10']:.4f}", f"{m['test']['ndcg@10']:.4f}", f"{m['test']['recall@10']:.4f}",
                     f"{m['train_seconds']:.2f}", str(m.get("best_params", "-"))])  # fmt: skip
    print(format_table(["model", "val NDCG@10", "test NDCG@10", "test recall@10", "train s", "chosen"], rows))
    met = {True: "met", False: "NOT met"}
    print(
        f"best ours {ours_best} vs best implicit {theirs_best}: NDCG x{ndcg_ratio:.3f} "
        f"(95% CI {verdict['ndcg_ratio_95ci'][0]:.3f}-{verdict['ndcg_ratio_95ci'][1]:.3f}) "
        f"(target >= 1.05: {met[verdict['ndcg_target_met']]}), "
        f"train time x{time_ratio:.2f} (target <= 3: {met[verdict['time_target_met']]})"
    )
    names = ("ours_als", "ours_bpr", "implicit_als", "implicit_bpr")
    srows = [[label, *(f"{r[n]['seconds_per_epoch']:.2f}" for n in names)] for label, r in s.items()]
    print(format_table(["interactions", *(f"{n} s/epoch" for n in names)], srows))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
