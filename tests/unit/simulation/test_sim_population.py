"""SimProfile derivation: valid fields, determinism, documented skews, synthetic rows."""

from __future__ import annotations

import uuid
from collections import Counter

from recommender.simulation import (
    BAY_AREA_BOX,
    GENDERS,
    HOBBIES,
    OkcRow,
    SimProfile,
    build_population,
    synthetic_rows,
)
from recommender.simulation.population import ATTRIBUTE_KEYS


def test_population_fields_are_valid(population: list[SimProfile]) -> None:
    lat_min, lat_max, lon_min, lon_max = BAY_AREA_BOX
    for p in population:
        assert uuid.UUID(p.external_id)
        assert 18 <= p.age_min <= p.age <= p.age_max <= 120
        assert p.gender in GENDERS
        assert p.seeking and set(p.seeking) <= set(GENDERS)
        assert 10 <= p.max_distance_km <= 80
        assert lat_min <= p.lat <= lat_max and lon_min <= p.lon <= lon_max
        assert isinstance(p.bio, str)
        assert len(p.prompts) <= 3
        assert all(set(q) == {"question", "answer"} and q["answer"] for q in p.prompts)
        assert p.interests and all(isinstance(tag, str) and tag for tag in p.interests)
        assert len(set(p.interests)) == len(p.interests)
        assert tuple(p.attributes) == ATTRIBUTE_KEYS
        assert p.attributes["height"] is None or isinstance(p.attributes["height"], int)
        assert p.status == "active"
    assert len({p.external_id for p in population}) == len(population)


def test_population_is_deterministic(sample_rows: list[OkcRow], population: list[SimProfile]) -> None:
    assert build_population(sample_rows[:200], seed=7) == population[:200]
    other = build_population(sample_rows[:200], seed=8)
    assert other[0].external_id != population[0].external_id


def test_gender_and_seeking_follow_the_rows(sample_rows: list[OkcRow], population: list[SimProfile]) -> None:
    counts = Counter(p.gender for p in population)
    assert 0.005 < counts["nonbinary"] / len(population) < 0.04
    for row, p in zip(sample_rows, population, strict=True):
        if p.gender == "nonbinary":
            assert "nonbinary" in p.seeking
            continue
        assert p.gender == {"m": "man", "f": "woman"}[row.sex]
        if row.orientation == "straight":
            assert p.seeking == ["woman" if p.gender == "man" else "man"]
        elif row.orientation == "gay":
            assert p.seeking == [p.gender]
        else:
            assert set(p.seeking) == set(GENDERS)


def test_age_bands_are_skewed_by_gender(population: list[SimProfile]) -> None:
    def mean_offsets(gender: str) -> tuple[float, float]:
        group = [p for p in population if p.gender == gender and p.age >= 30]
        below = sum(p.age - p.age_min for p in group) / len(group)
        above = sum(p.age_max - p.age for p in group) / len(group)
        return below, above

    men_below, men_above = mean_offsets("man")
    women_below, women_above = mean_offsets("woman")
    assert men_below > men_above  # men search younger
    assert women_above > women_below  # women search older
    assert men_below > women_below


def test_locations_cluster_in_cities(population: list[SimProfile]) -> None:
    in_sf = sum(1 for p in population if 37.70 < p.lat < 37.83 and -122.52 < p.lon < -122.35)
    assert 0.2 < in_sf / len(population) < 0.6


def test_interests_overlap(population: list[SimProfile]) -> None:
    counts = Counter(tag for p in population for tag in p.interests)
    top_hobby = max(HOBBIES, key=lambda h: counts[h])
    assert counts[top_hobby] > 0.1 * len(population)
    assert counts["dogs"] > 0.3 * len(population)  # most OkCupid users like dogs
    assert len(counts) > 80


def test_synthetic_rows_are_faithful(sample_rows: list[OkcRow]) -> None:
    rows = synthetic_rows(100_000, seed=1, source=sample_rows)
    assert len(rows) == 100_000
    men_source = sum(r.sex == "m" for r in sample_rows) / len(sample_rows)
    men_synth = sum(r.sex == "m" for r in rows) / len(rows)
    assert abs(men_source - men_synth) < 0.02
    assert all(r.age is None or 18 <= r.age <= 120 for r in rows)
    again = synthetic_rows(50, seed=1, source=sample_rows)
    assert again == synthetic_rows(50, seed=1, source=sample_rows)
    assert again != synthetic_rows(50, seed=2, source=sample_rows)
    assert build_population(rows[:100], seed=3)[0].gender in GENDERS
