"""Deep models and the ranker stack against the collaborative baselines, in one run.

    .venv/bin/python -m bench.deep            # about 8 min, every model on 1 thread

One data set, one split, one protocol for every model (the same as ``bench.collab``):

* **Data**: the 3,000-profile OkCupid sample and 100,000 simulated swipes
  (``bench.collab.simulated_swipes``: ``SwipeSimulator.simulate_history``, seed 7), split by time
  80/10/10 (``bench.collab.time_split``). Side features for two-tower and GraphSAGE: profile
  attributes and the MiniLM bio embeddings (``profile_feature_matrix``), cached under
  ``var/bench/deep/`` (keyed by a hash of the texts; about 1.5 min to compute on CPU).
* **Protocol**: every model is fitted on train; for each user with a like in test, top-10 over all
  profiles except the user and those they swiped before test; relevant = liked in test. NDCG@10,
  recall@10; reciprocal match precision@10 = share of the top-10 pairs that became mutual likes in
  test (collaborative models: their top-200 re-ranked by the harmonic fusion of P(u likes v) and
  P(v likes u), as in ``evaluate_model``; the ranker stack: its own top-10, its features include
  both directions).
* **Cold start**: cold users = test users with fewer than 5 swipes in train (scored on their test
  likes); cold candidates = profiles with fewer than 5 swipes received in train (every test user
  with a test like on one: relevant = those likes only, ranking over the whole catalogue).
  **Coverage**: of the profiles with fewer than 5 train swipes and at least 10 eligible unseen
  candidates, the share whose top-100 retrieval from the model holds at least 10 eligible ones
  (eligible = ``hard_filter_mask`` both ways: genders, ages, distance): the feed's retrieval
  step, which filters what the model proposes.
* **Tuning** on validation NDCG@10 over the small grids in ``GRIDS`` (epochs by early stopping);
  the test numbers are of the chosen configuration. Training time: the final fit, wall clock,
  1 thread.
* **Ranker stack** (standard stacking): LightGBM LambdaMART (``recommender.ml.ranker``)
  re-ranking a candidate pool, the union of the top-``POOL`` of the ``STACK_POOL_MODELS`` best
  single models on validation, built the way the feed serves it. Training windows
  (``STACK_WINDOWS``): at each cut q of the history (60 %, 70 %, 80 %) the base models are fitted
  on the swipes before q (same configurations and epochs as their rows; the 80 % cut is the
  single-model fit itself), the features come from them and the history before q, and each user
  with a like in the next tenth of the history [q, q + 10 %) gives one query group: their pool
  (minus what they swiped before q), labelled by what they liked in that tenth (superlike 2,
  like 1, otherwise 0). Tuning: 5-fold cross-validation over the users of the last window (the
  validation period), each fold early-stopped on its held-out users, scored with the protocol's
  NDCG@10 on the held-out users' validation likes; the grid point with the best cross-validated
  NDCG is refitted on every window's groups with the folds' median number of trees. Test: the
  stack's base models are refitted on train + validation (same configurations), so the features
  are as fresh at test as in training; the single-model rows stay fitted on train. Test labels
  are never read before scoring. Its coverage: the top-``POOL`` of its ranked pool; its training
  time: its base models' fits on train plus the ranker's. Reported with it: a 95 % paired
  bootstrap interval (over test users) of its NDCG@10 over the best single model's, and that
  source refitted on train + validation alone (how much of the gain freshness would give).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from tqdm import tqdm

from bench.collab import attribute_features, profile_features, ratio_interval, simulated_swipes, time_split
from bench.common import REPO_DIR, format_table, machine_info, write_result
from recommender.ml.collab import (
    ALS,
    BPR,
    ALSConfig,
    BPRConfig,
    GraphSAGE,
    GraphSAGEConfig,
    Interactions,
    Popularity,
    PopularityConfig,
    Recommender,
    TwoTower,
    TwoTowerConfig,
    profile_feature_matrix,
    validation_ndcg,
)
from recommender.ml.collab.data import EventWeights, IdMap, build_matrix
from recommender.ml.collab.evaluation import reciprocal_report
from recommender.ml.collab.metrics import mutual_like_pairs, ranking_metrics, reciprocal_match_precision
from recommender.ml.ranker import (
    RANKER_FEATURES,
    SOURCE_MODELS,
    Ranker,
    RankerConfig,
    RankerContext,
    history_arrays,
    pool_groups,
)
from recommender.ml.structured import CandidateBatch, ProfileFeatures, hard_filter_mask
from recommender.simulation import build_population, load_sample

SEED = 7
K = 10
POOL = 100  # candidates retrieved per user (ranker input, coverage)
COLD = 5  # fewer swipes than this in train = cold
STACK_POOL_MODELS = 3  # the stack's pool: union of the top-POOL of this many best single models (validation)
STACK_WINDOWS = (0.6, 0.7, 0.8)  # cuts of the history: base models fitted before q, labels from [q, q + 0.1)
TEST_CUT = 0.9  # train + validation end here (bench.collab.time_split)
FOLDS = 5  # cross-validation of the ranker over the validation users
CACHE_DIR = Path(REPO_DIR) / "var" / "bench" / "deep"

GRIDS: dict[str, dict[str, list[Any]]] = {
    "als": {"factors": [32, 64], "regularization": [1.0, 10.0], "alpha": [2.0, 10.0], "pass_confidence": [0.0]},
    "als_side": {
        "factors": [32, 64],
        "regularization": [10.0],
        "alpha": [2.0, 10.0],
        "pass_confidence": [0.0],
        "side_weight": [0.01, 0.03, 0.1],
    },
    "bpr": {"factors": [32, 64], "learning_rate": [0.005, 0.02], "hard_negative_share": [0.0]},
    "two_tower": {"temperature": [0.05, 0.1], "id_dim": [0, 32]},
    "graphsage": {"temperature": [0.05, 0.1], "id_dim": [0, 32]},
    "ranker": {"num_leaves": [15, 63], "min_data_in_leaf": [20, 100]},
}
BASE: dict[str, Any] = {
    "als": ALSConfig(seed=SEED, epochs=20, patience=4, threads=1, side_weight=0.0),
    "als_side": ALSConfig(seed=SEED, epochs=20, patience=4, threads=1),
    "bpr": BPRConfig(seed=SEED, batch_size=1024, epochs=60, patience=4, threads=1),
    "two_tower": TwoTowerConfig(seed=SEED, epochs=40, patience=4, threads=1, batch_size=512),
    "graphsage": GraphSAGEConfig(seed=SEED, epochs=40, patience=4, threads=1, batch_size=256),
}
CLASSES: dict[str, type[Recommender]] = {
    "als": ALS,
    "als_side": ALS,  # with the profiles' attributes (collective MF), as bench.collab's ours_als_side
    "bpr": BPR,
    "two_tower": TwoTower,
    "graphsage": GraphSAGE,
}


def grid(name: str) -> list[dict[str, Any]]:
    keys = list(GRIDS[name])
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*GRIDS[name].values())]


# --- data -----------------------------------------------------------------------------------------


def bio_embeddings(texts: list[str]) -> np.ndarray:
    """MiniLM embeddings of ``texts``, cached under var/bench/deep (keyed by their hash)."""
    from recommender.ml.embeddings import BioEncoder

    digest = hashlib.sha256("\n\x00".join(texts).encode()).hexdigest()[:16]
    path = CACHE_DIR / f"bio-{digest}.npy"
    if path.exists():
        return np.load(path)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    encoder = BioEncoder(device="cpu")
    bar = tqdm(total=len(texts), desc="embed bios", unit="bio")
    vectors = encoder.encode(texts, progress=lambda done: bar.update(done - bar.n))
    bar.close()
    np.save(path, vectors)
    return vectors


# --- evaluation -------------------------------------------------------------------------------------


def _metrics(recs: np.ndarray, relevant: sp.csr_matrix, users: np.ndarray) -> dict[str, Any]:
    if users.size == 0:
        return {"ndcg@10": None, "recall@10": None, "users": 0}
    m = ranking_metrics(recs, relevant[users], K)
    return {"ndcg@10": m["ndcg@10"], "recall@10": m["recall@10"], "users": m["users"]}


class Protocol:
    """The test protocol shared by every model (see the module docs)."""

    def __init__(self, train: Interactions, train_val: Interactions, test: Interactions, batch: CandidateBatch,
                 features: list[ProfileFeatures]) -> None:  # fmt: skip
        self.train, self.train_val, self.test = train, train_val, test
        self.exclude = train_val.seen()
        self.relevant = test.positives()
        self.users = np.flatnonzero(np.diff(self.relevant.indptr) > 0)
        swipes = train.user_activity()
        received = np.diff(train.matrix.tocsc().indptr)
        self.cold_users = self.users[swipes[self.users] < COLD]
        cold_items = received < COLD
        self.relevant_cold_items = self.relevant.multiply(sp.csr_matrix(cold_items.astype(np.float32))).tocsr()
        self.relevant_cold_items.eliminate_zeros()
        self.cold_item_users = np.flatnonzero(np.diff(self.relevant_cold_items.indptr) > 0)
        self.matches = mutual_like_pairs(train_val.positives() + test.positives(), test.positives())
        self.match_users = np.flatnonzero(np.diff(self.matches.indptr) > 0)
        # Coverage population: cold profiles with at least K eligible unseen candidates.
        n = train.shape[0]
        self.eligible = np.zeros((n, n), dtype=bool)
        for u in range(n):
            self.eligible[u] = hard_filter_mask(features[u], batch)
        self.eligible[np.arange(n), np.arange(n)] = False
        unseen_eligible = self.eligible & ~self.exclude.toarray().astype(bool)
        self.coverage_users = np.flatnonzero((swipes < COLD) & (unseen_eligible.sum(axis=1) >= K))
        self.counts = {
            "test_users": int(self.users.size),
            "cold_users": int(self.cold_users.size),
            "cold_item_users": int(self.cold_item_users.size),
            "cold_items": int(cold_items.sum()),
            "match_users": int(self.match_users.size),
            "coverage_users": int(self.coverage_users.size),
        }

    def coverage(self, pools: np.ndarray) -> float:
        """Share of coverage users whose retrieval pool [n_cov, POOL] holds >= K eligible."""
        ok = [(self.eligible[u, p[p >= 0]]).sum() >= K for u, p in zip(self.coverage_users, pools, strict=True)]
        return float(np.mean(ok)) if ok else 0.0

    def model_report(self, model: Recommender) -> dict[str, Any]:
        recs, _ = model.recommend(self.users, K, exclude=self.exclude)
        where = {u: j for j, u in enumerate(self.users)}
        out = {"all": _metrics(recs, self.relevant, self.users)}
        out["all"]["match_precision@10"] = reciprocal_report(model, self.train_val, self.test, K)["match_precision@10"]
        cold_rows = np.array([where[u] for u in self.cold_users], dtype=np.int64)
        out["cold_users"] = _metrics(recs[cold_rows], self.relevant, self.cold_users)
        ci_rows = np.array([where[u] for u in self.cold_item_users], dtype=np.int64)
        out["cold_items"] = _metrics(recs[ci_rows], self.relevant_cold_items, self.cold_item_users)
        pools, _ = model.recommend(self.coverage_users, POOL, exclude=self.exclude)
        out["cold_coverage"] = self.coverage(pools)
        return out


# --- fitting --------------------------------------------------------------------------------------


def tune(name: str, train: Interactions, val: Interactions) -> dict[str, Any]:
    validate = validation_ndcg(train, val, K)
    trials = []
    for params in grid(name):
        model = CLASSES[name](replace(BASE[name], **params))
        started = time.perf_counter()
        model.fit(train, validate=validate)
        best = max(r.validation or 0.0 for r in model.history)
        trials.append({"params": params, "val_ndcg@10": best, "epochs": (model.best_epoch or 0) + 1,
                       "seconds": time.perf_counter() - started})  # fmt: skip
        print(f"  {name} {params} val {best:.4f} @ {trials[-1]['epochs']} epochs "
              f"({trials[-1]['seconds']:.0f}s)", flush=True)  # fmt: skip
    return max(trials, key=lambda t: t["val_ndcg@10"]) | {"trials": trials}


def final_fit(name: str, params: dict[str, Any], epochs: int, data: Interactions) -> tuple[Recommender, float]:
    """``name`` fitted on ``data`` with ``params`` for ``epochs`` epochs (no early stopping): (model, s)."""
    model = CLASSES[name](replace(BASE[name], **params, epochs=epochs))
    started = time.perf_counter()
    model.fit(data)
    return model, time.perf_counter() - started


def model_data(name: str, data: Interactions, x: np.ndarray, attributes: np.ndarray) -> Interactions:
    """What ``name`` is fitted on: two-tower and GraphSAGE read every side feature [n, 539], ALS +
    attributes the attributes only [n, 155]; the others the interactions alone."""
    features = {"two_tower": x, "graphsage": x, "als_side": attributes}.get(name)
    return data.with_features(features) if features is not None else data


# --- the ranker stack -----------------------------------------------------------------------------


def cut_index(times: np.ndarray, q: float) -> int:
    """Index of the first swipe at or after the q-quantile of ``times`` (sorted), as time_split cuts."""
    if q >= 1.0:
        return int(times.size)
    return int(np.searchsorted(times, times[int(np.floor(q * times.size))], "left"))


def interactions(events: dict[str, np.ndarray], lo: int, hi: int) -> Interactions:
    """Swipes ``lo:hi`` of the time-ordered ``events`` as Interactions on the shared profile ids."""
    n = int(events["n"])
    ids = IdMap(np.arange(n))
    weights = EventWeights().of(events["actions"][lo:hi])
    matrix = build_matrix(events["users"][lo:hi], events["items"][lo:hi], weights, (n, n))
    return Interactions(matrix=matrix, users=ids, items=ids, shared=True)


@dataclass
class Window:
    """The state of the world at one cut of the history, as the feed would see it then.

    models: base models fitted on the swipes before the cut (pool sources and feature models);
    ctx: the ranker's features from those models and that history;
    seen: CSR [n, n], pairs swiped before the cut (never proposed);
    labels: CSR [n, n] likes in the next tenth (superlike 2, like 1), None at test time.
    """

    cut: float
    models: dict[str, Recommender]
    ctx: RankerContext
    seen: sp.csr_matrix
    labels: sp.csr_matrix | None


@dataclass
class Groups:
    """Query groups, one per user: x [rows, F], y [rows], sizes [groups], users [groups] and each
    group's candidates (rows of one group are contiguous, in ``users`` order)."""

    x: np.ndarray
    y: np.ndarray
    sizes: np.ndarray
    users: np.ndarray
    cands: list[np.ndarray]

    def take(self, users: np.ndarray) -> Groups:
        keep = np.isin(self.users, users)
        starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
        rows = [np.arange(a, a + b) for a, b in zip(starts[keep], self.sizes[keep], strict=True)]
        idx = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        cands = [c for c, k in zip(self.cands, keep, strict=True) if k]
        return Groups(self.x[idx], self.y[idx], self.sizes[keep], self.users[keep], cands)

    @staticmethod
    def concat(parts: list[Groups]) -> Groups:
        return Groups(np.concatenate([g.x for g in parts]), np.concatenate([g.y for g in parts]),
                      np.concatenate([g.sizes for g in parts]), np.concatenate([g.users for g in parts]),
                      [c for g in parts for c in g.cands])  # fmt: skip

    def fit_args(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.x, self.y, self.sizes


def make_window(
    cut: float, events: dict[str, np.ndarray], models: dict[str, Recommender], base: RankerContext, labelled: bool
) -> Window:  # fmt: skip
    """The window at ``cut``: history arrays before it and, when ``labelled``, the next tenth's likes."""
    times = events["times"]
    hi = cut_index(times, cut)
    elo, given, liked, received, likes = history_arrays(
        int(events["n"]), events["users"][:hi], events["items"][:hi], events["actions"][:hi]
    )
    ctx = replace(base, elo=elo, swipes_given=given, likes_given=liked, likes_received=received, likes=likes,
                  models={k: m for k, m in models.items() if k in SOURCE_MODELS})  # fmt: skip
    labels = interactions(events, hi, cut_index(times, round(cut + 0.1, 6))).positives() if labelled else None
    return Window(cut=cut, models=models, ctx=ctx, seen=interactions(events, 0, hi).seen(), labels=labels)


def stack_pools(window: Window, sources: tuple[str, ...], users: np.ndarray) -> list[np.ndarray]:
    """Each user's candidate pool: the union of every source's top-POOL of unseen profiles (in
    source order, then rank), as the feed pools its candidate sources."""
    tops = [window.models[name].recommend(users, POOL, exclude=window.seen)[0] for name in sources]  # [users, POOL]
    pools = []
    for row in np.concatenate(tops, axis=1):  # [users, POOL * len(sources)]
        row = row[row >= 0]
        _, first = np.unique(row, return_index=True)
        pools.append(row[np.sort(first)])
    return pools


def stack_groups(window: Window, sources: tuple[str, ...], users: np.ndarray, desc: str) -> Groups:
    """Query groups of ``users`` at ``window`` (:func:`recommender.ml.ranker.pool_groups`, as
    ``train_ranker --groups pools`` builds them); labelled windows keep only the groups with a like."""
    pools = stack_pools(window, sources, users)
    bar = tqdm(users.tolist(), desc=desc, unit="user", leave=False)
    g = pool_groups(window.ctx, bar, pools, window.labels)
    pool_of = dict(zip(users.tolist(), pools, strict=True))
    return Groups(g.x, g.y, g.sizes, g.users, [pool_of[u] for u in g.users.tolist()])


def stack_top(ranker: Ranker, groups: Groups, users: np.ndarray, k: int) -> np.ndarray:
    """[len(users), k] the ranker's top-k of each user's pool (-1: no pool or a short one)."""
    scores = ranker.predict(groups.x) if groups.x.shape[0] else np.zeros(0)
    where = {u: j for j, u in enumerate(users.tolist())}
    out = np.full((users.size, k), -1, dtype=np.int64)
    start = 0
    for u, size, cands in zip(groups.users.tolist(), groups.sizes.tolist(), groups.cands, strict=True):
        top = cands[np.argsort(-scores[start : start + size], kind="stable")][:k]
        out[where[u], : top.size] = top
        start += size
    return out


def tune_ranker(
    earlier: list[Groups], latest: Groups, latest_all: Groups, relevant: sp.csr_matrix, users: np.ndarray
) -> dict[str, Any]:  # fmt: skip
    """Cross-validate the ranker grid over the users of the latest window: each fold fits on the
    other folds plus every earlier window, early-stops on its held-out users' groups and ranks
    their whole pool (``latest_all``); scored by the protocol's NDCG@10 on ``relevant`` [n, n]."""
    folds = np.random.default_rng(SEED).permutation(users.size) % FOLDS  # [users]
    trials = []
    for params in grid("ranker"):
        recs = np.full((users.size, K), -1, dtype=np.int64)
        trees = []
        for f in range(FOLDS):
            held = users[folds == f]
            fit = Groups.concat([latest.take(users[folds != f]), *earlier])
            ranker = Ranker(RankerConfig(seed=SEED, **params)).fit(
                *fit.fit_args(), validation=latest.take(held).fit_args()
            )
            trees.append(ranker.metrics["best_iteration"])
            recs[folds == f] = stack_top(ranker, latest_all.take(held), held, K)
        score = _metrics(recs, relevant, users)["ndcg@10"]
        trials.append({"params": params, "cv_ndcg@10": score, "trees": int(np.median(trees)), "fold_trees": trees})
        print(f"  ranker {params} cross-validated val NDCG@10 {score:.4f}, trees {trees}", flush=True)
    return max(trials, key=lambda t: t["cv_ndcg@10"]) | {"trials": trials}


def fit_windows(
    names: tuple[str, ...], cuts: tuple[float, ...], results: dict[str, Any], events: dict[str, np.ndarray],
    x: np.ndarray, attributes: np.ndarray, fitted: dict[float, dict[str, Recommender]],
) -> dict[float, dict[str, Recommender]]:  # fmt: skip
    """Base models ``names`` fitted before each cut (configurations and epochs of their rows);
    cuts already in ``fitted`` are reused."""
    out = dict(fitted)
    for cut in cuts:
        if cut in out:
            continue
        data = interactions(events, 0, cut_index(events["times"], cut))
        out[cut] = {}
        for name in names:
            if name == "popularity":
                out[cut][name] = Popularity(PopularityConfig())
                out[cut][name].fit(data)
                continue
            r = results[name]
            out[cut][name], seconds = final_fit(
                name, r["best_params"], r["epochs"], model_data(name, data, x, attributes)
            )
            print(f"  {name} refitted on the first {cut:.0%} of the history ({seconds:.0f}s)", flush=True)
    return out


def ranker_stack(
    results: dict[str, Any], models: dict[str, Recommender], protocol: Protocol, events: dict[str, np.ndarray],
    x: np.ndarray, attributes: np.ndarray, base: RankerContext, singles: tuple[str, ...], val: Interactions,
) -> tuple[dict[str, Any], np.ndarray]:  # fmt: skip
    """Fit, tune and test the ranker stack (module docs): (its result entry, its test top-K
    [len(protocol.users), K])."""
    started = time.perf_counter()
    sources = tuple(sorted(singles, key=lambda m: -results[m]["val_ndcg@10"])[:STACK_POOL_MODELS])
    names = tuple(dict.fromkeys((*sources, *(m for m in singles if m in SOURCE_MODELS))))
    print(f"ranker stack: pool from {sources}; features from {[m for m in names if m in SOURCE_MODELS]}", flush=True)
    t0 = time.perf_counter()
    fitted = fit_windows(names, (*STACK_WINDOWS, TEST_CUT), results, events, x, attributes,
                         {STACK_WINDOWS[-1]: {m: models[m] for m in names}})  # fmt: skip
    refit_seconds = time.perf_counter() - t0
    windows = {cut: make_window(cut, events, fitted[cut], base, labelled=True) for cut in STACK_WINDOWS}
    groups = {cut: stack_groups(w, sources, _liking_users(w.labels), f"ranker groups {cut:.0%}")
              for cut, w in windows.items() if w.labels is not None}  # fmt: skip
    latest = windows[STACK_WINDOWS[-1]]
    val_users = _liking_users(val.positives())
    latest_all = stack_groups(replace(latest, labels=None), sources, val_users, "ranker validation pools")
    best = tune_ranker([groups[c] for c in STACK_WINDOWS[:-1]], groups[STACK_WINDOWS[-1]], latest_all,
                       val.positives(), val_users)  # fmt: skip
    train = Groups.concat(list(groups.values()))
    t1 = time.perf_counter()
    ranker = Ranker(RankerConfig(seed=SEED, **best["params"], n_estimators=max(1, best["trees"]))).fit(
        *train.fit_args()
    )
    fit_seconds = time.perf_counter() - t1
    prep_seconds = time.perf_counter() - started

    test = make_window(TEST_CUT, events, fitted[TEST_CUT], base, labelled=False)
    assert (test.seen != protocol.exclude).nnz == 0  # the protocol's exclusion: swiped before test

    def ranked(users: np.ndarray, k: int, desc: str) -> np.ndarray:
        return stack_top(ranker, stack_groups(test, sources, users, desc), users, k)

    recs = ranked(protocol.users, K, "ranker test")
    where = {u: j for j, u in enumerate(protocol.users)}
    out: dict[str, Any] = {"all": _metrics(recs, protocol.relevant, protocol.users)}
    match_recs = ranked(protocol.match_users, K, "ranker matches")
    out["all"]["match_precision@10"] = reciprocal_match_precision(
        match_recs, protocol.matches[protocol.match_users], K
    )["match_precision@10"]
    cold_rows = np.array([where[u] for u in protocol.cold_users], dtype=np.int64)
    out["cold_users"] = _metrics(recs[cold_rows], protocol.relevant, protocol.cold_users)
    ci_rows = np.array([where[u] for u in protocol.cold_item_users], dtype=np.int64)
    out["cold_items"] = _metrics(recs[ci_rows], protocol.relevant_cold_items, protocol.cold_item_users)
    out["cold_coverage"] = protocol.coverage(ranked(protocol.coverage_users, POOL, "ranker coverage"))
    # Diagnostic: how much of the stack's edge freshness alone would give (the best single model
    # refitted on train + validation, as the stack's sources are at test time).
    fresh = fitted[TEST_CUT][sources[0]].recommend(protocol.users, K, exclude=protocol.exclude)[0]
    source_train_seconds = sum(results[m]["train_seconds"] for m in names)
    entry = {
        "pool_sources": list(sources),
        "feature_models": [m for m in names if m in SOURCE_MODELS],
        "windows": list(STACK_WINDOWS),
        "best_params": best["params"],
        "trees": best["trees"],
        "val_ndcg@10": best["cv_ndcg@10"],
        "train_seconds": fit_seconds + source_train_seconds,
        "ranker_seconds": fit_seconds,
        "refit_seconds": refit_seconds,
        "stack_prep_seconds": prep_seconds,
        "trials": best["trials"],
        "grid": GRIDS["ranker"],
        "ranker_rows": int(train.x.shape[0]),
        "ranker_groups": {f"{c:.0%}": int(g.sizes.size) for c, g in groups.items()},
        "mean_pool_size": float(np.mean(latest_all.sizes)) if latest_all.sizes.size else 0.0,
        "feature_importance": dict(sorted(ranker.feature_importance().items(), key=lambda kv: -kv[1])[:12]),
        "diagnostics": {
            f"{sources[0]}_refitted_on_train_val": _metrics(fresh, protocol.relevant, protocol.users),
        },
        "test": out,
    }
    return entry, recs


def per_user_ndcg(recs: np.ndarray, relevant: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
    """[len(users)] NDCG@K of each user's top-K ``recs`` [len(users), K]."""
    rel = relevant[users]
    return np.asarray([ranking_metrics(recs[i : i + 1], rel[i : i + 1], K)["ndcg@10"] for i in range(users.size)])


def _liking_users(likes: sp.csr_matrix) -> np.ndarray:
    """[m] rows of ``likes`` with at least one like."""
    return np.flatnonzero(np.diff(likes.tocsr().indptr) > 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--swipes", type=int, default=100_000)
    args = parser.parse_args()
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    started = time.perf_counter()

    population = build_population(load_sample(), seed=SEED)
    from recommender.ml.embeddings import profile_text

    bio = bio_embeddings([profile_text(p.bio, p.prompts) for p in population])
    feats = profile_features(population)
    x = profile_feature_matrix(feats, bio)
    batch = CandidateBatch.from_features(feats)
    events = simulated_swipes(args.swipes)
    train, val, test, train_val = time_split(events)
    attributes = attribute_features()
    n = len(population)
    print(f"data: {events['users'].size:,} swipes, train {train.nnz:,} val {val.nnz:,} test {test.nnz:,}; "
          f"features {x.shape[1]} columns", flush=True)  # fmt: skip
    protocol = Protocol(train, train_val, test, batch, feats)
    print(f"protocol: {protocol.counts}", flush=True)

    results: dict[str, Any] = {}
    models: dict[str, Recommender] = {}
    pop = Popularity(PopularityConfig())
    t0 = time.perf_counter()
    pop.fit(train)
    models["popularity"] = pop
    results["popularity"] = {
        "val_ndcg@10": validation_ndcg(train, val, K)(pop),
        "train_seconds": time.perf_counter() - t0,
    }
    for name in ("als", "als_side", "bpr", "two_tower", "graphsage"):
        data = model_data(name, train, x, attributes)
        t0 = time.perf_counter()
        best = tune(name, data, val)
        model, seconds = final_fit(name, best["params"], best["epochs"], data)
        models[name] = model
        results[name] = {"best_params": best["params"], "epochs": best["epochs"], "val_ndcg@10": best["val_ndcg@10"],
                         "train_seconds": seconds, "tuning_seconds": time.perf_counter() - t0,
                         "grid": GRIDS[name], "trials": best["trials"]}  # fmt: skip
    for name, model in models.items():
        results[name]["test"] = protocol.model_report(model)
        t = results[name]["test"]
        print(f"{name}: ndcg {t['all']['ndcg@10']:.4f} recall {t['all']['recall@10']:.4f} "
              f"match {t['all']['match_precision@10']:.4f} cold-user ndcg {t['cold_users']['ndcg@10']:.4f} "
              f"cold-item ndcg {t['cold_items']['ndcg@10']:.4f} coverage {t['cold_coverage']:.3f}",
              flush=True)  # fmt: skip

    singles = ("popularity", "als", "als_side", "bpr", "two_tower", "graphsage")
    base = RankerContext(profiles=feats, batch=batch, bio=bio, elo=np.zeros(n), swipes_given=np.zeros(n),
                         likes_given=np.zeros(n), likes_received=np.zeros(n), likes=None)  # fmt: skip
    stack, stack_recs = ranker_stack(results, models, protocol, events, x, attributes, base, singles, val)
    results["ranker_stack"] = stack
    st = stack["test"]
    print(f"ranker stack: ndcg {st['all']['ndcg@10']:.4f} recall {st['all']['recall@10']:.4f} "
          f"match {st['all']['match_precision@10']:.4f} coverage {st['cold_coverage']:.3f}", flush=True)  # fmt: skip

    best_single = max(singles, key=lambda m: results[m]["val_ndcg@10"])
    best_single_test = max(singles, key=lambda m: results[m]["test"]["all"]["ndcg@10"])
    ratio = st["all"]["ndcg@10"] / results[best_single_test]["test"]["all"]["ndcg@10"]
    val_ratio = stack["val_ndcg@10"] / results[best_single]["val_ndcg@10"]
    single_recs = models[best_single_test].recommend(protocol.users, K, exclude=protocol.exclude)[0]
    interval = ratio_interval(per_user_ndcg(stack_recs, protocol.relevant, protocol.users),
                              per_user_ndcg(single_recs, protocol.relevant, protocol.users))  # fmt: skip
    coverage = {m: results[m]["test"]["cold_coverage"] for m in (*singles, "ranker_stack")}
    verdict = {
        "best_single_by_validation": best_single,
        "best_single_by_test": best_single_test,
        "stack_ndcg_ratio_vs_best_single_test": ratio,
        "stack_ndcg_ratio_95ci_paired_bootstrap": interval,
        "stack_val_ndcg_ratio_vs_best_single_val": val_ratio,
        "ndcg_target": ">= 1.10",
        "ndcg_target_met": ratio >= 1.10,
        "stack_cold_coverage": st["cold_coverage"],
        "coverage_target": "> 0.95",
        "coverage_target_met": st["cold_coverage"] > 0.95,
        "coverage_by_model": coverage,
    }
    payload = {
        "benchmark": "deep",
        "machine": machine_info(),
        "settings": {
            "k": K,
            "pool": POOL,
            "cold_threshold": COLD,
            "seed": SEED,
            "threads": 1,
            "stack_pool_models": STACK_POOL_MODELS,
            "stack_windows": list(STACK_WINDOWS),
            "test_cut": TEST_CUT,
            "ranker_folds": FOLDS,
            "ranker_features": list(RANKER_FEATURES),
            "configs_base": {k: asdict(v) for k, v in BASE.items()},
            "feature_columns": int(x.shape[1]),
        },
        "data": {
            "profiles": n,
            "swipes": int(events["users"].size),
            "train": train.nnz,
            "validation": val.nnz,
            "test": test.nnz,
            **protocol.counts,
        },
        "models": results,
        "verdict": verdict,
        "total_seconds": time.perf_counter() - started,
    }
    path = write_result("deep", payload)
    label = "ranker on " + " + ".join(stack["pool_sources"])
    rows = []
    for name in (*singles, "ranker_stack"):
        r = results[name]["test"]
        rows.append([
            name if name != "ranker_stack" else label,
            f"{r['all']['ndcg@10']:.4f}", f"{r['all']['recall@10']:.4f}", f"{r['all']['match_precision@10']:.4f}",
            f"{results[name]['train_seconds']:.1f}",
            f"{r['cold_users']['ndcg@10']:.4f}", f"{r['cold_users']['recall@10']:.4f}",
            f"{r['cold_items']['ndcg@10']:.4f}", f"{r['cold_items']['recall@10']:.4f}", f"{r['cold_coverage']:.3f}",
        ])  # fmt: skip
    print(format_table(["model", "NDCG@10", "recall@10", "match prec@10", "train s", "cold-user NDCG",
                        "cold-user recall", "cold-cand NDCG", "cold-cand recall", "cold coverage"], rows))  # fmt: skip
    fresh = stack["diagnostics"][f"{stack['pool_sources'][0]}_refitted_on_train_val"]["ndcg@10"]
    met = {True: "met", False: "NOT met"}
    print(f"stack / best single ({best_single_test}) NDCG@10: x{ratio:.3f} (95% CI {interval[0]}-{interval[1]}; "
          f"target >= 1.10: {met[verdict['ndcg_target_met']]}; validation x{val_ratio:.3f}); cold coverage "
          f"{st['cold_coverage']:.3f} (target > 0.95: {met[verdict['coverage_target_met']]}); "
          f"{stack['pool_sources'][0]} refitted on train + validation alone: NDCG@10 {fresh:.4f}")  # fmt: skip
    print(f"results: {path} ({payload['total_seconds']:.0f}s)")


if __name__ == "__main__":
    main()
