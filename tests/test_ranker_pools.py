"""The ranker's pool groups (`train_ranker --groups pools`): what the feed would
have pooled at past cuts of the history, features from models that never saw the labels, labels
from the likes that followed, calibration on the rows actually swiped (a 300-profile demo)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from django.core.management import call_command
from django.utils import timezone

from accounts.models import Tenant
from recommender.ml.ranker import LABELS, RANKER_FEATURES, Ranker, pool_groups
from recommender.ml.structured import hard_filter_mask
from recommender.training import ranker as training
from recommender.training.train import collaborative_refit
from registry.models import ModelVersion

torch.set_num_threads(1)
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("isolated_ml_state")]
ALS = {"factors": 16, "epochs": 5}


def make_demo(tenant: Tenant, tmp_path: Path, profiles: int, swipes: int) -> Tenant:
    """Simulated profiles and swipes and an active ALS version trained on them."""
    call_command("load_demo", "--limit", str(profiles), "--swipes", str(swipes), "--no-users", verbosity=0)
    events, splits = tmp_path / "events", tmp_path / "splits"
    start = (timezone.now() - timedelta(days=60)).date().isoformat()
    call_command("extract_events", "--output", str(events), "--start-date", start, "--tenant", tenant.slug, verbosity=0)
    call_command("build_datasets", "--input", str(events), "--output", str(splits), verbosity=0)
    config = tmp_path / "als.json"
    config.write_text(json.dumps(ALS))
    call_command("train", "--model", "als", "--data", str(splits), "--config", str(config), verbosity=0)
    assert ModelVersion.objects.get(tenant=tenant, model_type="collaborative").status == "active"
    return tenant


@pytest.fixture
def demo(tenant: Tenant, tmp_path: Path) -> Tenant:
    return make_demo(tenant, tmp_path, 300, 3000)


def test_the_refit_knows_only_the_swipes_before_the_cut(demo: Tenant) -> None:
    data = training._tenant_data(demo)
    model, _name, _label, ids, rows_of = training._source_model(demo, data)
    swipes = training._swipes(demo, data.index)
    lo = training._position(swipes, 0, 0.5)
    refit = collaborative_refit(
        model=model, ids=ids, users=data.hashes[swipes.users[:lo]], items=data.hashes[swipes.items[:lo]],
        actions=swipes.actions[:lo], profiles=data.profiles,
    )  # fmt: skip
    assert refit.name == model.name and refit.n_items == model.n_items  # same id map, same rows
    late = np.setdiff1d(swipes.users[lo:], swipes.users[:lo])  # swipers who only start after the cut
    assert late.size > 0
    assert (refit.user_activity[rows_of[late]] == 0).all()
    likers = np.unique(swipes.users[:lo][swipes.actions[:lo] != "pass"])
    assert (refit.user_activity[rows_of[likers]] > 0).all()  # and everyone who liked before it


def test_pools_hold_what_the_feed_may_show_and_labels_what_followed(demo: Tenant, settings) -> None:
    settings.ML_COLLABORATIVE_CANDIDATES = 40
    data = training._tenant_data(demo)
    model, name, _label, _ids, rows_of = training._source_model(demo, data)
    swipes = training._swipes(demo, data.index)
    lo, hi = training._position(swipes, 0, 0.7), training._position(swipes, 0, 0.8)
    assert swipes.times[lo - 1] < swipes.times[lo]  # a cut never splits one instant
    ctx = training._context(data, swipes, lo, {name: model}, {name: rows_of})
    before = set(zip(swipes.users[:lo].tolist(), swipes.items[:lo].tolist(), strict=True))
    labels, swiped = training._period(swipes, lo, hi, data.n)
    users = np.flatnonzero(np.asarray((labels > 0).sum(axis=1)).reshape(-1))
    seen = sp.csr_matrix((np.ones(lo), (swipes.users[:lo], swipes.items[:lo])), shape=(data.n, data.n))
    pools = training._pools(data, ctx, model, rows_of, seen, users)
    assert sum(p.size for p in pools) > 0
    for u, pool in zip(users.tolist(), pools, strict=True):
        assert np.unique(pool).size == pool.size and u not in pool.tolist()
        assert hard_filter_mask(data.features[u], data.batch.take(pool)).all()  # both ways
        assert not any((u, v) in before for v in pool.tolist())  # never someone already swiped
        fans = [v for v in pool.tolist() if ctx.likes[v, u] > 0]
        assert pool.size <= 40 + len(fans)

    groups = pool_groups(ctx, users.tolist(), pools, labels, swiped)
    assert groups.sizes.size > 0 and groups.sizes.sum() == groups.x.shape[0]
    first: dict[tuple[int, int], str] = {}
    window = zip(swipes.users[lo:hi].tolist(), swipes.items[lo:hi].tolist(), swipes.actions[lo:hi], strict=True)
    for u, v, a in window:
        first.setdefault((u, v), str(a))
    start = 0
    for u, size in zip(groups.users.tolist(), groups.sizes.tolist(), strict=True):
        pool = pools[users.tolist().index(u)]
        expected = [LABELS[first[(u, v)]] if (u, v) in first else 0 for v in pool.tolist()]
        assert groups.y[start : start + size].tolist() == expected and max(expected) > 0
        assert groups.shown[start : start + size].tolist() == [(u, v) in first for v in pool.tolist()]
        start += size
    # The history features stop at the cut: "liked you" is 1 only for likes before it.
    col = list(RANKER_FEATURES).index("liked_you")
    u0, size0 = int(groups.users[0]), int(groups.sizes[0])
    pool0 = pools[users.tolist().index(u0)]
    fans_before = {
        v for v, c, a in zip(swipes.users[:lo].tolist(), swipes.items[:lo].tolist(), swipes.actions[:lo], strict=True)
        if c == u0 and a != "pass"
    }  # fmt: skip
    assert groups.x[:size0, col].astype(bool).tolist() == [v in fans_before for v in pool0.tolist()]


def test_train_ranker_on_pools_learns_more_than_chance(tenant: Tenant, tmp_path: Path) -> None:
    # Big enough for about a hundred early-stopping groups: the 300-profile demo gives two.
    demo = make_demo(tenant, tmp_path, 1000, 20000)
    reports: list[tuple[str, int, int]] = []
    result = training.ranker_train(tenant=demo, groups="pools", register=True, on_progress=lambda *r: reports.append(r))
    for cut in ("70%", "80%", "90%"):  # each window reports its users up to all of them
        window = [(done, total) for stage, done, total in reports if stage == f"pools at {cut}"]
        assert window[0] == (0, 1) and window[-1][0] == window[-1][1] > 0
    m = result.metrics
    assert m["groups_from"] == "pools" and set(m["groups_per_window"]) == {"70%", "80%", "90%"}
    assert m["calibration_rows"] > 0 and m["source_models"] == ["als"]
    version = ModelVersion.objects.get(tenant=demo, model_type="ranker")
    assert version.parameters["groups"] == "pools"

    # On the early-stopping groups, the ranker orders the later likes above a random order.
    data = training.ranker_dataset(tenant=demo, groups="pools")
    val_rows = np.repeat(data.validation, data.groups)
    ranker = Ranker.load(result.artifact_dir)
    scores, y, sizes = ranker.predict(data.x[val_rows]), data.y[val_rows], data.groups[data.validation]
    rng = np.random.default_rng(0)
    model_ndcg = _mean_ndcg(scores, y, sizes)
    chance = np.mean([_mean_ndcg(rng.random(scores.size), y, sizes) for _ in range(20)])
    assert model_ndcg > chance * 1.2, (model_ndcg, chance)
    # The calibration is P(like | shown): its mean over shown rows is near their like rate.
    shown = val_rows & data.calibration
    p = ranker.like_probability(data.x[shown])
    assert abs(p.mean() - (data.y[shown] > 0).mean()) < 0.05


def _mean_ndcg(scores: np.ndarray, y: np.ndarray, sizes: np.ndarray, k: int = 10) -> float:
    out, start = [], 0
    for size in sizes.tolist():
        s, g = scores[start : start + size], (2.0 ** y[start : start + size]) - 1
        discount = 1.0 / np.log2(np.arange(2, min(k, size) + 2))
        dcg = (g[np.argsort(-s, kind="stable")][:k] * discount).sum()
        ideal = (np.sort(g)[::-1][:k] * discount).sum()
        out.append(dcg / ideal if ideal > 0 else 0.0)
        start += size
    return float(np.mean(out))
