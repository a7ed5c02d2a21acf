"""Deep models and the ranker stack against the collaborative baselines, in one run.

    .venv/bin/python -m bench.deep            # about 10-15 min on 2 cores

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
* **Ranker stack**: LightGBM LambdaMART (``recommender.ml.ranker``) re-ranking the top-100 of the
  best single model (chosen on validation). Trained on the validation period: for each user with a
  validation swipe, one query group = the source's top-100 plus the profiles shown to them in
  validation (impressions); labels = the swipe that followed (superlike 2, like 1, pass or not
  shown 0); features from the models fitted on train and the train history, 80 % of the users
  for fitting and 20 % for early stopping and the grid. At test time the same features with the
  train + validation history.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from tqdm import tqdm

from bench.collab import attribute_features, profile_features, simulated_swipes, time_split
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
from recommender.ml.collab.evaluation import reciprocal_report
from recommender.ml.collab.metrics import mutual_like_pairs, ranking_metrics, reciprocal_match_precision
from recommender.ml.ranker import (
    LABELS,
    SOURCE_MODELS,
    Ranker,
    RankerConfig,
    RankerContext,
    context_features,
    history_arrays,
)
from recommender.ml.structured import CandidateBatch, ProfileFeatures, hard_filter_mask
from recommender.simulation import build_population, load_sample

SEED = 7
K = 10
POOL = 100  # candidates retrieved per user (ranker input, coverage)
COLD = 5  # fewer swipes than this in train = cold
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


def final_fit(name: str, best: dict[str, Any], train: Interactions) -> tuple[Recommender, float]:
    model = CLASSES[name](replace(BASE[name], **best["params"], epochs=best["epochs"]))
    started = time.perf_counter()
    model.fit(train)
    return model, time.perf_counter() - started


# --- the ranker stack -----------------------------------------------------------------------------


def ranker_groups(
    ctx: RankerContext, source: Recommender, users: np.ndarray, exclude: sp.csr_matrix,
    shown: dict[int, dict[int, str]] | None, desc: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """(features [rows, F], labels [rows], group sizes [groups], candidates [rows]) for ``users``:
    the source's top-POOL plus, when ``shown`` is given, the profiles shown to the user, labelled
    by the swipe that followed."""
    pools, _ = source.recommend(users, POOL, exclude=exclude)
    xs, ys, sizes, cands_all = [], [], [], []
    for u, pool in tqdm(list(zip(users.tolist(), pools, strict=True)), desc=desc, unit="user", leave=False):
        cands = pool[pool >= 0]
        seen = shown.get(u, {}) if shown is not None else {}
        if seen:
            cands = np.unique(np.concatenate([cands, np.fromiter(seen.keys(), dtype=np.int64)]))
        if cands.size == 0:
            continue
        xs.append(context_features(ctx, u, cands))
        ys.append(np.array([LABELS[seen[c]] if c in seen else 0 for c in cands.tolist()], dtype=np.int32))
        sizes.append(cands.size)
        cands_all.append(cands)
    return np.concatenate(xs), np.concatenate(ys), np.asarray(sizes), np.concatenate(cands_all)


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
    train_f = train.with_features(x)
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
    train_attributes = train.with_features(attribute_features())
    for name in ("als", "als_side", "bpr", "two_tower", "graphsage"):
        data = {"two_tower": train_f, "graphsage": train_f, "als_side": train_attributes}.get(name, train)
        t0 = time.perf_counter()
        best = tune(name, data, val)
        model, seconds = final_fit(name, best, data)
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

    # --- ranker on top of the best single model (chosen on validation) ---
    singles = ("popularity", "als", "als_side", "bpr", "two_tower", "graphsage")
    source_name = max(singles, key=lambda m: results[m]["val_ndcg@10"])
    source = models[source_name]
    print(f"ranker source: {source_name}", flush=True)
    t0 = time.perf_counter()
    ev = events
    bounds = np.cumsum([train.nnz, val.nnz])  # noqa: F841  (the split is by time; see shown_in below)
    times = ev["times"]
    cut_val, cut_test = (times[int(np.floor(q * times.size))] for q in (0.8, 0.9))
    in_train = times < cut_val
    in_val = (times >= cut_val) & (times < cut_test)
    in_train_val = times < cut_test

    def context(mask: np.ndarray) -> RankerContext:
        elo, given, liked, received, likes = history_arrays(
            n, ev["users"][mask], ev["items"][mask], ev["actions"][mask]
        )
        return RankerContext(profiles=feats, batch=batch, bio=bio, elo=elo, swipes_given=given, likes_given=liked,
                             likes_received=received, likes=likes,
                             models={k: m for k, m in models.items() if k in SOURCE_MODELS})  # fmt: skip

    shown: dict[int, dict[int, str]] = {}
    for u, v, a in zip(ev["users"][in_val].tolist(), ev["items"][in_val].tolist(), ev["actions"][in_val].tolist(),
                       strict=True):  # fmt: skip
        shown.setdefault(u, {})[v] = a
    val_users = np.array(sorted(shown), dtype=np.int64)
    rng = np.random.default_rng(SEED)
    fit_users = np.sort(rng.choice(val_users, size=int(0.8 * val_users.size), replace=False))
    es_users = np.setdiff1d(val_users, fit_users)
    ctx_train = context(in_train)
    fit_set = ranker_groups(ctx_train, source, fit_users, train.seen(), shown, "ranker data (fit)")
    es_set = ranker_groups(ctx_train, source, es_users, train.seen(), shown, "ranker data (early stop)")
    trials = []
    best_ranker, best_val = None, -1.0
    fit_seconds = 0.0
    for params in grid("ranker"):
        t1 = time.perf_counter()
        ranker = Ranker(RankerConfig(seed=SEED, **params)).fit(*fit_set[:3], validation=es_set[:3])
        seconds = time.perf_counter() - t1
        score = ranker.metrics["val_ndcg@10"]
        trials.append({"params": params, "val_ndcg@10": score, "trees": ranker.metrics["best_iteration"],
                       "seconds": seconds})  # fmt: skip
        print(f"  ranker {params} val {score:.4f} @ {ranker.metrics['best_iteration']} trees ({seconds:.0f}s)",
              flush=True)  # fmt: skip
        if score > best_val:
            best_ranker, best_val, fit_seconds = ranker, score, seconds
    assert best_ranker is not None
    ranker_prep = time.perf_counter() - t0

    ctx_test = context(in_train_val)

    def ranked(users: np.ndarray, desc: str) -> np.ndarray:
        """[len(users), K] the stack's top-K per user."""
        xs, _, sizes, cands = ranker_groups(ctx_test, source, users, protocol.exclude, None, desc)
        scores = best_ranker.predict(xs)
        out = np.full((users.size, K), -1, dtype=np.int64)
        start = 0
        row = 0
        pools, _ = source.recommend(users, POOL, exclude=protocol.exclude)
        for j, pool in enumerate(pools):
            if (pool >= 0).sum() == 0:
                continue
            size = sizes[row]
            s, c = scores[start : start + size], cands[start : start + size]
            out[j, : min(K, size)] = c[np.argsort(-s, kind="stable")][:K]
            start += size
            row += 1
        return out

    recs = ranked(protocol.users, "ranker test")
    where = {u: j for j, u in enumerate(protocol.users)}
    stack: dict[str, Any] = {"all": _metrics(recs, protocol.relevant, protocol.users)}
    match_recs = ranked(protocol.match_users, "ranker matches")
    stack["all"]["match_precision@10"] = reciprocal_match_precision(
        match_recs, protocol.matches[protocol.match_users], K
    )["match_precision@10"]
    cold_rows = np.array([where[u] for u in protocol.cold_users], dtype=np.int64)
    stack["cold_users"] = _metrics(recs[cold_rows], protocol.relevant, protocol.cold_users)
    ci_rows = np.array([where[u] for u in protocol.cold_item_users], dtype=np.int64)
    stack["cold_items"] = _metrics(recs[ci_rows], protocol.relevant_cold_items, protocol.cold_item_users)
    stack["cold_coverage"] = results[source_name]["test"]["cold_coverage"]  # the ranker re-orders the same pool
    results["ranker_stack"] = {
        "source": source_name,
        "best_params": trials[[t["val_ndcg@10"] for t in trials].index(best_val)]["params"],
        "val_ndcg@10(ranker groups)": best_val,
        "train_seconds": fit_seconds + results[source_name]["train_seconds"],
        "ranker_seconds": fit_seconds,
        "ranker_data_seconds": ranker_prep,
        "trials": trials,
        "grid": GRIDS["ranker"],
        "ranker_rows": int(fit_set[0].shape[0]),
        "ranker_groups": int(fit_set[2].size),
        "feature_importance": dict(sorted(best_ranker.feature_importance().items(), key=lambda kv: -kv[1])[:12]),
        "test": stack,
    }

    best_single = max(singles, key=lambda m: results[m]["val_ndcg@10"])
    best_single_test = max(singles, key=lambda m: results[m]["test"]["all"]["ndcg@10"])
    ratio = stack["all"]["ndcg@10"] / results[best_single_test]["test"]["all"]["ndcg@10"]
    coverage = {m: results[m]["test"]["cold_coverage"] for m in (*singles, "ranker_stack")}
    verdict = {
        "best_single_by_validation": best_single,
        "best_single_by_test": best_single_test,
        "stack_ndcg_ratio_vs_best_single_test": ratio,
        "ndcg_target": ">= 1.10",
        "ndcg_target_met": ratio >= 1.10,
        "stack_cold_coverage": stack["cold_coverage"],
        "coverage_target": "> 0.95",
        "coverage_target_met": stack["cold_coverage"] > 0.95,
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
            "configs_base": {k: asdict(v) for k, v in BASE.items()},
            "feature_columns": int(x.shape[1]),
        },
        "data": {
            "profiles": n,
            "swipes": int(ev["users"].size),
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
    rows = []
    for name in (*singles, "ranker_stack"):
        r = results[name]["test"]
        rows.append([
            name if name != "ranker_stack" else f"ranker on {source_name}",
            f"{r['all']['ndcg@10']:.4f}", f"{r['all']['recall@10']:.4f}", f"{r['all']['match_precision@10']:.4f}",
            f"{results[name]['train_seconds']:.1f}",
            f"{r['cold_users']['ndcg@10']:.4f}", f"{r['cold_users']['recall@10']:.4f}",
            f"{r['cold_items']['ndcg@10']:.4f}", f"{r['cold_items']['recall@10']:.4f}", f"{r['cold_coverage']:.3f}",
        ])  # fmt: skip
    print(format_table(["model", "NDCG@10", "recall@10", "match prec@10", "train s", "cold-user NDCG",
                        "cold-user recall", "cold-cand NDCG", "cold-cand recall", "cold coverage"], rows))  # fmt: skip
    print(f"stack / best single ({best_single_test}) NDCG@10: x{ratio:.3f} (target >= 1.10: "
          f"{'met' if verdict['ndcg_target_met'] else 'NOT met'}); cold coverage {stack['cold_coverage']:.3f} "
          f"(target > 0.95: {'met' if verdict['coverage_target_met'] else 'NOT met'})")  # fmt: skip
    print(f"results: {path} ({payload['total_seconds']:.0f}s)")


if __name__ == "__main__":
    main()
