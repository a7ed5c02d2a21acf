"""HNSW (hnswlib) at 1,000,000 vectors: recall@10, single-thread queries/s, build time, memory.

    .venv/bin/python -m bench.ann                   # 1,000,000 vectors, M 12/16/32, ef 32..256
    .venv/bin/python -m bench.ann --size 20000      # the same pipeline in about a minute

What is measured (one run, one data set):

* **Data** (``generate``, seeded): ``--anchors`` real OkCupid bios embedded with our fp32 MiniLM
  encoder (cached in ``BENCH_VAR_DIR/ann/``), then ``--size`` base vectors plus ``--queries``
  held-out query vectors drawn from them. Each generated vector is

      normalise( w1 a_i + w2 a_j + w3 a_l  +  sigma * g ),   g ~ N(0, C)

  with ``a_i`` a uniformly drawn anchor, ``a_j`` and ``a_l`` drawn among the ``--mix-neighbours``
  (10) anchors nearest to ``a_i``, ``(w1, w2, w3) ~ Dirichlet(4, 1, 1)`` (mostly the primary bio,
  blended with similar ones), and ``C`` the covariance of the anchors (noise in the directions
  real bios vary along, not isotropic). ``--noise`` is ``sigma`` (0.35). The vectors so keep the
  topical cluster structure of real MiniLM embeddings instead of being uniform on the sphere
  (uniform data is a worst case for HNSW that real embeddings are not). The JSON records how
  close generated vectors are to each other and to the anchors, next to the same statistics of
  the real anchors, so a reader can judge the realism.
* **Ground truth**: exact top-10 by inner product (numpy matmul over chunks of the base set).
* **Index**: hnswlib as ``recommender.ml.ann`` configures it (space ``cosine``, random seed 100),
  ``ef_construction`` (100), built with ``--build-threads`` (2) threads. Per ``M``: wall time,
  RSS growth of this process over the build, size of the saved index file.
* **Queries**: for each ``ef``: recall@10 over the held-out queries; queries/s on one thread
  (``set_num_threads(1)``, one ``knn_query`` call per query, best of ``--repeats`` passes, as a
  feed issues them); queries/s of one batched ``knn_query`` on one thread for reference; and, for
  the chosen setting, queries/s through ``AnnIndex.query`` (the wrapper the feed calls: lock,
  exclusion bookkeeping).
* **Target**: recall@10 >= 0.95 at >= 2,000 queries/s (one thread). The chosen setting is the
  fastest one meeting both.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO_DIR, format_table, machine_info, write_result
from bench.embeddings import DEFAULT_OKCUPID_DIR, load_bios

K = 10
TARGET_RECALL = 0.95
TARGET_QPS = 2_000.0
GEN_CHUNK = 50_000
EXACT_CHUNK = 100_000


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="vectors in the index")
    parser.add_argument("--queries", type=int, default=1_000, help="held-out query vectors")
    parser.add_argument("--anchors", type=int, default=4_000, help="real bios embedded as the generator's anchors")
    parser.add_argument("--noise", type=float, default=0.35, help="sigma of the anchor-covariance noise")
    parser.add_argument("--mix-neighbours", type=int, default=10, help="anchors a vector may blend with")
    parser.add_argument("--M", type=_ints, default=[12, 16, 32], help="comma-separated graph degrees")
    parser.add_argument("--ef", type=_ints, default=[32, 64, 128, 256], help="comma-separated query beam widths")
    parser.add_argument("--ef-construction", type=int, default=100)
    parser.add_argument("--build-threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="single-query passes per setting (best kept)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--okcupid-dir", type=Path, default=DEFAULT_OKCUPID_DIR)
    parser.add_argument("--output", default="", help="result name (default ann, or ann_<size> when not 1M)")
    return parser.parse_args(argv)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def var_dir() -> Path:
    path = Path(os.environ.get("BENCH_VAR_DIR", REPO_DIR / "var" / "bench")).resolve() / "ann"
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- Data -------------------------------------------------------------------------------------


def anchor_vectors(n: int, seed: int, okcupid_dir: Path) -> tuple[np.ndarray, str]:
    """(n', 384) fp32 MiniLM vectors of real bios, cached on disk by the bios' hash."""
    from tqdm import tqdm

    from bench.common import cumulative_progress
    from recommender.ml.embeddings import BioEncoder

    bios, origin = load_bios(n, seed, okcupid_dir)
    digest = hashlib.sha256("\n\x00".join(bios).encode()).hexdigest()[:16]
    path = var_dir() / f"anchors_{len(bios)}_{digest}.npy"
    if path.exists():
        return np.load(path), origin
    encoder = BioEncoder(device="cpu", backend="torch")
    with tqdm(total=len(bios), desc="anchors (MiniLM fp32)", unit="bio") as bar:
        vectors = encoder.encode(bios, progress=cumulative_progress(bar))
    np.save(path, vectors)
    return vectors, origin


class Generator:
    """Seeded mixtures of real anchor vectors plus anchor-covariance noise (see the module doc)."""

    def __init__(self, anchors: np.ndarray, noise: float, neighbours: int, seed: int) -> None:
        self.anchors = anchors.astype(np.float32)  # (a, d)
        self.noise = noise
        self.seed = seed
        sims = self.anchors @ self.anchors.T  # (a, a)
        np.fill_diagonal(sims, -np.inf)
        k = min(neighbours, len(anchors) - 1)
        self.near = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # (a, k)
        centred = self.anchors - self.anchors.mean(axis=0)
        eigval, eigvec = np.linalg.eigh(np.cov(centred, rowvar=False))  # C = V diag(l) V^T
        # noise = z diag(sqrt l) V^T has covariance C
        self.noise_map = (eigvec * np.sqrt(np.clip(eigval, 0, None))).T.astype(np.float32)  # (d, d)

    def chunk(self, n: int, stream: int) -> np.ndarray:
        """(n, d) unit vectors; ``stream`` picks an independent random stream."""
        rng = np.random.default_rng([self.seed, 311, stream])
        a, k = self.near.shape
        primary = rng.integers(0, a, size=n)
        others = self.near[primary[:, None], rng.integers(0, k, size=(n, 2))]  # (n, 2)
        w = rng.dirichlet((4.0, 1.0, 1.0), size=n).astype(np.float32)  # (n, 3)
        x = (
            w[:, :1] * self.anchors[primary]
            + w[:, 1:2] * self.anchors[others[:, 0]]
            + w[:, 2:] * self.anchors[others[:, 1]]
        )
        x += self.noise * (rng.standard_normal((n, x.shape[1]), dtype=np.float32) @ self.noise_map)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x.astype(np.float32)


def generate(gen: Generator, size: int, queries: int) -> tuple[np.ndarray, np.ndarray]:
    """(base (size, d), held-out queries (queries, d)), from disjoint random streams."""
    from tqdm import tqdm

    base = np.empty((size, gen.anchors.shape[1]), dtype=np.float32)
    with tqdm(total=size, desc="generate vectors", unit="vec", unit_scale=True) as bar:
        for i, start in enumerate(range(0, size, GEN_CHUNK)):
            n = min(GEN_CHUNK, size - start)
            base[start : start + n] = gen.chunk(n, stream=i)
            bar.update(n)
    return base, gen.chunk(queries, stream=1_000_000)


def exact_topk(base: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact (ids (q, k), sims (q, k)) by inner product, sorted, over chunks of ``base``."""
    from tqdm import tqdm

    best_ids = np.empty((len(queries), 0), dtype=np.int64)
    best_sims = np.empty((len(queries), 0), dtype=np.float32)
    with tqdm(total=len(base), desc="exact search", unit="vec", unit_scale=True) as bar:
        for start in range(0, len(base), EXACT_CHUNK):
            sims = queries @ base[start : start + EXACT_CHUNK].T  # (q, c)
            kk = min(k, sims.shape[1])
            part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]  # (q, kk)
            cand_ids = np.concatenate([best_ids, part + start], axis=1)
            cand_sims = np.concatenate([best_sims, np.take_along_axis(sims, part, axis=1)], axis=1)
            order = np.argsort(-cand_sims, axis=1, kind="stable")[:, :k]
            best_ids = np.take_along_axis(cand_ids, order, axis=1)
            best_sims = np.take_along_axis(cand_sims, order, axis=1)
            bar.update(sims.shape[1])
    return best_ids, best_sims


