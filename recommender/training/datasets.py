"""Time-ordered train/validation/test splits of an event export.

Global cut points, not per-user: everything before the first cut is train, then validation,
then test, so no model ever learns from a swipe that happened after one it is judged on.
The cuts are the timestamps at the requested quantiles of the swipe count; swipes sharing a
cut timestamp all go to the later split (a session is never cut in half by the tie).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recommender.training.extract import MANIFEST

SPLIT_FILE = "split.json"
SPLITS: tuple[str, ...] = ("train", "validation", "test")
DATASETS_FORMAT = "patra.splits/1"


class DatasetError(ValueError):
    """The input cannot be split as asked; the message says why."""


def parse_ratios(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError as exc:
        raise DatasetError(f"split ratios must be three numbers like 0.8,0.1,0.1, not {text!r}") from exc
    if len(values) != 3 or any(v <= 0 for v in values) or abs(sum(values) - 1.0) > 1e-6:
        raise DatasetError(f"split ratios must be three positive numbers summing to 1, not {text!r}")
    return values  # type: ignore[return-value]


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def datasets_build(
    *, input_dir: Path | str, output_dir: Path | str, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> dict[str, Any]:
    """Split ``input_dir/swipes.parquet`` into ``{train,validation,test}.parquet`` in
    ``output_dir`` and record the split in ``split.json``; returns that record."""
    source, output = Path(input_dir), Path(output_dir)
    swipes_path = source / "swipes.parquet"
    if not swipes_path.exists():
        raise DatasetError(f"{swipes_path} not found; run extract_events first")
    table = pq.read_table(swipes_path)
    if table.num_rows < 3:
        raise DatasetError(f"{swipes_path} has {table.num_rows} swipes; at least 3 are needed for three splits")
    table = table.sort_by([("occurred_at", "ascending")])
    times = table.column("occurred_at")
    n = table.num_rows
    ts = pc.cast(times, pa.int64()).to_numpy()  # microseconds, ascending
    cut_values = [int(ts[min(n - 1, int(np.floor(q * n)))]) for q in (ratios[0], ratios[0] + ratios[1])]
    bounds = [0, int(np.searchsorted(ts, cut_values[0], "left")), int(np.searchsorted(ts, cut_values[1], "left")), n]
    output.mkdir(parents=True, exist_ok=True)
    counts, ranges = {}, {}
    for name, lo, hi in zip(SPLITS, bounds[:-1], bounds[1:], strict=True):
        part = table.slice(lo, hi - lo)
        pq.write_table(part, output / f"{name}.parquet")
        counts[name] = part.num_rows
        ranges[name] = {
            "start": _iso(part.column("occurred_at")[0].as_py()) if part.num_rows else None,
            "end": _iso(part.column("occurred_at")[-1].as_py()) if part.num_rows else None,
        }
    empty = [name for name, c in counts.items() if c == 0]
    if empty:
        raise DatasetError(
            f"the {', '.join(empty)} split(s) came out empty (too few distinct timestamps for these ratios)"
        )
    cut_times = [times[bounds[1]].as_py(), times[bounds[2]].as_py()]
    split = {
        "format": DATASETS_FORMAT,
        "input": str(source.resolve()),
        "ratios": list(ratios),
        "cuts": {"validation_start": _iso(cut_times[0]), "test_start": _iso(cut_times[1])},
        "rule": "train: occurred_at < validation_start <= validation < test_start <= test",
        "counts": counts,
        "fractions": {k: v / n for k, v in counts.items()},
        "time_ranges": ranges,
    }
    (output / SPLIT_FILE).write_text(json.dumps(split, indent=2) + "\n")
    if (source / MANIFEST).exists():
        shutil.copyfile(source / MANIFEST, output / "events_manifest.json")  # provenance travels with the data
    return split
