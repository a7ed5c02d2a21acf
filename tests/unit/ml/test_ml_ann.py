"""Tests for recommender.ml.ann."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from recommender.ml.ann import (
    AnnConfig,
    AnnIndex,
    AnnIndexLoadError,
    AnnIndexNotFound,
    exact_search,
    recall_at_k,
)

D = 64
N = 5000
CFG = AnnConfig(dim=D)


def unit_vectors(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, D)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)  # (n, D)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    ids = np.arange(1_000, 1_000 + N, dtype=np.int64)  # like database primary keys
    return ids, unit_vectors(N, seed=0)


@pytest.fixture(scope="module")
def built(data: tuple[np.ndarray, np.ndarray]) -> AnnIndex:
    ids, vecs = data
    return AnnIndex.build(ids, vecs, CFG)


@pytest.fixture
def small() -> AnnIndex:
    return AnnIndex.build(np.arange(50), unit_vectors(50, seed=1), CFG)


def recall_for(cfg: AnnConfig, data: tuple[np.ndarray, np.ndarray]) -> float:
    ids, vecs = data
    queries = unit_vectors(200, seed=123)
    approx, sims = AnnIndex.build(ids, vecs, cfg).query(queries, k=10)
    assert approx.shape == sims.shape == (200, 10)
    assert approx.dtype == np.int64
    assert sims.dtype == np.float32
    assert np.all(np.diff(sims, axis=1) <= 1e-6)  # sorted, most similar first
    return recall_at_k(approx, exact_search(vecs, ids, queries, k=10))


def test_recall_at_10(data: tuple[np.ndarray, np.ndarray]) -> None:
    # Isotropic random 64-d vectors are a worst case for HNSW (real embeddings have
    # a much lower intrinsic dimension), so the default ef_search=64 is reported
    # but only ef_search=128 is held to 0.95.
    default = recall_for(CFG, data)
    wider = recall_for(replace(CFG, ef_search=128), data)
    print(f"\nHNSW recall@10, {N} random unit vectors, d={D}, M=16: ef=64 {default:.4f}, ef=128 {wider:.4f}")
    assert default >= 0.85
    assert wider >= 0.95


def test_similarities_are_dot_products(built: AnnIndex, data: tuple[np.ndarray, np.ndarray]) -> None:
    ids, vecs = data
    got, sims = built.query(vecs[5], k=3)
    assert got[0, 0] == ids[5]
    assert sims[0, 0] == pytest.approx(1.0, abs=1e-5)
    rows = np.searchsorted(ids, got[0])
    np.testing.assert_allclose(sims[0], vecs[rows] @ vecs[5], atol=1e-5)


def test_len_and_fewer_results_than_k(small: AnnIndex) -> None:
    assert len(small) == 50
    got, sims = small.query(unit_vectors(2, seed=9), k=80)
    assert got.shape == sims.shape == (2, 50)
    assert sorted(got[0].tolist()) == list(range(50))


def test_deleted_never_returned(small: AnnIndex) -> None:
    deleted = set(range(0, 50, 2))
    small.mark_deleted([*deleted, 999_999])  # unknown ids are ignored
    small.mark_deleted([0])  # already deleted: ignored
    assert len(small) == 25
    got, _ = small.query(unit_vectors(20, seed=3), k=50)
    assert got.shape == (20, 25)
    assert not set(got.ravel().tolist()) & deleted


def test_exclude(small: AnnIndex) -> None:
    exclude = {1, 2, 3, 10, 20, 12345}
    got, _ = small.query(unit_vectors(5, seed=4), k=10, exclude=exclude)
    assert got.shape == (5, 10)
    assert not set(got.ravel().tolist()) & exclude
    got_all, _ = small.query(unit_vectors(1, seed=4), k=100, exclude=exclude)
    assert got_all.shape == (1, 45)


def test_exclude_keeps_order_of_remaining(small: AnnIndex) -> None:
    q = unit_vectors(1, seed=5)
    full, full_sims = small.query(q, k=50)
    top3 = set(full[0, :3].tolist())
    got, sims = small.query(q, k=5, exclude=top3)
    np.testing.assert_array_equal(got[0], full[0, 3:8])
    np.testing.assert_allclose(sims[0], full_sims[0, 3:8])


def test_upsert_replaces(small: AnnIndex) -> None:
    target = unit_vectors(1, seed=77)[0]
    small.add([7], target[None])
    assert len(small) == 50
    got, sims = small.query(target, k=1)
    assert got[0, 0] == 7
    assert sims[0, 0] == pytest.approx(1.0, abs=1e-5)
    # re-adding a deleted id brings it back with its new vector
    small.mark_deleted([7])
    assert 7 not in small
    small.add([7], -target[None])
    assert 7 in small and len(small) == 50
    got, _ = small.query(-target, k=1)
    assert got[0, 0] == 7


def test_capacity_grows(small: AnnIndex) -> None:
    more = unit_vectors(3000, seed=11)  # beyond the initial capacity of 1024
    small.add(np.arange(100, 3100), more)
    assert len(small) == 3050
    got, _ = small.query(more[2500], k=1)
    assert got[0, 0] == 2600


def test_compact_drops_deleted(small: AnnIndex) -> None:
    small.mark_deleted(range(10))
    q = unit_vectors(4, seed=8)
    before = small.query(q, k=5)
    compacted = small.compact()
    assert len(compacted) == 40
    assert compacted._index.get_current_count() == 40
    after = compacted.query(q, k=5)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_allclose(before[1], after[1], atol=1e-5)


def test_save_load_round_trip(built: AnnIndex, tmp_path: Path) -> None:
    target = tmp_path / "ann"
    built.save(target)
    assert sorted(p.name for p in target.iterdir()) == ["ids.npy", "index.bin", "meta.json", "vectors.npy"]
    meta = json.loads((target / "meta.json").read_text())
    assert meta["format_version"] == 1
    assert meta["live_count"] == N
    assert meta["config"]["dim"] == D
    assert meta["created_at"].endswith("+00:00")
    np.load(target / "ids.npy", allow_pickle=False)  # plain array, no pickle
    loaded = AnnIndex.load(target)
    assert len(loaded) == len(built)
    queries = unit_vectors(50, seed=99)
    exclude = {1_000, 1_001, 2_000}
    for a, b in zip(built.query(queries, 10, exclude), loaded.query(queries, 10, exclude), strict=True):
        np.testing.assert_array_equal(a, b)


def test_save_keeps_deletions_and_overwrites(small: AnnIndex, tmp_path: Path) -> None:
    target = tmp_path / "ann"
    small.save(target)
    small.mark_deleted([0, 1, 2])
    small.save(target)  # replaces the existing directory
    loaded = AnnIndex.load(target)
    assert len(loaded) == 47
    got, _ = loaded.query(unit_vectors(10, seed=2), k=47)
    assert not set(got.ravel().tolist()) & {0, 1, 2}
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "ann"]
    assert leftovers == []  # no temp directories left behind


def test_load_missing(tmp_path: Path, small: AnnIndex) -> None:
    with pytest.raises(AnnIndexNotFound, match="no ANN index"):
        AnnIndex.load(tmp_path / "nope")
    small.save(tmp_path / "ann")
    (tmp_path / "ann" / "ids.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"ids\.npy is missing"):
        AnnIndex.load(tmp_path / "ann")


def test_load_corrupt_index(tmp_path: Path, small: AnnIndex) -> None:
    small.save(tmp_path / "ann")
    path = tmp_path / "ann" / "index.bin"
    raw = bytearray(path.read_bytes())
    raw[100:110] = b"\xff" * 10
    path.write_bytes(bytes(raw))
    with pytest.raises(AnnIndexLoadError, match="corrupt"):
        AnnIndex.load(tmp_path / "ann")
    path.write_bytes(bytes(raw[:50]))  # truncated
    with pytest.raises(AnnIndexLoadError, match="corrupt"):
        AnnIndex.load(tmp_path / "ann")


def test_load_corrupt_meta_and_ids(tmp_path: Path, small: AnnIndex) -> None:
    small.save(tmp_path / "ann")
    (tmp_path / "ann" / "meta.json").write_text("{not json")
    with pytest.raises(AnnIndexLoadError, match=r"meta\.json"):
        AnnIndex.load(tmp_path / "ann")
    small.save(tmp_path / "ann")
    (tmp_path / "ann" / "ids.npy").write_bytes(b"garbage")
    with pytest.raises(AnnIndexLoadError, match=r"ids\.npy"):
        AnnIndex.load(tmp_path / "ann")


def test_pickled_ids_refused(tmp_path: Path, small: AnnIndex) -> None:
    small.save(tmp_path / "ann")
    np.save(tmp_path / "ann" / "ids.npy", np.array([1, "x"], dtype=object), allow_pickle=True)
    with pytest.raises(AnnIndexLoadError, match=r"ids\.npy"):
        AnnIndex.load(tmp_path / "ann")


def test_input_validation(small: AnnIndex) -> None:
    with pytest.raises(ValueError, match="shape"):
        small.add([1], np.zeros((1, D + 1), np.float32))
    with pytest.raises(ValueError, match=">= 0"):
        small.add([-1], unit_vectors(1, seed=0))
    with pytest.raises(ValueError, match="duplicate"):
        small.add([3, 3], unit_vectors(2, seed=0))
    with pytest.raises(ValueError, match="space"):
        AnnConfig(space="l2")


def test_ip_space(data: tuple[np.ndarray, np.ndarray]) -> None:
    ids, vecs = data
    index = AnnIndex.build(ids[:500], vecs[:500], AnnConfig(dim=D, space="ip"))
    got, sims = index.query(vecs[3], k=1)
    assert got[0, 0] == ids[3]
    assert sims[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_empty_index() -> None:
    index = AnnIndex.build([], np.empty((0, D), np.float32), CFG)
    assert len(index) == 0
    got, sims = index.query(unit_vectors(3, seed=0), k=5)
    assert got.shape == sims.shape == (3, 0)


def test_exact_search_and_recall() -> None:
    vecs = np.eye(4, dtype=np.float32)
    q = np.array([[0.9, 0.1, 0, 0]], dtype=np.float32)
    np.testing.assert_array_equal(exact_search(vecs, [10, 11, 12, 13], q, k=2), [[10, 11]])
    assert recall_at_k(np.array([[1, 2, 3]]), np.array([[3, 2, 9]])) == pytest.approx(2 / 3)


# --- the float16 vector mirror ------------------------------------------------------------------


def _exact(ann: AnnIndex, ids: np.ndarray) -> np.ndarray:
    return ann._exact_vectors(ids)  # hnswlib's own float32 copy


def test_mirror_reads_agree_with_hnswlib(built: AnnIndex, data: tuple[np.ndarray, np.ndarray]) -> None:
    ids, _vecs = data
    pick = ids[::7]
    matrix, present = built.get_matrix(pick)
    assert present.all() and matrix.dtype == np.float32 and matrix.shape == (len(pick), D)
    assert np.abs(matrix - _exact(built, pick)).max() < 2e-3  # half precision
    # absent ids: zero rows, flagged, order kept
    mixed = np.array([pick[0], 10, pick[1]])
    matrix, present = built.get_matrix(mixed)
    assert present.tolist() == [True, False, True]
    assert not matrix[1].any() and np.allclose(matrix[2], _exact(built, pick[1:2])[0], atol=2e-3)


def test_mirror_follows_upserts_deletes_and_cosine_normalisation() -> None:
    ann = AnnIndex.empty(CFG)
    raw = 3.0 * unit_vectors(2, seed=5)  # not unit: the cosine space normalises on insert
    ann.add([1, 2], raw)
    assert np.allclose(ann.get_matrix([1, 2])[0], raw / 3.0, atol=2e-3)
    replacement = unit_vectors(1, seed=6)
    ann.add([1], replacement)
    assert np.allclose(ann.get_matrix([1])[0][0], replacement[0], atol=2e-3)
    ann.mark_deleted([2])
    assert ann.get_matrix([2])[1].tolist() == [False]
    ann.add(np.arange(10, 3000), unit_vectors(2990, seed=7))  # grows past the initial capacity
    assert np.allclose(ann.get_matrix([2999])[0][0], _exact(ann, np.array([2999]))[0], atol=2e-3)


def test_mirror_is_saved_and_rebuilt_when_missing(built: AnnIndex, tmp_path: Path) -> None:
    target = tmp_path / "ann"
    built.save(target)
    ids = built.ids[:50]
    loaded = AnnIndex.load(target)
    assert np.array_equal(loaded.get_matrix(ids)[0], built.get_matrix(ids)[0])
    (target / "vectors.npy").unlink()  # as saved before the mirror existed
    rebuilt = AnnIndex.load(target)
    assert np.abs(rebuilt.get_matrix(ids)[0] - _exact(built, ids)).max() < 2e-3


def test_a_mirror_of_the_wrong_shape_is_refused(built: AnnIndex, tmp_path: Path) -> None:
    target = tmp_path / "ann"
    built.save(target)
    np.save(target / "vectors.npy", np.zeros((3, D), dtype=np.float16), allow_pickle=False)
    with pytest.raises(AnnIndexLoadError, match=r"vectors\.npy"):
        AnnIndex.load(target)


def test_compaction_keeps_full_precision(built: AnnIndex) -> None:
    compacted = built.compact()
    ids = built.ids[:20]
    assert np.allclose(_exact(compacted, ids), _exact(built, ids), atol=1e-6)
