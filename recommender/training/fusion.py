"""Fitting the learned fusion (``recommender.ml.learned_fusion``) with a collaborative version.

The fusion is a stacked model: its training rows are held-out swipes (validation, and test for
the final fit) scored by the collaborative model fitted on the train split only, so the
collaborative log-odds it learns to weigh are as good as they are on pairs the model never saw,
which is what every pair a feed ranks is. The other signals are computed as they stood at the
end of the train period: Elo ratings replayed over the train swipes in time order, like rates
counted over them. Profiles' structured features and bio vectors are read from the database,
keyed by the export pseudonyms.

The same per-pair inputs (:class:`recommender.ml.learned_fusion.PairInputs`) are what the feed
and the ML API build from their own signals at request time (``recommender.feed.scoring``), so
training and serving share one definition of every feature.

Also here: the popularity x pickiness baseline (the candidate's share of likes received times
the swiper's share of likes given, over the train split). The version's metrics compare the
collaborative model, the learned fusion and the hand-weighted prior against it on the test split.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from django.conf import settings

from recommender.feed.features import profile_features
from recommender.feed.store import smoothed_like_rate
from recommender.ml.collab import IdMap, Recommender
from recommender.ml.elo import EloConfig, rebuild_ratings
from recommender.ml.learned_fusion import LearnedFusion, PairInputs, design_matrix, fit_learned_fusion
from recommender.ml.structured import CandidateBatch, ProfileFeatures, structured_scores
from recommender.models import Profile, ProfileEmbedding, SwipeAction
from recommender.serving.encoder import vector_from_bytes
from recommender.training.features import profile_hashes

POSITIVE = frozenset({str(SwipeAction.LIKE), str(SwipeAction.SUPERLIKE)})
# Held-out swipes per split the fusion reads at most (a seeded sample beyond): a dozen
# coefficients need thousands of rows, not millions, and the features are built row by row.
MAX_ROWS = 100_000


@dataclass(frozen=True)
class HeldOut:
    """Aligned held-out swipes on the model's id map: swiper rows, candidate rows, like labels."""

    users: np.ndarray  # (n,) int64
    items: np.ndarray  # (n,) int64
    liked: np.ndarray  # (n,) bool


@dataclass
class TrainPeriod:
    """What the signals knew at the end of the train split, on the model's id map."""

    elo: np.ndarray  # (n_ids,) rating
    like_rate: np.ndarray  # (n_ids,) smoothed like rate given
    received_rate: np.ndarray  # (n_ids,) share of likes received (the baseline's popularity)
    given_rate: np.ndarray  # (n_ids,) share of likes given (the baseline's pickiness)


def held_out(data_dir: Path, name: str, ids: IdMap) -> HeldOut:
    t = pq.read_table(Path(data_dir) / f"{name}.parquet", columns=["user", "candidate", "action"])
    users = ids.index(t.column("user").to_numpy(zero_copy_only=False).astype(str), missing=-1)
    items = ids.index(t.column("candidate").to_numpy(zero_copy_only=False).astype(str), missing=-1)
    liked = np.isin(t.column("action").to_numpy(zero_copy_only=False).astype(str), list(POSITIVE))
    keep = np.flatnonzero((users >= 0) & (items >= 0))
    if len(keep) > MAX_ROWS:
        keep = np.sort(np.random.default_rng(0).choice(keep, size=MAX_ROWS, replace=False))
    return HeldOut(users=users[keep], items=items[keep], liked=liked[keep])


def train_period(data_dir: Path, ids: IdMap) -> TrainPeriod:
    """Elo replayed over the train swipes in time order and like counts over them."""
    t = pq.read_table(Path(data_dir) / "train.parquet", columns=["user", "candidate", "action", "occurred_at"])
    t = t.sort_by([("occurred_at", "ascending")])
    users = ids.index(t.column("user").to_numpy(zero_copy_only=False).astype(str), missing=-1)
    items = ids.index(t.column("candidate").to_numpy(zero_copy_only=False).astype(str), missing=-1)
    actions = t.column("action").to_numpy(zero_copy_only=False).astype(str)
    cfg = EloConfig(k=settings.ELO_K)
    ratings = rebuild_ratings(zip(users.tolist(), items.tolist(), actions.tolist(), strict=True), cfg)
    n = len(ids)
    elo = np.full(n, cfg.initial)
    for row, rating in ratings.items():
        if isinstance(row, int) and row >= 0:
            elo[row] = rating
    liked = np.isin(actions, list(POSITIVE)).astype(np.float64)
    ok = (users >= 0) & (items >= 0)
    given = np.bincount(users[ok], minlength=n).astype(np.float64)
    likes = np.bincount(users[ok], weights=liked[ok], minlength=n)
    received = np.bincount(items[ok], minlength=n).astype(np.float64)
    liked_by = np.bincount(items[ok], weights=liked[ok], minlength=n)
    overall = float(liked[ok].mean()) if ok.any() else 0.5
    return TrainPeriod(
        elo=elo,
        like_rate=smoothed_like_rate(likes, given),
        received_rate=np.divide(liked_by, received, out=np.full(n, overall), where=received > 0),
        given_rate=np.divide(likes, given, out=np.full(n, overall), where=given > 0),
    )


