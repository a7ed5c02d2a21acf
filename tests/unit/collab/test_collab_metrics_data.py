"""Metrics against hand-computed values, id maps and interaction matrices, and purity."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import recommender.ml.collab
from recommender.ml.collab import EventWeights, IdMap, interactions_from_events
from recommender.ml.collab.metrics import (
    catalogue_coverage,
    mutual_like_pairs,
    ranking_metrics,
    reciprocal_match_precision,
)


def rel(rows: list[list[int]], n_items: int = 10) -> sp.csr_matrix:
    data = [(r, c) for r, cols in enumerate(rows) for c in cols]
    r, c = zip(*data, strict=True) if data else ((), ())
    return sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(len(rows), n_items))


def test_ranking_metrics_by_hand() -> None:
    recommended = np.array([[1, 2, 3], [4, 5, 6], [7, 8, -1]])
    relevant = rel([[2, 9], [], [7, 8, 1]])  # user 1 has nothing relevant: not averaged
    m = ranking_metrics(recommended, relevant, 3)
    # user 0: one hit at rank 2 of 2 relevant; user 2: hits at ranks 1, 2 of 3 relevant
    d = 1 / math.log2(3)
    ndcg0 = d / (1 + d)
    ndcg2 = (1 + d) / (1 + d + 0.5)
    assert m["users"] == 2
    assert m["ndcg@3"] == pytest.approx((ndcg0 + ndcg2) / 2)
    assert m["precision@3"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert m["recall@3"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert m["map@3"] == pytest.approx(((1 / 2) / 2 + (1 + 1) / 3) / 2)
    assert m["hit_rate@3"] == 1.0


def test_perfect_and_empty_rankings() -> None:
    relevant = rel([[0, 1], [2]])
    perfect = ranking_metrics(np.array([[0, 1, 5], [2, 6, 7]]), relevant, 3)
    assert perfect["ndcg@3"] == pytest.approx(1.0) and perfect["map@3"] == pytest.approx(1.0)
    assert ranking_metrics(np.full((2, 3), -1), relevant, 3)["ndcg@3"] == 0.0
    assert ranking_metrics(np.zeros((1, 3), dtype=int), rel([[]]), 3)["users"] == 0


def test_coverage() -> None:
    assert catalogue_coverage(np.array([[1, 2], [2, -1]]), 10) == pytest.approx(0.2)


def test_mutual_pairs_and_match_precision() -> None:
    # 0 liked 1 in train, 1 liked 0 in test -> a new match; 2<->3 both in train -> old match
    train = sp.csr_matrix(([1, 1, 1], ([0, 2, 3], [1, 3, 2])), shape=(4, 4))
    test = sp.csr_matrix(([1], ([1], [0])), shape=(4, 4))
    pairs = mutual_like_pairs(train + test, test)
    assert sorted(zip(*pairs.nonzero(), strict=True)) == [(0, 1), (1, 0)]
    recs = np.array([[1, 2], [3, 0], [0, 1], [0, 1]])
    out = reciprocal_match_precision(recs, pairs, 2)
    assert out["users"] == 2 and out["match_precision@2"] == pytest.approx(0.5)


def test_event_weights() -> None:
    w = EventWeights(like=1.0, superlike=2.0, pass_=-0.5)
    np.testing.assert_array_equal(w.of(["like", "pass", "superlike"]), [1.0, -0.5, 2.0])
    with pytest.raises(ValueError, match="unknown swipe actions"):
        w.of(["like", "block"])
    with pytest.raises(ValueError):
        EventWeights(pass_=0.5)


def test_id_map_strings_and_ints() -> None:
    m = IdMap(["b", "a", "c", "a"])
    assert len(m) == 3 and m.index(["c", "a"]).tolist() == [2, 0]
    assert m.index(["zz", "b"], missing=-1).tolist() == [-1, 1]
    with pytest.raises(KeyError):
        m.index(["zz"])
    assert IdMap([10, 3, 7]).index([7, 10]).tolist() == [1, 2]


def test_interactions_shared_and_summed() -> None:
    data = interactions_from_events(["x", "x", "y"], ["y", "y", "z"], np.array([1.0, 1.0, -0.5]), shared=True)
    assert data.shape == (3, 3) and data.shared
    assert data.matrix[0, 1] == 2.0  # duplicates summed
    assert data.negatives()[1, 2] == 0.5
    assert data.positives().nnz == 1 and data.seen().nnz == 2


def test_unknown_ids_dropped_on_request() -> None:
    m = IdMap(["a", "b"])
    data = interactions_from_events(["a", "zz"], ["b", "a"], np.ones(2), user_map=m, item_map=m, drop_unknown=True)
    assert data.nnz == 1


@pytest.mark.parametrize("path", sorted(Path(recommender.ml.collab.__file__).parent.glob("*.py")), ids=lambda p: p.name)
def test_collab_is_framework_free(path: Path) -> None:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    assert not roots & {"django", "rest_framework", "celery"}
