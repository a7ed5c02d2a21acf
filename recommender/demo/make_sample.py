"""Make the vendored OkCupid demo sample from the authors' files.

    python -m recommender.demo.make_sample --source /work/shared/datasets/okcupid \\
        --n 3000 --seed 7 --out recommender/demo/data/okcupid_sample.csv.gz

Draws ``n`` profile rows and, independently, ``n`` essay rows uniformly without replacement with
``random.Random(seed)`` and writes them side by side as one CSV (the 19 original profile columns
plus ``essay0``). The essays were row-shuffled by the authors, so the pairing is arbitrary: an
essay is only a plausible bio for the profile next to it, never that person's own text. Values
are copied verbatim (no cleaning: that is the reader's job), so the sample stays a faithful
subset of the source. The gzip header carries no timestamp, so a rerun gives identical bytes.

Standard library only.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import random
from collections.abc import Sequence
from pathlib import Path

from recommender.simulation.okcupid import (
    ESSAY_COLUMN,
    PROFILE_COLUMNS,
    SAMPLE_COLUMNS,
    iter_raw_records,
    source_paths,
)


def draw_indices(population: int, n: int, rng: random.Random) -> list[int]:
    """``n`` distinct indices of ``range(population)`` in sorted (source) order."""
    if n > population:
        raise ValueError(f"cannot sample {n} rows out of {population}")
    return sorted(rng.sample(range(population), n))


def make_sample(source: Path, n: int, seed: int) -> list[dict[str, str]]:
    """The sampled rows: profile columns from one draw, ``essay0`` from an independent draw."""
    profiles_path, essays_path = source_paths(source)
    profiles = list(iter_raw_records(profiles_path))
    essays = [rec[ESSAY_COLUMN] for rec in iter_raw_records(essays_path)]
    rng = random.Random(seed)
    profile_idx = draw_indices(len(profiles), n, rng)
    essay_idx = draw_indices(len(essays), n, rng)
    # Shuffle the essay order too, so that neighbouring sampled rows do not share source order.
    rng.shuffle(essay_idx)
    rows = []
    for p, e in zip(profile_idx, essay_idx, strict=True):
        row = {col: profiles[p][col] for col in PROFILE_COLUMNS}
        row[ESSAY_COLUMN] = essays[e]
        rows.append(row)
    return rows


def write_sample(rows: list[dict[str, str]], out: Path) -> str:
    """Write a reproducible gzip CSV (mtime 0, no file name in the header); returns its sha256."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with (
        out.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz,
    ):
        text = _csv_text(rows)
        gz.write(text.encode("utf-8"))
    return hashlib.sha256(out.read_bytes()).hexdigest()


def _csv_text(rows: list[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SAMPLE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "datasets" / "okcupid"
    )
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("recommender/demo/data/okcupid_sample.csv.gz"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    rows = make_sample(args.source, args.n, args.seed)
    digest = write_sample(rows, args.out)
    print(f"wrote {len(rows)} rows to {args.out} (sha256 {digest})")


if __name__ == "__main__":
    main()
