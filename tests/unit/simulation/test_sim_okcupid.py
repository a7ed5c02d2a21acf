"""The vendored OkCupid sample, its attribution, and the readers."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from recommender.demo import make_sample
from recommender.simulation import OkcRow, read_okcupid, sample_path
from recommender.simulation.okcupid import clean_text, height_inches_to_cm, source_paths

SOURCE = Path(__file__).resolve().parents[4] / "shared" / "datasets" / "okcupid"  # beside the checkout
needs_source = pytest.mark.skipif(
    not all(p.exists() for p in source_paths(SOURCE)), reason="shared OkCupid files not present"
)


def test_sample_loads_3000_rows_with_bios(sample_rows: list[OkcRow]) -> None:
    assert len(sample_rows) == 3000
    with_bio = sum(1 for r in sample_rows if r.essay0)
    # ~9 % of the authors' essays are empty; the rest must be there.
    assert with_bio > 0.85 * len(sample_rows)
    assert all(len(r.essay0) <= 140 for r in sample_rows if r.essay0)
    assert {r.sex for r in sample_rows} == {"m", "f"}
    assert {r.orientation for r in sample_rows} == {"straight", "gay", "bisexual"}


def test_sample_values_are_cleaned(sample_rows: list[OkcRow]) -> None:
    heights = [r.height_cm for r in sample_rows if r.height_cm is not None]
    assert 140 < sum(heights) / len(heights) < 190  # cm, not inches
    assert all(122 <= h <= 244 for h in heights)
    texts = [r.offspring for r in sample_rows] + [r.essay0 for r in sample_rows]
    assert not any("&rsquo;" in t or "&amp;" in t for t in texts if t)
    assert all(r.income is None or r.income > 0 for r in sample_rows)
    assert all(r.diet != "" for r in sample_rows)


def test_attribution_readme_exists() -> None:
    readme = sample_path().parent / "README.md"
    text = readme.read_text(encoding="utf-8")
    for needle in ("CC0", "Kim", "Escobedo-Land", "c038fb19", "9af98827", "--seed 7", "shuffled"):
        assert needle in text, needle


def test_clean_text_and_height() -> None:
    assert clean_text("") is None
    assert clean_text(" nan ") is None
    assert clean_text("doesn&rsquo;t want kids") == "doesn’t want kids"
    assert height_inches_to_cm("70") == 178
    assert height_inches_to_cm("NA") is None
    assert height_inches_to_cm("1") is None


@needs_source
def test_full_release_reads_all_rows() -> None:
    profiles, essays = source_paths(SOURCE)
    rows = read_okcupid(profiles, essays)
    assert len(rows) == 59_946
    assert sum(1 for r in rows if r.essay0) > 50_000


@needs_source
def test_make_sample_reproduces_vendored_file(tmp_path: Path) -> None:
    out = tmp_path / "sample.csv.gz"
    make_sample.main(["--source", str(SOURCE), "--n", "3000", "--seed", "7", "--out", str(out)])
    assert out.read_bytes() == sample_path().read_bytes()
    with gzip.open(out, "rt", encoding="utf-8") as handle:
        assert handle.readline().strip().endswith(",status,essay0")
