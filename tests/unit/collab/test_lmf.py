"""The logistic model of P(like | shown) (``lmf``): what the reciprocal feed takes from it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from collab_planted import Planted

from recommender.ml.collab import (
    IdMap,
    LMFConfig,
    LogisticMF,
    interactions_from_events,
    load_recommender,
    validation_like_auc,
)
from recommender.ml.collab.pairs import PAIR_FEATURES, PairRecords, pair_profile_matrix
from recommender.ml.structured import ProfileFeatures

FAST = LMFConfig(seed=3, factors=8, epochs=30, batch_size=256, learning_rate=0.05, threads=1)


def selective_swipes(seed: int = 0, n: int = 80) -> tuple[object, np.ndarray, np.ndarray]:
    """Everyone swipes on 40 random others; profile i likes with its own rate ``rate[i]`` times
    the candidate's appeal: a known selectivity and appeal per profile."""
    rng = np.random.default_rng(seed)
    rate = rng.uniform(0.05, 0.9, size=n)
    appeal = rng.uniform(0.3, 1.0, size=n)
    data = swipes_on_40(rng, n, lambda u, cands: rate[u] * appeal[cands])
    return data, rate, appeal


def swipes_on_40(rng: np.random.Generator, n: int, p_like: Callable[[int, np.ndarray], np.ndarray]) -> object:
    """Each of ``n`` profiles swipes on 40 random others, liking each with ``p_like(u, cands)``
    (like 1, pass -0.5): Interactions on the shared ids 0..n-1."""
    users, items, weights = [], [], []
    for u in range(n):
        cands = rng.choice(np.delete(np.arange(n), u), size=40, replace=False)
        liked = rng.random(40) < p_like(u, cands)
        users += [u] * 40
        items += cands.tolist()
        weights += np.where(liked, 1.0, -0.5).tolist()
    return interactions_from_events(np.asarray(users), np.asarray(items), np.asarray(weights),
                                    user_map=IdMap(np.arange(n)), shared=True)  # fmt: skip


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = a.argsort().argsort(), b.argsort().argsort()
    return float(np.corrcoef(ra, rb)[0, 1])


def test_biases_recover_selectivity_and_appeal() -> None:
    data, rate, appeal = selective_swipes()
    model = LogisticMF(FAST)
    model.fit(data)  # type: ignore[arg-type]
    assert _spearman(model.user_bias.numpy(), rate) > 0.8  # who likes easily
    assert _spearman(model.bias.numpy(), appeal) > 0.5  # who gets liked


def test_pair_logits_give_both_directions_and_cold_profiles() -> None:
    data, rate, _ = selective_swipes()
    model = LogisticMF(FAST)
    model.fit(data)  # type: ignore[arg-type]
    easy, picky = int(rate.argmax()), int(rate.argmin())
    target = np.array([0, 0])
    # P(v likes u) for two candidates v: the easy-going one is far likelier to like back
    p_back = model.pair_logits(np.array([easy, picky]), target)
    assert p_back[0] > p_back[1] + 1.0
    # an unseen profile (-1) has average selectivity and appeal: finite, between the extremes
    cold = model.pair_logits(np.array([-1]), np.array([0]))[0]
    assert p_back[1] < cold < p_back[0]
    assert np.isfinite(model.pair_logits(np.array([easy]), np.array([-1]))).all()


def test_like_auc_validation_drives_early_stopping(planted: Planted) -> None:
    validate = validation_like_auc(planted.heldout)
    model = LogisticMF(FAST)
    model.fit(planted.train, validate=validate)
    best = max(r.validation or 0.0 for r in model.history)
    assert validate(model) == best > 0.6  # the best epoch's weights are the ones kept
    # a model scoring at random sits at chance on the same validation
    noise = LogisticMF(FAST)
    noise.fit(planted.train)
    noise.user_bias.zero_()
    noise.bias.zero_()
    noise.taste.copy_(torch.randn(noise.taste.shape, generator=torch.Generator().manual_seed(0)))
    assert abs(validate(noise) - 0.5) < 0.1


