"""Reading the import commands' files: CSV (optionally gzipped) or Parquet, in chunks of rows.

Every row comes with where it is in the file, so an error report can name it: ``line N`` in a CSV
(the header is line 1; a quoted cell spanning lines counts its last line), ``row N`` in a Parquet
file (1 for the first row). Empty CSV cells and Parquet nulls are absent values (``None``).

A column the command does not know is refused before any row is read: a misspelt column must
not be silently ignored.
"""

from __future__ import annotations

import csv
import gzip
import io
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

FORMATS: tuple[str, ...] = ("csv", "parquet")


class TabularError(Exception):
    """The file cannot be read as a whole (format, header): nothing of it is imported."""


@dataclass(frozen=True)
class Row:
    where: str  # "line 12" or "row 11"
    values: dict[str, Any]
    problem: str | None = None  # the row cannot be read (a CSV line with too few or many cells)


def detect_format(path: Path, given: str | None) -> str:
    if given:
        return given
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".parquet", ".pq"):
        return "parquet"
    if ".csv" in suffixes:
        return "csv"
    raise TabularError(f"Cannot tell the format of {path.name} from its name: pass --format csv or parquet.")


def check_columns(columns: Sequence[str], *, allowed: Sequence[str], required: Sequence[str]) -> None:
    unknown = [c for c in columns if c not in allowed]
    if unknown:
        raise TabularError(f"Unknown columns: {', '.join(unknown)}; allowed: {', '.join(allowed)}.")
    missing = [c for c in required if c not in columns]
    if missing:
        raise TabularError(f"Missing required columns: {', '.join(missing)}.")
    repeated = sorted({c for c in columns if list(columns).count(c) > 1})
    if repeated:
        raise TabularError(f"Columns given twice: {', '.join(repeated)}.")


def _open_text(path: Path) -> IO[str]:
    if path.suffix.lower() == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")  # the caller closes it (with)


def count_rows(path: Path, fmt: str) -> int:
    """Data rows in the file, for progress bars (a CSV is read once, quickly, by the C parser)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq  # only the Parquet path needs pyarrow

        return int(pq.ParquetFile(path).metadata.num_rows)
    with _open_text(path) as handle:
        return max(sum(1 for _ in csv.reader(handle)) - 1, 0)


def read_chunks(
    path: Path, *, fmt: str, batch_size: int, allowed: Sequence[str], required: Sequence[str]
) -> Iterator[list[Row]]:
    """The file's rows in lists of at most ``batch_size``, after checking its columns."""
    if fmt == "parquet":
        yield from _parquet_chunks(path, batch_size=batch_size, allowed=allowed, required=required)
    elif fmt == "csv":
        yield from _csv_chunks(path, batch_size=batch_size, allowed=allowed, required=required)
    else:
        raise TabularError(f"Unknown format {fmt!r}; use one of {', '.join(FORMATS)}.")


def _csv_chunks(path: Path, *, batch_size: int, allowed: Sequence[str], required: Sequence[str]) -> Iterator[list[Row]]:
    with _open_text(path) as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise TabularError(f"{path.name} is empty: expected a header line.")
        header = [h.strip() for h in header]
        check_columns(header, allowed=allowed, required=required)
        chunk: list[Row] = []
        for cells in reader:
            if not any(cells):
                continue  # a blank line
            where = f"line {reader.line_num}"
            if len(cells) != len(header):
                problem = f"{len(cells)} cells, expected {len(header)} (one per column)."
                chunk.append(Row(where=where, values={}, problem=problem))
            else:
                values = {name: (cell if cell != "" else None) for name, cell in zip(header, cells, strict=True)}
                chunk.append(Row(where=where, values=values))
            if len(chunk) >= batch_size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def _parquet_chunks(
    path: Path, *, batch_size: int, allowed: Sequence[str], required: Sequence[str]
) -> Iterator[list[Row]]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise TabularError(f"{path.name} is not a readable Parquet file: {exc}") from exc
    check_columns(parquet.schema_arrow.names, allowed=allowed, required=required)
    number = 0
    for batch in parquet.iter_batches(batch_size=batch_size):
        chunk: list[Row] = []
        for values in batch.to_pylist():
            number += 1
            chunk.append(Row(where=f"row {number}", values=values))
        yield chunk


def uuid_cell(value: Any) -> str | None:
    """A UUID cell as text: Parquet may hold UUIDs as 16 raw bytes."""
    if isinstance(value, bytes | bytearray) and len(value) == 16:
        return str(uuid.UUID(bytes=bytes(value)))
    return None if value is None else str(value)


def flatten_errors(errors: Any, prefix: str = "") -> list[tuple[str, str]]:
    """``{"attributes": {"height": ["..."]}}`` -> ``[("attributes.height", "...")]``."""
    if isinstance(errors, dict):
        out: list[tuple[str, str]] = []
        for key, value in errors.items():
            name = str(key) if key != "non_field_errors" else ""
            out += flatten_errors(value, f"{prefix}.{name}" if prefix and name else prefix or name)
        return out
    if isinstance(errors, list | tuple):
        if all(not isinstance(e, dict | list | tuple) for e in errors):
            return [(prefix or "row", str(e)) for e in errors]
        return [pair for e in errors for pair in flatten_errors(e, prefix)]
    return [(prefix or "row", str(errors))]
