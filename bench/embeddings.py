"""Encoder throughput: sentence-transformers fp32 against our encoder's backends, same bios.

    .venv/bin/python -m bench.embeddings             # 500 real bios, 1 and 2 threads
    .venv/bin/python -m bench.embeddings --n 200 --repeats 1 --threads 2   # quick look

What is measured (one process, one run):

* **Texts**: ``--n`` (500) distinct real OkCupid bios (``load_bios``: the authors' full essay
  file when present, else the vendored demo sample), shuffled with ``--seed``.
* **Systems**, each encoding all the texts with ``--batch-size`` (64), on the CPU:
  ``sentence-transformers`` fp32 (``SentenceTransformer`` from the packaged model folder,
  offline; it sorts by length too); ours ``torch`` (fp32), ``torch-bf16`` (bfloat16 weights and
  activations, fp32 pooling; AMX on Sapphire Rapids), ``onnx`` (fp32, fused) and ``onnx-int8``;
  and two candidates measured for the record, not backends: ``torch-bf16-autocast`` (the fp32
  model under ``torch.autocast("cpu", dtype=torch.bfloat16)``) and ``torch-int8``
  (``torch.ao.quantization.quantize_dynamic`` of the Linear layers). The bf16 systems are left
  out (and listed under ``skipped``) on a CPU without native bf16.
* **Threads**: every system runs with each ``--threads`` value (PyTorch's ``set_num_threads``;
  ONNX Runtime's intra-op threads), one process, one system at a time.
* **Timing**: ``--repeats`` (3) passes per system, interleaved (system A, B, C, ..., then again)
  so that load from other processes falls on all systems alike; after one warm-up batch each.
  texts/s = n / median pass time (best pass also recorded). The ratio is to
  sentence-transformers at the same thread count. Tokenisation is included (it is part of
  encoding a bio).
* **Agreement**: cosine of each system's vectors to the sentence-transformers fp32 vectors, min
  and mean over the texts.
* **Targets**: >= 2x sentence-transformers' texts/s with cosine >= 0.99 to its vectors (the
  minimum over the texts); the verdict names, per thread count, the fastest of our backends
  meeting that cosine.

The ONNX files are built (offline, from the packaged weights) into
``BENCH_VAR_DIR/embeddings/onnx`` on the first run; the build time is recorded.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO_DIR, format_table, machine_info, write_result

DEFAULT_OKCUPID_DIR = REPO_DIR.parent / "shared" / "datasets" / "okcupid"


def load_bios(n: int, seed: int, okcupid_dir: Path = DEFAULT_OKCUPID_DIR) -> tuple[list[str], str]:
    """(up to ``n`` distinct non-empty bios, where they came from)."""
    from recommender.ml.embeddings import profile_text
    from recommender.simulation import load_sample
    from recommender.simulation.okcupid import ESSAY_COLUMN, clean_text, iter_raw_records, source_paths

    essays = source_paths(okcupid_dir)[1]
    if essays.exists():
        raw = (clean_text(rec.get(ESSAY_COLUMN)) for rec in iter_raw_records(essays))
        origin = f"OkCupid essay0 ({essays})"
    else:
        raw = (row.essay0 for row in load_sample())
        origin = "vendored OkCupid sample (essay0)"
    bios = list(dict.fromkeys(profile_text(text) for text in raw if text))
    bios = [b for b in bios if b]
    random.Random(seed).shuffle(bios)
    return bios[:n], f"{origin}: {min(n, len(bios))} of {len(bios)} distinct bios, shuffled with seed {seed}"


TARGET_RATIO = 2.0
TARGET_COSINE = 0.99
SYSTEMS: tuple[str, ...] = (
    "sentence-transformers",
    "torch",
    "torch-bf16",
    "onnx",
    "onnx-int8",
    "torch-bf16-autocast",
    "torch-int8",
)
OUR_BACKENDS: tuple[str, ...] = ("torch", "torch-bf16", "onnx", "onnx-int8")  # the verdict's candidates
BF16_SYSTEMS: frozenset[str] = frozenset({"torch-bf16", "torch-bf16-autocast"})


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=500, help="real bios encoded by every system")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=_ints, default=[1, 2], help="comma-separated thread counts")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per system (median kept)")
    parser.add_argument("--systems", type=_names, default=list(SYSTEMS), help="comma-separated subset")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--okcupid-dir", type=Path, default=DEFAULT_OKCUPID_DIR)
    parser.add_argument("--output", default="embeddings", help="result name in bench/results/")
    return parser.parse_args(argv)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _names(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = sorted(set(names) - set(SYSTEMS))
    if unknown or "sentence-transformers" not in names:
        raise argparse.ArgumentTypeError(f"systems are {SYSTEMS} and must include sentence-transformers")
    return names


def onnx_dir() -> Path:
    return Path(os.environ.get("BENCH_VAR_DIR", REPO_DIR / "var" / "bench")).resolve() / "embeddings" / "onnx"


def build_onnx_files(model_dir: Path) -> dict[str, float]:
    """Seconds to build each ONNX file (0 when it was already cached)."""
    from recommender.ml.embeddings import onnx_model_file

    seconds = {}
    for quantize in (False, True):
        start = time.perf_counter()
        onnx_model_file(model_dir, onnx_dir(), quantize=quantize)
        seconds["onnx-int8" if quantize else "onnx"] = round(time.perf_counter() - start, 1)
    return seconds


def encoders(names: Sequence[str], threads: int, batch_size: int) -> dict[str, Callable[[list[str]], np.ndarray]]:
    """name -> encode(texts) for every system, set up for ``threads`` threads."""
    import torch
    from sentence_transformers import SentenceTransformer

    from recommender.ml.embeddings import BioEncoder, resolve_model_path

    torch.set_num_threads(threads)
    out: dict[str, Callable[[list[str]], np.ndarray]] = {}
    model_dir = str(resolve_model_path("all-MiniLM-L6-v2"))
    for name in names:
        if name == "sentence-transformers":
            st = SentenceTransformer(model_dir, device="cpu", local_files_only=True)
            out[name] = partial(
                st.encode,
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        elif name == "torch-int8":
            enc = BioEncoder(device="cpu", batch_size=batch_size)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # quantize_dynamic is deprecated in favour of torchao
                enc._model = torch.ao.quantization.quantize_dynamic(enc._model, {torch.nn.Linear}, dtype=torch.qint8)
            out[name] = enc.encode
        elif name == "torch-bf16-autocast":
            out[name] = _autocast_bf16(BioEncoder(device="cpu", batch_size=batch_size))
        else:
            enc = BioEncoder(
                device="cpu", batch_size=batch_size, backend=name, artifact_dir=onnx_dir(), threads=threads
            )
            out[name] = enc.encode
    return out


def _autocast_bf16(enc: Any) -> Callable[[list[str]], np.ndarray]:
    """The fp32 encoder with every batch under CPU bf16 autocast (pooling then runs in fp32 too)."""
    import torch

    plain = enc._encode_batch

    def batch(texts: list[str]) -> np.ndarray:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return plain(texts)

    enc._encode_batch = batch
    return enc.encode


def runnable(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(systems to run, systems skipped): bf16 only where the CPU runs it natively."""
    from recommender.ml.embeddings import bf16_supported

    skipped = [n for n in names if n in BF16_SYSTEMS and not bf16_supported("cpu")]
    return [n for n in names if n not in skipped], skipped


