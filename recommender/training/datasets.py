"""Train/validation/test splits of an event export, by time or by user.

Two strategies, and ``auto`` (the default) to choose between them:

``time``
    Global cut points: everything before the first cut is train, then validation, then test, so
    no model ever learns from a swipe that happened after one it is judged on. The cuts are the
    timestamps at the requested quantiles of the swipe count; swipes sharing a cut timestamp all
    go to the later split (a session is never cut in half by the tie). Right for an app whose
    users swipe over a long period: most people in validation and test also swiped before.
``per_user``
    Each swiper's own swipes, in time order, are cut at the same quantiles: their latest swipes
    are test, the ones before validation, the rest train (swipers with fewer than
    ``MIN_PER_USER_SWIPES`` keep all theirs in train). Every held-out swipe is by someone the
    model saw decide before. Right for a young or small tenant, or one where people join in
    cohorts (a wave of sign-ups, an event): a global cut there puts whole cohorts in validation
    and test, early stopping then measures people the model never saw, and the model learns
    nothing about the latest cohorts.
``auto``
    The time split, unless fewer than ``AUTO_MIN_SEEN`` of its held-out swipes are by swipers
    with a train swipe; then per user. The choice, the reason and both shares are recorded in
    ``split.json`` (``strategy``, ``auto``).
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
STRATEGIES: tuple[str, ...] = ("auto", "time", "per_user")
AUTO_MIN_SEEN = 0.8  # share of held-out swipes by swipers seen in train below which auto goes per user
MIN_PER_USER_SWIPES = 3


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
    *,
    input_dir: Path | str,
    output_dir: Path | str,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    strategy: str = "auto",
) -> dict[str, Any]:
    """Split ``input_dir/swipes.parquet`` into ``{train,validation,test}.parquet`` in
    ``output_dir`` by ``strategy`` (module docs) and record the split in ``split.json``; returns
    that record."""
    if strategy not in STRATEGIES:
        raise DatasetError(f"unknown split strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    source, output = Path(input_dir), Path(output_dir)
    table = _read_swipes(source)
    users = table.column("user").to_numpy(zero_copy_only=False).astype(str)
    parts = {"time": _time_parts(table, ratios), "per_user": _per_user_parts(users, ratios)}
    shares = {name: _seen_share(users, part) for name, part in parts.items()}
    auto = None
    if strategy == "auto":
        strategy, auto = _auto_choice(shares)
    output.mkdir(parents=True, exist_ok=True)
    counts, ranges = _write_parts(table, parts[strategy], output)
    empty = [name for name, c in counts.items() if c == 0]
    if empty:
        raise DatasetError(
            f"the {', '.join(empty)} split(s) came out empty (too few swipes or distinct timestamps for these ratios)"
        )
    split: dict[str, Any] = {
        "format": DATASETS_FORMAT,
        "input": str(source.resolve()),
        "ratios": list(ratios),
        "strategy": strategy,
        "auto": auto,
        "held_out_swipes_by_seen_swipers": shares[strategy],
        "counts": counts,
        "fractions": {k: v / table.num_rows for k, v in counts.items()},
        "time_ranges": ranges,
    }
    if strategy == "time":
        split["cuts"] = {"validation_start": ranges["validation"]["start"], "test_start": ranges["test"]["start"]}
        split["rule"] = "train: occurred_at < validation_start <= validation < test_start <= test"
    else:
        split["rule"] = "per swiper, in time order: the latest swipes are test, the ones before validation"
    (output / SPLIT_FILE).write_text(json.dumps(split, indent=2) + "\n")
    if (source / MANIFEST).exists():
        shutil.copyfile(source / MANIFEST, output / "events_manifest.json")  # provenance travels with the data
    return split


def _read_swipes(source: Path) -> pa.Table:
    """The export's swipes, sorted by time."""
    swipes_path = source / "swipes.parquet"
    if not swipes_path.exists():
        raise DatasetError(f"{swipes_path} not found; run extract_events first")
    table = pq.read_table(swipes_path)
    if table.num_rows < 3:
        raise DatasetError(f"{swipes_path} has {table.num_rows} swipes; at least 3 are needed for three splits")
    return table.sort_by([("occurred_at", "ascending")])


def _auto_choice(shares: dict[str, float]) -> tuple[str, dict[str, Any]]:
    """(the strategy auto picks, the record of why)."""
    strategy = "time" if shares["time"] >= AUTO_MIN_SEEN else "per_user"
    reason = (
        f"{shares['time']:.0%} of the time split's held-out swipes are by swipers with a train swipe "
        f"({'at least' if strategy == 'time' else 'below'} {AUTO_MIN_SEEN:.0%})"
    )
    return strategy, {
        "chose": strategy,
        "held_out_swipes_by_seen_swipers": shares,
        "threshold": AUTO_MIN_SEEN,
        "reason": reason,
    }


def _time_parts(table: pa.Table, ratios: tuple[float, float, float]) -> np.ndarray:
    """(n,) split index (0 train, 1 validation, 2 test) of each row of the time-sorted table."""
    n = table.num_rows
    ts = pc.cast(table.column("occurred_at"), pa.int64()).to_numpy()  # microseconds, ascending
    cut_values = [int(ts[min(n - 1, int(np.floor(q * n)))]) for q in (ratios[0], ratios[0] + ratios[1])]
    return (ts >= cut_values[0]).astype(np.int8) + (ts >= cut_values[1]).astype(np.int8)


def _per_user_parts(users: np.ndarray, ratios: tuple[float, float, float]) -> np.ndarray:
    """(n,) split index of each row (time-sorted) cut per swiper: each one's latest swipes test."""
    order = np.argsort(users, kind="stable")  # by user, time order kept within each
    _, starts, sizes = np.unique(users[order], return_index=True, return_counts=True)
    rank = np.arange(users.size) - np.repeat(starts, sizes)  # position within the user's swipes
    size = np.repeat(sizes, sizes)
    n_test = np.floor(size * ratios[2] + 0.5)
    n_val = np.floor(size * ratios[1] + 0.5)
    part_sorted = np.where(rank >= size - n_test, 2, np.where(rank >= size - n_test - n_val, 1, 0))
    part_sorted[size < MIN_PER_USER_SWIPES] = 0
    part = np.empty(users.size, dtype=np.int8)
    part[order] = part_sorted
    return part


def _seen_share(users: np.ndarray, part: np.ndarray) -> float:
    """Share of held-out rows whose swiper has a train row."""
    held = part > 0
    if not held.any():
        return 1.0
    return float(np.isin(users[held], users[part == 0]).mean())


def _write_parts(table: pa.Table, part: np.ndarray, output: Path) -> tuple[dict[str, int], dict[str, Any]]:
    counts: dict[str, int] = {}
    ranges: dict[str, Any] = {}
    for i, name in enumerate(SPLITS):
        rows = table.filter(pa.array(part == i))
        pq.write_table(rows, output / f"{name}.parquet")
        counts[name] = rows.num_rows
        times = rows.column("occurred_at")
        ranges[name] = {
            "start": _iso(pc.min(times).as_py()) if rows.num_rows else None,
            "end": _iso(pc.max(times).as_py()) if rows.num_rows else None,
        }
    return counts, ranges
