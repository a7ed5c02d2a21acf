"""Readers for the OkCupid profile data set (Kim & Escobedo-Land, 2015; revised 2021).

Two layouts are supported by :func:`read_okcupid`:

* the original pair shipped by the authors (the ``--full`` path, 59,946 rows):
  ``profiles_revised.csv.zip`` plus ``essay0_revised_and_shuffled.csv.gz``. The essays were
  row-shuffled by the authors to break re-identification, so essay *i* is NOT the essay of
  profile *i*. We pair them row-wise only to give each simulated profile a plausible bio; never
  try to re-link them.
* the vendored demo sample ``recommender/demo/data/okcupid_sample.csv.gz`` (3,000 rows, see its
  README) which already carries an ``essay0`` column.

Cleaning applied to every value: surrounding whitespace is stripped, HTML entities are unescaped
(the source writes ``doesn&rsquo;t``), and ``''``, ``'nan'``, ``'NA'`` become ``None``. Income
``-1`` ("rather not say") becomes ``None``. Height is converted from inches to whole centimetres;
heights outside 4 ft..8 ft (a handful of typos such as 1 or 95 inches) become ``None``.

Licence of the data: CC0 (see ``recommender/demo/data/README.md`` for attribution).
This module imports nothing outside the standard library.
"""

from __future__ import annotations

import csv
import gzip
import html
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

PROFILE_COLUMNS: tuple[str, ...] = (
    "age",
    "body_type",
    "diet",
    "drinks",
    "drugs",
    "education",
    "ethnicity",
    "height",
    "income",
    "job",
    "offspring",
    "orientation",
    "pets",
    "religion",
    "sex",
    "sign",
    "smokes",
    "speaks",
    "status",
)
ESSAY_COLUMN = "essay0"
SAMPLE_COLUMNS: tuple[str, ...] = (*PROFILE_COLUMNS, ESSAY_COLUMN)

PROFILES_FILE = "profiles_revised.csv.zip"
ESSAYS_FILE = "essay0_revised_and_shuffled.csv.gz"

_MISSING = frozenset({"", "nan", "NaN", "NA", "None", "null"})
_CM_PER_INCH = 2.54
# 4 ft .. 8 ft: anything outside is a typo in the source (1 in, 95 in), not a person.
_MIN_HEIGHT_IN, _MAX_HEIGHT_IN = 48, 96


@dataclass(frozen=True, slots=True)
class OkcRow:
    """One cleaned OkCupid profile (plus the essay paired with it). ``None`` means missing."""

    age: int | None
    body_type: str | None
    diet: str | None
    drinks: str | None
    drugs: str | None
    education: str | None
    ethnicity: str | None
    height_cm: int | None
    income: int | None
    job: str | None
    offspring: str | None
    orientation: str | None
    pets: str | None
    religion: str | None
    sex: str | None
    sign: str | None
    smokes: str | None
    speaks: str | None
    status: str | None
    essay0: str | None = None


def sample_path() -> Path:
    """Path of the vendored 3,000-profile demo sample (CSV, gzip)."""
    return Path(__file__).resolve().parents[1] / "demo" / "data" / "okcupid_sample.csv.gz"


def source_paths(source_dir: str | Path) -> tuple[Path, Path]:
    """(profiles zip, essays gz) inside a folder laid out like the authors' release."""
    folder = Path(source_dir)
    return folder / PROFILES_FILE, folder / ESSAYS_FILE


def clean_text(value: str | None) -> str | None:
    """Strip, unescape HTML entities and map the source's missing markers to ``None``."""
    if value is None:
        return None
    text = html.unescape(value.strip())
    return None if text in _MISSING else text


def _to_int(value: str | None) -> int | None:
    text = clean_text(value)
    if text is None:
        return None
    try:
        return int(float(text))
    except ValueError:
        return None


def height_inches_to_cm(value: str | None) -> int | None:
    """Inches (as written in the source) to whole cm; implausible values become ``None``."""
    inches = _to_int(value)
    if inches is None or not _MIN_HEIGHT_IN <= inches <= _MAX_HEIGHT_IN:
        return None
    return round(inches * _CM_PER_INCH)


def row_from_record(record: dict[str, str], essay: str | None = None) -> OkcRow:
    """Build an :class:`OkcRow` from one raw CSV record (original column names)."""
    income = _to_int(record.get("income"))
    text = {col: clean_text(record.get(col)) for col in PROFILE_COLUMNS}
    return OkcRow(
        age=_to_int(record.get("age")),
        body_type=text["body_type"],
        diet=text["diet"],
        drinks=text["drinks"],
        drugs=text["drugs"],
        education=text["education"],
        ethnicity=text["ethnicity"],
        height_cm=height_inches_to_cm(record.get("height")),
        income=None if income is None or income < 0 else income,
        job=text["job"],
        offspring=text["offspring"],
        orientation=text["orientation"],
        pets=text["pets"],
        religion=text["religion"],
        sex=text["sex"],
        sign=text["sign"],
        smokes=text["smokes"],
        speaks=text["speaks"],
        status=text["status"],
        essay0=clean_text(essay if essay is not None else record.get(ESSAY_COLUMN)),
    )


def _open_text(path: Path) -> io.TextIOBase:
    """Open a CSV that may be plain, gzip-compressed, or the single member of a zip."""
    if path.suffix == ".zip":
        archive = zipfile.ZipFile(path)
        members = [n for n in archive.namelist() if n.endswith(".csv")]
        if not members:
            raise ValueError(f"{path} holds no .csv member")
        return io.TextIOWrapper(archive.open(members[0]), encoding="utf-8", newline="")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return path.open("r", encoding="utf-8", newline="")


def iter_raw_records(path: str | Path) -> Iterator[dict[str, str]]:
    """Raw, uncleaned CSV records of ``path`` (plain, .gz or .zip)."""
    with _open_text(Path(path)) as handle:
        yield from csv.DictReader(handle)


def read_okcupid(
    profiles_path: str | Path,
    essays_path: str | Path | None = None,
    limit: int | None = None,
) -> list[OkcRow]:
    """Read OkCupid rows.

    ``profiles_path`` is either the authors' ``profiles_revised.csv.zip`` (then pass the shuffled
    essays file as ``essays_path`` to pair essay *i* with profile *i*) or the vendored sample CSV,
    whose ``essay0`` column is used when ``essays_path`` is ``None``. ``limit`` keeps the first
    rows only.
    """
    records = islice(iter_raw_records(profiles_path), limit)
    if essays_path is None:
        return [row_from_record(rec) for rec in records]
    essays = (rec.get(ESSAY_COLUMN) or "" for rec in iter_raw_records(essays_path))
    # A profile without a paired essay (shorter essay file) simply gets no bio.
    return [row_from_record(rec, next(essays, "")) for rec in records]


def load_sample(limit: int | None = None) -> list[OkcRow]:
    """The vendored demo sample as cleaned rows."""
    return read_okcupid(sample_path(), limit=limit)