def time_systems(
    systems: dict[str, Callable[[list[str]], np.ndarray]], texts: list[str], repeats: int, bar: Any
) -> tuple[dict[str, list[float]], dict[str, np.ndarray]]:
    """(name -> pass seconds, name -> vectors of the first pass); passes interleaved."""
    for encode in systems.values():
        encode(texts[:8])  # warm-up: first-call allocations, lazy initialisation
    seconds: dict[str, list[float]] = {name: [] for name in systems}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for name, encode in systems.items():
            start = time.perf_counter()
            vecs = encode(texts)
            seconds[name].append(time.perf_counter() - start)
            vectors.setdefault(name, np.asarray(vecs, dtype=np.float32))
            bar.update(1)
    return seconds, vectors


def cosine_stats(vecs: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    cos = np.sum(vecs * ref, axis=1) / (np.linalg.norm(vecs, axis=1) * np.linalg.norm(ref, axis=1))
    return {"min": round(float(cos.min()), 5), "mean": round(float(cos.mean()), 5)}


def main(argv: Sequence[str] | None = None) -> None:
    import sys

    from tqdm import tqdm

    from recommender.ml.embeddings import INT8_KEEP_FP32, resolve_model_path

    args = parse_args(argv)
    args.systems, skipped = runnable(args.systems)
    texts, origin = load_bios(args.n, args.seed, args.okcupid_dir)
    load_start = os.getloadavg()
    build_seconds = build_onnx_files(resolve_model_path("all-MiniLM-L6-v2"))
    rows: list[dict[str, Any]] = []
    reference: np.ndarray | None = None
    with tqdm(total=len(args.threads) * len(args.systems) * args.repeats, desc="encode passes", unit="pass") as bar:
        for threads in args.threads:
            systems = encoders(args.systems, threads, args.batch_size)
            seconds, vectors = time_systems(systems, texts, args.repeats, bar)
            if reference is None:
                reference = vectors["sentence-transformers"]
            base = len(texts) / statistics.median(seconds["sentence-transformers"])
            for name in args.systems:
                rate = len(texts) / statistics.median(seconds[name])
                rows.append(
                    {
                        "system": name,
                        "threads": threads,
                        "texts_per_second": round(rate, 1),
                        "texts_per_second_best_pass": round(len(texts) / min(seconds[name]), 1),
                        "pass_seconds": [round(s, 2) for s in seconds[name]],
                        "ratio_to_sentence_transformers": round(rate / base, 2),
                        "cosine_to_sentence_transformers": cosine_stats(vectors[name], reference),
                    }
                )
            del systems
    payload = {
        "benchmark": "embeddings",
        "command": "python -m bench.embeddings " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(),
        "texts": {"n": len(texts), "source": origin, "mean_chars": round(float(np.mean([len(t) for t in texts])), 1)},
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "onnx_build_seconds": build_seconds,
        "onnx_int8_keep_fp32": list(INT8_KEEP_FP32),
        "skipped": {name: "no native bf16 on this CPU (AMX or AVX512-BF16)" for name in skipped},
        "cpu_bf16": _cpu_bf16(),
        # Other processes share the cores: the load average says how much they disturbed the run.
        "load_average_1_5_15": {"start": [round(x, 2) for x in load_start], "end": _load()},
        "target": {"ratio": TARGET_RATIO, "cosine_min": TARGET_COSINE},
        "results": rows,
        "verdict": verdict(rows),
    }
    path = write_result(args.output, payload)
    print_report(payload)
    print(f"written {path.relative_to(REPO_DIR)}")


def _cpu_bf16() -> dict[str, Any]:
    """What this CPU offers for bf16, as PyTorch sees it (torch 2.13's private probes)."""
    import torch

    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported", "_is_vnni_supported")
    found = {name.strip("_"): bool(getattr(torch.cpu, name, lambda: False)()) for name in probes}
    return {"capability": torch.backends.cpu.get_cpu_capability(), **found}


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def verdict(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per thread count: the fastest of our backends meeting the cosine bar, and whether it is >= 2x."""
    out: dict[str, Any] = {}
    for threads in sorted({r["threads"] for r in rows}):
        ours = [
            r
            for r in rows
            if r["threads"] == threads
            and r["system"] in OUR_BACKENDS
            and r["cosine_to_sentence_transformers"]["min"] >= TARGET_COSINE
        ]
        best = max(ours, key=lambda r: r["texts_per_second"], default=None)
        out[f"{threads}_threads"] = (
            None
            if best is None
            else {
                "system": best["system"],
                "ratio": best["ratio_to_sentence_transformers"],
                "met": best["ratio_to_sentence_transformers"] >= TARGET_RATIO,
            }
        )
    return out


def print_report(payload: dict[str, Any]) -> None:
    print(
        f"\nembeddings: {payload['texts']['n']:,} real bios (mean {payload['texts']['mean_chars']} chars), "
        f"batch {payload['batch_size']}, median of {payload['repeats']} passes"
    )
    rows = [
        [
            r["system"],
            r["threads"],
            r["texts_per_second"],
            r["ratio_to_sentence_transformers"],
            # 5 decimals: the table's default 2 would show 0.995 and 0.9999 alike as 1.00
            f"{r['cosine_to_sentence_transformers']['min']:.5f}",
            f"{r['cosine_to_sentence_transformers']['mean']:.5f}",
        ]
        for r in payload["results"]
    ]
    print(format_table(["system", "threads", "texts/s", "x ST", "cos min", "cos mean"], rows))
    for key, v in payload["verdict"].items():
        if v is None:
            print(f"{key}: no backend of ours meets cosine >= {TARGET_COSINE}")
        else:
            state = "met" if v["met"] else "missed"
            print(f"{key}: fastest backend with cosine >= {TARGET_COSINE}: {v['system']} at {v['ratio']}x ({state})")
    for name, why in payload.get("skipped", {}).items():
        print(f"skipped {name}: {why}")
    print(f"load average start {payload['load_average_1_5_15']['start']} end {payload['load_average_1_5_15']['end']}")


if __name__ == "__main__":
    main()