# --- pair features and group priors -------------------------------------------------------------

RELIGIONS = ("christianity", "atheism", "judaism", "buddhism")


def attribute_swipes(seed: int = 0, n: int = 120) -> tuple[object, np.ndarray, list[ProfileFeatures]]:
    """Everyone swipes on 40 random others; a like is far likelier when both share a religion,
    and women (even rows) like far less often than men: a pair effect and a group effect that
    per-profile parameters alone cannot carry to pairs or profiles never seen together."""
    rng = np.random.default_rng(seed)
    religion = rng.integers(0, len(RELIGIONS), size=n)
    profiles = [
        ProfileFeatures(
            age=int(rng.integers(25, 40)),
            gender="woman" if i % 2 == 0 else "man",
            seeking=("man", "woman"),
            age_min=18,
            age_max=60,
            max_distance_km=100.0,
            lat=37.7 + rng.normal(0, 0.05),
            lon=-122.4 + rng.normal(0, 0.05),
            interests=frozenset({"hiking"} if i % 3 else {"chess"}),
            attributes={"religion": f"{RELIGIONS[religion[i]]} but not too serious about it"},
        )
        for i in range(n)
    ]
    base = np.where(np.arange(n) % 2 == 0, -2.0, 0.0)  # women are selective
    data = swipes_on_40(
        rng, n, lambda u, cands: 1 / (1 + np.exp(-(base[u] + np.where(religion[cands] == religion[u], 1.5, -1.0))))
    )
    return data, religion, profiles


def test_pair_records_compare_coarsened_values_and_interests() -> None:
    def profile(education: str, interests: set[str], lat: float, age: int = 30) -> ProfileFeatures:
        return ProfileFeatures(age=age, gender="man", seeking=("woman",), age_min=18, age_max=60,
                               max_distance_km=50.0, lat=lat, lon=-122.4, interests=frozenset(interests),
                               attributes={"education": education, "smokes": "sometimes"})  # fmt: skip

    records = PairRecords.from_matrix(
        pair_profile_matrix(
            [
                profile("graduated from college/university", {"hiking", "jazz"}, 37.7),
                profile("working on college/university", {"hiking"}, 37.8, age=40),
                profile("graduated from masters program", set(), 37.7),
            ]
        )
    )
    x = dict(zip(PAIR_FEATURES, records.pairs(np.array([0]), np.array([1]))[0], strict=True))
    assert x["same_education"] == 1.0  # "graduated from" and "working on" the same level
    assert x["same_smokes"] == 1.0 and x["same_religion"] == 0.0  # missing never counts as the same
    assert x["interest_overlap"] == pytest.approx(1 / np.sqrt(2))
    assert x["distance_10km"] == pytest.approx(1.11, abs=0.02)  # 0.1 degree of latitude
    assert x["age_diff_10y"] == pytest.approx(1.0) and x["age_gap_10y"] == pytest.approx(1.0)
    assert records.pairs(np.array([0]), np.array([2]))[0][PAIR_FEATURES.index("same_education")] == 0.0
    assert not records.pairs(np.array([-1, 0]), np.array([1, -1])).any()  # unknown profiles: no features
    assert np.allclose(records.against_all(0), records.pairs(np.zeros(3, dtype=np.int64), np.arange(3)))