def data_stats(anchors: np.ndarray, base: np.ndarray, truth_sims: np.ndarray, seed: int) -> dict[str, Any]:
    """How the generated set compares with the real anchors (for judging the generator)."""
    rng = np.random.default_rng([seed, 17])
    a_sample = anchors[rng.choice(len(anchors), size=min(500, len(anchors)), replace=False)]
    a_sims = a_sample @ anchors.T  # (s, a)
    a_sims[a_sims > 0.9999] = -1  # drop self-matches
    a_top = -np.sort(-a_sims, axis=1)[:, :K]  # (s, K)
    b_sample = base[rng.choice(len(base), size=min(1_000, len(base)), replace=False)]
    nearest_anchor = (b_sample @ anchors.T).max(axis=1)
    pair = rng.integers(0, len(base), size=(2_000, 2))
    random_pairs = np.einsum("nd,nd->n", base[pair[:, 0]], base[pair[:, 1]])
    ar = rng.integers(0, len(anchors), size=(2_000, 2))
    anchor_pairs = np.einsum("nd,nd->n", anchors[ar[:, 0]], anchors[ar[:, 1]])
    return {
        "real_anchors": {
            "count": len(anchors),
            "mean_cosine_random_pair": round(float(anchor_pairs.mean()), 4),
            "mean_cosine_1st_neighbour": round(float(a_top[:, 0].mean()), 4),
            "mean_cosine_10th_neighbour": round(float(a_top[:, K - 1].mean()), 4),
        },
        "generated": {
            "count": len(base),
            "mean_cosine_random_pair": round(float(random_pairs.mean()), 4),
            "query_mean_cosine_1st_neighbour": round(float(truth_sims[:, 0].mean()), 4),
            "query_mean_cosine_10th_neighbour": round(float(truth_sims[:, K - 1].mean()), 4),
            "mean_cosine_to_nearest_anchor": round(float(nearest_anchor.mean()), 4),
        },
    }


