"""Tests for recommender.ml.structured."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from recommender.ml.structured import (
    ATTR_INDEX,
    CandidateBatch,
    ProfileFeatures,
    StructuredWeights,
    attribute_code,
    hard_filter_mask,
    haversine_km,
    structured_match,
    structured_scores,
)

PARIS = (48.8566, 2.3522)
LONDON = (51.5074, -0.1278)


def profile(**overrides: object) -> ProfileFeatures:
    base = ProfileFeatures(
        age=30,
        gender="woman",
        seeking=("man",),
        age_min=25,
        age_max=35,
        max_distance_km=50.0,
        lat=PARIS[0],
        lon=PARIS[1],
        interests=frozenset({"hiking", "jazz"}),
        attributes={"drinks": "socially", "smokes": "no", "diet": "vegetarian"},
    )
    return replace(base, **overrides)


USER = profile()
MATCH = profile(gender="man", seeking=("woman",), age=30, lat=PARIS[0] + 0.05)


def test_haversine_paris_london_and_vectorised() -> None:
    assert haversine_km(*PARIS, *LONDON) == pytest.approx(343.5, abs=1.0)
    d = haversine_km(PARIS[0], PARIS[1], np.array([PARIS[0], LONDON[0]]), np.array([PARIS[1], LONDON[1]]))
    assert d.shape == (2,)
    assert d[0] == pytest.approx(0.0, abs=1e-9)


def test_hard_filter_requires_both_directions() -> None:
    cands = [
        MATCH,
        replace(MATCH, seeking=("man",)),  # does not seek the user's gender
        replace(MATCH, gender="nonbinary"),  # not sought by the user
        replace(MATCH, age=40),  # outside the user's range
        replace(MATCH, age_min=31),  # user is outside the candidate's range
        replace(MATCH, lat=PARIS[0] + 0.6),  # ~67 km: beyond the user's 50 km
        replace(MATCH, max_distance_km=2.0),  # ~5.6 km: beyond the candidate's 2 km
        replace(MATCH, seeking=("woman", "nonbinary"), age=25),  # edge of range is inside
    ]
    mask = hard_filter_mask(USER, CandidateBatch.from_features(cands))
    assert mask.dtype == bool
    assert mask.tolist() == [True, False, False, False, False, False, False, True]


def test_components_in_unit_range_and_weighted_mean() -> None:
    rng = np.random.default_rng(0)
    cands = [replace(MATCH, age=int(rng.integers(20, 40)), lat=PARIS[0] + float(rng.uniform(-1, 1))) for _ in range(50)]
    result = structured_scores(USER, CandidateBatch.from_features(cands))
    assert set(result.components) == {"age_fit", "distance", "interests", "lifestyle"}
    for comp in [*result.components.values(), result.score]:
        assert comp.shape == (50,)
        assert np.all((comp >= 0) & (comp <= 1))
    mean = np.mean(list(result.components.values()), axis=0)
    np.testing.assert_allclose(result.score, mean, atol=1e-6)


def test_age_fit_peaks_in_middle_and_zero_outside() -> None:
    ages = [30, 33, 35, 36]
    cands = CandidateBatch.from_features([replace(MATCH, age=a) for a in ages])
    fit = structured_scores(USER, cands).components["age_fit"]
    assert fit[0] == pytest.approx(1.0)
    assert fit[0] > fit[1] > fit[2] > 0
    assert fit[3] == 0.0


def test_distance_decays_to_zero_at_smaller_max() -> None:
    near = replace(MATCH, lat=USER.lat, lon=USER.lon)
    mid = replace(MATCH, max_distance_km=20.0)  # ~5.6 km of a 20 km limit
    far = replace(MATCH, lat=PARIS[0] + 0.6)
    comp = structured_scores(USER, CandidateBatch.from_features([near, mid, far])).components["distance"]
    assert comp[0] == pytest.approx(1.0)
    assert comp[1] == pytest.approx(1 - haversine_km(USER.lat, USER.lon, mid.lat, mid.lon) / 20.0)
    assert comp[2] == 0.0


def test_interest_jaccard() -> None:
    cands = [
        replace(MATCH, interests=frozenset({"hiking", "jazz"})),
        replace(MATCH, interests=frozenset({"hiking", "chess"})),
        replace(MATCH, interests=frozenset()),
    ]
    comp = structured_scores(USER, CandidateBatch.from_features(cands)).components["interests"]
    np.testing.assert_allclose(comp, [1.0, 1 / 3, 0.0], atol=1e-6)


def test_interest_jaccard_counts_user_tags_unknown_to_batch() -> None:
    user = replace(USER, interests=frozenset({"hiking", "opera"}))  # opera is in no candidate
    cands = CandidateBatch.from_features([replace(MATCH, interests=frozenset({"hiking"}))])
    assert structured_scores(user, cands).components["interests"][0] == pytest.approx(0.5)


def test_interest_bitset_spans_several_words() -> None:
    tags = [f"tag{i:03d}" for i in range(150)]  # 150 tags -> 3 uint64 words
    cands = [replace(MATCH, interests=frozenset(tags[i : i + 20])) for i in range(0, 130, 10)]
    user = replace(USER, interests=frozenset(tags[100:140]))
    comp = structured_scores(user, CandidateBatch.from_features(cands)).components["interests"]
    expected = [len(c.interests & user.interests) / len(c.interests | user.interests) for c in cands]
    np.testing.assert_allclose(comp, expected, atol=1e-6)


def test_lifestyle_ordinal_and_categorical() -> None:
    cands = [
        replace(MATCH, attributes={"drinks": "rarely", "smokes": "no", "diet": "Mostly vegetarian"}),
        replace(MATCH, attributes={"drinks": "very often", "smokes": "yes", "diet": "anything"}),
        replace(MATCH, attributes={"drinks": "often", "height": 180}),  # only drinks shared
        replace(MATCH, attributes={}),  # nothing shared: neutral
    ]
    comp = structured_scores(USER, CandidateBatch.from_features(cands)).components["lifestyle"]
    np.testing.assert_allclose(comp, [1.0, 0.0, 1.0, 0.5], atol=1e-6)


def test_attribute_codes() -> None:
    assert attribute_code("drinks", "socially") == 2
    assert attribute_code("drinks", "unheard of") == -1
    assert attribute_code("diet", "") == -1
    assert attribute_code("height", 172) == 172
    assert attribute_code("religion", "catholicism but not too serious about it") == attribute_code(
        "religion", "Catholicism"
    )
    batch = CandidateBatch.from_features([replace(MATCH, attributes={"job": None, "pets": "likes dogs"})])
    assert batch.attributes[0, ATTR_INDEX["job"]] == -1
    assert batch.attributes[0, ATTR_INDEX["pets"]] >= 0


def test_take_selects_rows_consistently() -> None:
    cands = [replace(MATCH, age=25 + i, interests=frozenset({f"t{i}", "jazz"})) for i in range(10)]
    batch = CandidateBatch.from_features(cands, ids=np.arange(100, 110))
    idx = np.array([7, 2, 5])
    sub = batch.take(idx)
    assert len(sub) == 3
    assert sub.ids.tolist() == [107, 102, 105]
    full = structured_scores(USER, batch)
    part = structured_scores(USER, sub)
    np.testing.assert_allclose(part.score, full.score[idx])
    mask_sub = batch.take(hard_filter_mask(USER, batch))
    assert len(mask_sub) == int(hard_filter_mask(USER, batch).sum())


def test_structured_match_matches_vector_form_and_is_symmetric() -> None:
    other = replace(MATCH, interests=frozenset({"jazz", "chess"}), age=33)
    score, comps = structured_match(USER, other)
    vec = structured_scores(USER, CandidateBatch.from_features([other]))
    assert score == pytest.approx(float(vec.score[0]))
    assert comps == pytest.approx({k: float(v[0]) for k, v in vec.components.items()})
    assert structured_match(other, USER)[0] == pytest.approx(score)


def test_weights() -> None:
    other = replace(MATCH, interests=frozenset({"chess"}))
    score, comps = structured_match(USER, other, StructuredWeights(age=0, distance=0, interests=1, lifestyle=0))
    assert score == pytest.approx(comps["interests"])
    with pytest.raises(ValueError):
        structured_match(USER, other, StructuredWeights(age=0, distance=0, interests=0, lifestyle=0))


def test_unknown_gender_rejected() -> None:
    with pytest.raises(ValueError, match="unknown gender"):
        CandidateBatch.from_features([replace(MATCH, gender="robot")])


def test_scoring_5000_candidates_stays_in_range() -> None:
    rng = np.random.default_rng(42)
    genders = ("woman", "man", "nonbinary")
    tags = [f"tag{i}" for i in range(200)]
    cands = [
        ProfileFeatures(
            age=int(rng.integers(18, 60)),
            gender=genders[int(rng.integers(3))],
            seeking=tuple(g for g in genders if rng.random() < 0.6) or ("man",),
            age_min=18,
            age_max=int(rng.integers(30, 70)),
            max_distance_km=float(rng.uniform(5, 200)),
            lat=PARIS[0] + float(rng.normal(0, 0.5)),
            lon=PARIS[1] + float(rng.normal(0, 0.5)),
            interests=frozenset(rng.choice(tags, size=8, replace=False).tolist()),
            attributes={"drinks": "socially", "smokes": "no", "religion": "atheism", "height": 170},
        )
        for _ in range(5000)
    ]
    batch = CandidateBatch.from_features(cands)
    # A large batch scores in range (its speed is measured in bench/, not in a unit test).
    mask = hard_filter_mask(USER, batch)
    result = structured_scores(USER, batch)
    assert mask.shape == result.score.shape == (5000,)
    assert np.all((result.score >= 0) & (result.score <= 1))


def test_profile_features_hashable() -> None:
    assert hash(USER) == hash(profile())


def test_age_fit_peaks_at_own_age_in_a_wide_range() -> None:
    """A 25-year-old accepting 18 to 60 fits a 26-year-old better than a 39-year-old (the middle
    of the range): the fit peaks at the judge's own age, not at the centre of the range."""
    user = profile(age=25, age_min=18, age_max=60)
    cands = CandidateBatch.from_features([replace(MATCH, age=a, age_min=18, age_max=120) for a in (26, 39, 55)])
    fit = structured_scores(user, cands).components["age_fit"]
    assert fit[0] > fit[1] > fit[2] > 0


def test_no_age_preference_is_neutral() -> None:
    """18 to 120 (the API's default, or null) states nothing: with neither side stating a range,
    age_fit is NaN and leaves the structured mean; one side's range alone counts by itself."""
    user = profile(age_min=18, age_max=120)
    open_ = [replace(MATCH, age=a, age_min=18, age_max=120) for a in (22, 30, 70)]
    result = structured_scores(user, CandidateBatch.from_features(open_))
    assert np.isnan(result.components["age_fit"]).all()
    others = np.mean([result.components[k] for k in ("distance", "interests", "lifestyle")], axis=0)
    np.testing.assert_allclose(result.score, others, atol=1e-6)
    ranged = replace(MATCH, age=30, age_min=25, age_max=35)
    one_sided = structured_scores(user, CandidateBatch.from_features([ranged])).components["age_fit"]
    assert one_sided[0] == pytest.approx(1.0)  # the user (30) is at the candidate's own age