def test_pair_features_and_priors_learn_what_biases_cannot() -> None:
    data, _, profiles = attribute_swipes()
    train, heldout = _split(data, seed=1)
    records = pair_profile_matrix(profiles)
    plain = LogisticMF(replace(FAST, pair_features=False, profile_priors=False))
    plain.fit(train)  # type: ignore[arg-type]
    paired = LogisticMF(FAST)
    paired.fit(train.with_features(records))  # type: ignore[attr-defined]
    coefficients = paired.pair_coefficients()
    assert coefficients["same_religion"] > 1.0  # planted: +1.5 against -1.0
    assert coefficients["swiper_gender_woman"] < coefficients["swiper_gender_man"] - 1.0
    validate = validation_like_auc(heldout)
    assert validate(paired) > validate(plain) + 0.05
    # a woman the model knows no swipes of is read as selective as women are, not as average
    paired_cold = _without_swipes_of(paired, woman=0, man=1)
    assert paired_cold[0] < paired_cold[1] - 1.0


def test_logits_for_user_agree_with_pair_logits_and_survive_a_checkpoint(tmp_path: Path) -> None:
    data, _, profiles = attribute_swipes()
    model = LogisticMF(FAST)
    model.fit(data.with_features(pair_profile_matrix(profiles)))  # type: ignore[attr-defined]
    n = model.n_items
    for row in (0, 7, -1):
        uv, vu = model.logits_for_user(row)
        user = np.full(n, row)
        assert np.allclose(uv, model.pair_logits(user, np.arange(n)), atol=1e-5)
        assert np.allclose(vu, model.pair_logits(np.arange(n), user), atol=1e-5)
        # the feed scores only the columns its pre-filter passes: the same numbers, fewer of them
        cols = np.random.default_rng(row + 2).choice(n, size=n // 3, replace=False)
        uv_cols, vu_cols = model.logits_for_user(row, cols)
        assert np.allclose(uv_cols, uv[cols]) and np.allclose(vu_cols, vu[cols])
    loaded = load_recommender(model.save(tmp_path / "lmf.pt"))
    assert isinstance(loaded, LogisticMF) and loaded.config == model.config  # config travels in the checkpoint
    assert loaded.pair_coefficients() == model.pair_coefficients()
    users, items = np.arange(n), np.roll(np.arange(n), 5)
    assert np.allclose(loaded.pair_logits(users, items), model.pair_logits(users, items))
    assert np.allclose(loaded.logits_for_user(3)[1], model.logits_for_user(3)[1])
    assert np.allclose(loaded.like_probability(users, items), model.like_probability(users, items))


def test_records_of_another_layout_are_refused() -> None:
    data, _, _ = attribute_swipes(n=60)
    with pytest.raises(ValueError, match="pair records"):
        LogisticMF(FAST).fit(data.with_features(np.zeros((60, 7), dtype=np.float32)))  # type: ignore[attr-defined]
    # without records (or with pair_features and profile_priors off) the model is the plain one
    model = LogisticMF(replace(FAST, pair_features=False, profile_priors=False))
    model.fit(data.with_features(np.zeros((60, 7), dtype=np.float32)))  # type: ignore[attr-defined]
    assert model.pair_coefficients() == {}


def _split(data: object, seed: int) -> tuple[object, object]:
    """Swipes split 80/20 at random, over the same id map."""
    coo = data.matrix.tocoo()  # type: ignore[attr-defined]
    held = np.random.default_rng(seed).random(coo.nnz) < 0.2
    ids = data.users  # type: ignore[attr-defined]

    def part(mask: np.ndarray) -> object:
        return interactions_from_events(coo.row[mask], coo.col[mask], coo.data[mask], user_map=ids, shared=True)

    return part(~held), part(held)


def _without_swipes_of(model: LogisticMF, woman: int, man: int) -> np.ndarray:
    """P(v likes a fixed profile) in log-odds for v = a woman and a man whose own swipes are
    zeroed out of the model (selectivity deviation and taste at zero: only the group prior)."""
    with torch.no_grad():
        for row in (woman, man):
            model.user_bias[row] = 0.0
            model.taste[row] = 0.0
    model._arrays = None
    target = 5  # an odd row: a man, liked by both
    return model.pair_logits(np.array([woman, man]), np.array([target, target]))