@dataclass
class ProfileTable:
    """The tenant's profiles on the model's id map: features and bio vectors by row."""

    features: dict[int, ProfileFeatures]
    vectors: dict[int, np.ndarray]

    @classmethod
    def load(cls, ids: IdMap, profiles: list[Profile]) -> ProfileTable:
        rows = ids.index(profile_hashes(profiles), missing=-1)
        by_pk = {p.pk: int(r) for p, r in zip(profiles, rows, strict=True) if r >= 0}
        features = {by_pk[p.pk]: profile_features(p) for p in profiles if p.pk in by_pk}
        vectors: dict[int, np.ndarray] = {}
        stored = ProfileEmbedding.objects.filter(profile__in=list(by_pk)).values_list("profile_id", "vector")
        for pk, raw in stored.iterator():
            v = vector_from_bytes(raw)
            norm = float(np.linalg.norm(v))
            if norm > 0:
                vectors[by_pk[pk]] = v / norm
        return cls(features=features, vectors=vectors)


def pair_inputs(
    rows: HeldOut, model: Recommender | None, period: TrainPeriod, profiles: ProfileTable
) -> tuple[PairInputs, np.ndarray]:
    """The fusion inputs of ``rows`` whose two profiles are known, and which rows those are."""
    known = np.array(
        [u in profiles.features and v in profiles.features for u, v in zip(rows.users, rows.items, strict=True)],
        dtype=bool,
    )
    users, items = rows.users[known], rows.items[known]
    n = len(users)
    comps = {name: np.full(n, np.nan) for name in ("age_fit", "distance", "interests", "lifestyle")}
    by_user: dict[int, list[int]] = defaultdict(list)
    for k, u in enumerate(users.tolist()):
        by_user[u].append(k)
    for u, ks in by_user.items():
        batch = CandidateBatch.from_features([profiles.features[int(items[k])] for k in ks])
        result = structured_scores(profiles.features[u], batch)
        for name in comps:
            comps[name][ks] = result.components[name]
    similarity = np.array(
        [
            float(profiles.vectors[u] @ profiles.vectors[v])
            if u in profiles.vectors and v in profiles.vectors
            else np.nan
            for u, v in zip(users.tolist(), items.tolist(), strict=True)
        ]
    )
    inputs = PairInputs(
        collab_logit=model.pair_log_odds(users, items) if model is not None else np.full(n, np.nan),
        swiper_like_rate=period.like_rate[users],
        candidate_elo=period.elo[items],
        similarity=similarity,
        age_fit=comps["age_fit"],
        distance=comps["distance"],
        interests=comps["interests"],
        lifestyle=comps["lifestyle"],
        swiper_age=np.array([profiles.features[u].age for u in users.tolist()], dtype=np.float64),
        candidate_age=np.array([profiles.features[v].age for v in items.tolist()], dtype=np.float64),
    )
    return inputs, known


def auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """ROC AUC (ties count half); None when only one class is present."""
    labels = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    from scipy.stats import rankdata

    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def fusion_fit_and_report(
    *,
    data_dir: Path,
    ids: IdMap,
    model: Recommender,
    profiles: list[Profile],
    prior: Any,
) -> tuple[LearnedFusion | None, dict[str, Any]]:
    """Fit the learned fusion on validation, judge it (and the model, the prior and the baseline)
    on test, then refit it on validation and test together; returns (the final fusion or None,
    the report for the version's metrics). ``prior(inputs) -> (n,) probabilities`` is the
    hand-weighted cold-start pool, for comparison."""
    period = train_period(data_dir, ids)
    table = ProfileTable.load(ids, profiles)
    val_rows, test_rows = held_out(data_dir, "validation", ids), held_out(data_dir, "test", ids)
    val_in, val_known = pair_inputs(val_rows, model, period, table)
    test_in, test_known = pair_inputs(test_rows, model, period, table)
    y_val = val_rows.liked[val_known]
    y_test = test_rows.liked[test_known]
    x_val, x_test = design_matrix(val_in), design_matrix(test_in)
    on_validation = fit_learned_fusion(x_val, y_val)
    users, items = test_rows.users[test_known], test_rows.items[test_known]
    report: dict[str, Any] = {
        "rows": {"validation": len(y_val), "test": len(y_test)},
        "test_like_auc": {
            "baseline_popularity_x_pickiness": auc(period.received_rate[items] * period.given_rate[users], y_test),
            "collaborative": auc(np.nan_to_num(test_in.collab_logit, nan=-50.0), y_test),
            "prior_fusion": auc(prior(test_in), y_test),
            "learned_fusion": auc(on_validation.logit(x_test), y_test) if on_validation is not None else None,
        },
    }
    final = fit_learned_fusion(np.vstack([x_val, x_test]), np.concatenate([y_val, y_test]))
    if final is not None:
        report["weights"] = final.weights()
        report["l2"] = final.l2
        report["info"] = final.info
    return final, report
