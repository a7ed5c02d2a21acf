"""A small tenant whose people meet in cohorts gets models that beat the simple baseline.

The shape that defeated the old defaults (issue 17): a few hundred people meeting in waves, each
deciding on a dozen partners. Trained with the documented commands and their defaults
(``extract_events --tenant``, ``build_datasets``, ``train --model lmf``), the served feed scores
of held-out meetings must beat popularity x pickiness (the partner's share of yes received times
the chooser's share of yes given), one way and for matches.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.models import Tenant
from recommender.feed.pipeline import feed_reset_for_tests
from recommender.feed.rank import RankRequest, profiles_rank
from recommender.services.events import SwipeIn, swipe_batch_ingest
from recommender.services.profiles import profiles_bulk_create
from recommender.simulation import SwipeSimulator, build_population, load_sample
from recommender.simulation.cohorts import (
    COHORT_SIM_CONFIG,
    CohortConfig,
    Meeting,
    baseline_scores,
    cohort_meetings,
    signup_profile,
)
from recommender.training.fusion import auc
from registry.models import ModelVersion, VersionStatus


def load_cohorts(tenant: Tenant, seed: int, waves: int) -> tuple[list[Meeting], dict[int, str]]:
    """A cohort tenant's profiles (sign-up fields) and its training decisions, through the services
    the API calls."""
    population = build_population(load_sample(), seed=7)
    simulator = SwipeSimulator(population, seed=seed, config=COHORT_SIM_CONFIG)
    start = timezone.now() - timedelta(days=2 * waves + 5)
    meetings = cohort_meetings(simulator, CohortConfig(waves=waves, seed=seed, days_between_waves=2.0), start)
    people = sorted({m.man for m in meetings} | {m.woman for m in meetings})
    profiles = profiles_bulk_create(tenant=tenant, rows=[signup_profile(population[i]) for i in people])
    by_index = dict(zip(people, profiles, strict=True))
    for m in meetings:
        if m.held_out:
            continue
        for user, other, liked in ((m.man, m.woman, m.man_likes), (m.woman, m.man, m.woman_likes)):
            swipe = SwipeIn(candidate_id=by_index[other].external_id, action="like" if liked else "pass")
            swipe_batch_ingest(
                tenant=tenant, user=by_index[user], session_id=f"w{m.wave}", timestamp=m.timestamp, swipes=[swipe]
            )
    return meetings, {i: str(p.external_id) for i, p in by_index.items()}


Scores = dict[tuple[int, int], tuple[float, float]]


def served_scores(tenant: Tenant, meetings: list[Meeting], ids: dict[int, str]) -> Scores:
    """(chooser, partner) -> (p_user_likes, score) of every held-out meeting, by the ML API's ranking."""
    wanted: dict[int, list[int]] = {}
    for m in meetings:
        if m.held_out:
            wanted.setdefault(m.man, []).append(m.woman)
            wanted.setdefault(m.woman, []).append(m.man)
    requests = [RankRequest(uuid.UUID(ids[u]), [uuid.UUID(ids[v]) for v in vs]) for u, vs in wanted.items()]
    by_ext = {ext: i for i, ext in ids.items()}
    out = {}
    for ranking in profiles_rank(tenant=tenant, requests=requests).rankings:
        for c in ranking.candidates:
            pair = (by_ext[str(ranking.user_id)], by_ext[str(c.candidate_id)])
            out[pair] = (float(c.components["p_user_likes"]), float(c.score))  # type: ignore[arg-type]
    return out


def aucs(meetings: list[Meeting], scores: Scores) -> tuple[float, float]:
    held = [m for m in meetings if m.held_out]
    pairs = [(m.man, m.woman, m.man_likes) for m in held] + [(m.woman, m.man, m.woman_likes) for m in held]
    one_way = auc(np.array([scores[(a, b)][0] for a, b, _ in pairs]), np.array([y for *_, y in pairs]))
    match = auc(np.array([scores[(m.man, m.woman)][1] for m in held]), np.array([m.match for m in held]))
    assert one_way is not None and match is not None
    return one_way, match


@pytest.mark.slow
@pytest.mark.django_db
def test_lmf_beats_popularity_x_pickiness_on_a_cohort_tenant(tenant: Tenant, tmp_path: Path, settings: object) -> None:
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"  # type: ignore[attr-defined]
    feed_reset_for_tests()
    meetings, ids = load_cohorts(tenant, seed=5, waves=12)
    events, splits = tmp_path / "events", tmp_path / "splits"
    call_command("extract_events", "--tenant", tenant.slug, "--output", str(events), "--start-date", "2000-01-01",
                 verbosity=0)  # fmt: skip
    call_command("build_datasets", "--input", str(events), "--output", str(splits), verbosity=0)
    call_command("train", "--model", "lmf", "--data", str(splits), "--search-trials", "4", verbosity=0)

    version = ModelVersion.objects.get(tenant=tenant, model_type="collaborative", status=VersionStatus.ACTIVE)
    metrics = version.metrics
    assert metrics["split_strategy"] == "per_user"  # waves: a time split would hold out unseen people
    assert metrics["search"]["tried"] == 4 and metrics["refit_all"]["interactions"] > metrics["train_interactions"]
    held_out = metrics["test_like_auc"]
    assert held_out["collaborative"] > held_out["baseline_popularity_x_pickiness"]
    assert held_out["learned_fusion"] >= held_out["collaborative"] - 0.01

    baseline = aucs(meetings, baseline_scores(meetings))
    served = aucs(meetings, served_scores(tenant, meetings, ids))
    print(f"held out: served {served}, baseline {baseline}, in training {held_out}")
    assert served[0] > baseline[0] + 0.01, (served, baseline)  # one way
    assert served[1] > baseline[1] + 0.01, (served, baseline)  # matches