# --- Index ------------------------------------------------------------------------------------


def rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def build_index(base: np.ndarray, m: int, ef_construction: int, threads: int) -> tuple[Any, dict[str, Any]]:
    import hnswlib
    from tqdm import tqdm

    gc.collect()
    rss_before = rss_bytes()
    start = time.perf_counter()
    index = hnswlib.Index(space="cosine", dim=base.shape[1])
    index.init_index(max_elements=len(base), M=m, ef_construction=ef_construction, random_seed=100)
    index.set_num_threads(threads)
    labels = np.arange(len(base), dtype=np.uint64)
    step = max(10_000, len(base) // 100)
    with tqdm(total=len(base), desc=f"build M={m}", unit="vec", unit_scale=True) as bar:
        for s in range(0, len(base), step):
            index.add_items(base[s : s + step], labels[s : s + step], num_threads=threads)
            bar.update(min(step, len(base) - s))
    seconds = time.perf_counter() - start
    rss_after = rss_bytes()
    with tempfile.TemporaryDirectory(dir=var_dir()) as tmp:
        path = Path(tmp) / "index.bin"
        index.save_index(str(path))
        disk = path.stat().st_size
    return index, {
        "M": m,
        "ef_construction": ef_construction,
        "build_threads": threads,
        "build_seconds": round(seconds, 1),
        "inserts_per_second": round(len(base) / seconds),
        "rss_growth_mib": round((rss_after - rss_before) / 2**20, 1),
        "index_file_mib": round(disk / 2**20, 1),
        "vectors_mib": round(base.nbytes / 2**20, 1),
    }


def measure(index: Any, queries: np.ndarray, truth: np.ndarray, ef: int, repeats: int) -> dict[str, Any]:
    from recommender.ml.ann import recall_at_k

    index.set_num_threads(1)
    index.set_ef(max(ef, K))
    labels, _ = index.knn_query(queries, k=K)
    recall = recall_at_k(labels.astype(np.int64), truth)
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for q in queries:
            index.knn_query(q[None, :], k=K)
        best = min(best, time.perf_counter() - start)
    start = time.perf_counter()
    index.knn_query(queries, k=K)
    batched = time.perf_counter() - start
    return {
        "ef": ef,
        "recall_at_10": round(float(recall), 4),
        "qps_single": round(len(queries) / best),
        "latency_us_single": round(best / len(queries) * 1e6, 1),
        "qps_batched_1_thread": round(len(queries) / batched),
    }


def wrapper_qps(index: Any, base_len: int, queries: np.ndarray, m: int, ef: int, efc: int, repeats: int) -> int:
    """Single queries through AnnIndex.query (the feed's path) on the same hnswlib index."""
    from recommender.ml.ann import AnnConfig, AnnIndex

    cfg = AnnConfig(dim=queries.shape[1], M=m, ef_construction=efc, ef_search=ef)
    ann = AnnIndex(cfg, index, set(range(base_len)))
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for q in queries:
            ann.query(q, k=K)
        best = min(best, time.perf_counter() - start)
    return round(len(queries) / best)


def choose(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    ok = [r for r in rows if r["recall_at_10"] >= TARGET_RECALL and r["qps_single"] >= TARGET_QPS]
    return max(ok, key=lambda r: (r["qps_single"], r["recall_at_10"])) if ok else None


# --- Main -------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    import sys

    from tqdm import tqdm

    args = parse_args(argv)
    name = args.output or ("ann" if args.size == 1_000_000 else f"ann_{args.size}")
    started = time.perf_counter()
    load_start = os.getloadavg()
    anchors, origin = anchor_vectors(args.anchors, args.seed, args.okcupid_dir)
    gen = Generator(anchors, args.noise, args.mix_neighbours, args.seed)
    base, queries = generate(gen, args.size, args.queries)
    start = time.perf_counter()
    truth, truth_sims = exact_topk(base, queries, K)
    exact_seconds = time.perf_counter() - start
    payload: dict[str, Any] = {
        "benchmark": "ann",
        "command": "python -m bench.ann " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(),
        "data": {
            "size": args.size,
            "dim": int(base.shape[1]),
            "queries": args.queries,
            "anchors_source": origin,
            "generator": {
                "anchors": len(anchors),
                "noise_sigma": args.noise,
                "mix_neighbours": args.mix_neighbours,
                "weights": "Dirichlet(4, 1, 1)",
                "seed": args.seed,
            },
            **data_stats(anchors, base, truth_sims, args.seed),
        },
        "exact_search_seconds": round(exact_seconds, 1),
        "target": {"recall_at_10": TARGET_RECALL, "qps_single_thread": TARGET_QPS},
        "builds": [],
        "results": [],
        "complete": False,
    }
    for m in args.M:
        index, build = build_index(base, m, args.ef_construction, args.build_threads)
        payload["builds"].append(build)
        for ef in tqdm(args.ef, desc=f"queries M={m}", unit="ef"):
            payload["results"].append({"M": m, **measure(index, queries, truth, ef, args.repeats)})
        chosen = choose([r for r in payload["results"] if r["M"] == m])
        if chosen is not None:
            build["annindex_query_qps_at_chosen_ef"] = {
                "ef": chosen["ef"],
                "qps": wrapper_qps(index, len(base), queries, m, chosen["ef"], args.ef_construction, args.repeats),
            }
        del index
        gc.collect()
        payload["chosen"] = choose(payload["results"])
        payload["load_average_1_5_15"] = {"start": [round(x, 2) for x in load_start], "end": _load()}
        write_result(name, payload)  # after every M: a long run keeps what it measured
    payload["chosen"] = choose(payload["results"])
    payload["complete"] = True
    payload["total_seconds"] = round(time.perf_counter() - started, 1)
    payload["load_average_1_5_15"] = {"start": [round(x, 2) for x in load_start], "end": _load()}
    path = write_result(name, payload)
    print_report(payload)
    print(f"written {path.relative_to(REPO_DIR)}")


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def print_report(payload: dict[str, Any]) -> None:
    data = payload["data"]
    print(f"\nann: {data['size']:,} vectors of {data['dim']} dims, {data['queries']:,} held-out queries")
    print(json.dumps({"real_anchors": data["real_anchors"], "generated": data["generated"]}))
    builds = payload["builds"]
    print(
        format_table(
            ["M", "build s", "inserts/s", "RSS growth MiB", "index file MiB"],
            [
                [b["M"], b["build_seconds"], b["inserts_per_second"], b["rss_growth_mib"], b["index_file_mib"]]
                for b in builds
            ],
        )
    )
    rows = [
        [r["M"], r["ef"], r["recall_at_10"], r["qps_single"], r["latency_us_single"], r["qps_batched_1_thread"]]
        for r in payload["results"]
    ]
    print(format_table(["M", "ef", "recall@10", "qps (1 thread)", "us/query", "qps batched"], rows))
    chosen = payload.get("chosen")
    if chosen:
        print(
            f"target recall@10 >= {TARGET_RECALL} at >= {TARGET_QPS:,.0f} qps: met, fastest M={chosen['M']} "
            f"ef={chosen['ef']} (recall {chosen['recall_at_10']}, {chosen['qps_single']:,} qps)"
        )
    else:
        print(f"target recall@10 >= {TARGET_RECALL} at >= {TARGET_QPS:,.0f} qps: not met by any setting")


if __name__ == "__main__":
    main()
