"""load_synthetic: a synthetic population and history in bulk, COPY on PostgreSQL and
bulk_create on SQLite, consistent with what the services would have stored."""

from __future__ import annotations

import json
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.models import Count, Q

from accounts.models import Tenant
from recommender.models import POSITIVE_ACTIONS, EloRating, Match, Profile, ProfileEmbedding, Swipe
from recommender.services.bulk_load import simulate_swipes
from recommender.simulation import build_population, synthetic_rows


def check_loaded(tenant: Tenant, profiles: int, summary: dict) -> None:
    assert Profile.objects.filter(tenant=tenant).count() == profiles == summary["profiles"]
    for p in Profile.objects.filter(tenant=tenant)[:50]:
        p.full_clean(validate_unique=False, validate_constraints=False)  # every generated value is valid
    swipes = Swipe.objects.filter(tenant=tenant)
    assert swipes.count() == summary["swipes"] > profiles  # about 2 per profile
    assert not swipes.filter(user=models_f("candidate")).exists()
    assert not swipes.values("user", "candidate").annotate(n=Count("id")).filter(n__gt=1).exists()
    # every match is a mutual like, stored once in canonical order
    matches = Match.objects.filter(tenant=tenant)
    assert matches.count() == summary["matches"] > 0
    for m in matches[:50]:
        assert m.user_a_id < m.user_b_id
        for a, b in ((m.user_a_id, m.user_b_id), (m.user_b_id, m.user_a_id)):
            assert swipes.filter(user_id=a, candidate_id=b, action__in=POSITIVE_ACTIONS).exists()
    likes = swipes.filter(action__in=POSITIVE_ACTIONS)
    pairs = set(likes.values_list("user_id", "candidate_id"))
    assert matches.count() == sum(1 for a, b in pairs if a < b and (b, a) in pairs)
    # Elo counters agree with the swipe table
    elo = {r.profile_id: r for r in EloRating.objects.filter(tenant=tenant)}
    given = dict(swipes.values_list("user").annotate(n=Count("id")).values_list("user", "n"))
    received = dict(swipes.values_list("candidate").annotate(n=Count("id")).values_list("candidate", "n"))
    liked = dict(
        swipes.values("user").annotate(n=Count("id", filter=Q(action__in=POSITIVE_ACTIONS))).values_list("user", "n")
    )
    for pid, row in elo.items():
        assert (row.swipes_given, row.swipes_received, row.likes_given) == (
            given.get(pid, 0),
            received.get(pid, 0),
            liked.get(pid, 0),
        )


def models_f(name: str):
    from django.db.models import F

    return F(name)


def run(*args: str) -> dict:
    out = StringIO()
    call_command("load_synthetic", *args, stdout=out, verbosity=0)
    return json.loads(out.getvalue().strip().splitlines()[-1])


@pytest.mark.django_db
def test_load_synthetic_with_bulk_create_on_sqlite():
    if connection.vendor != "sqlite":
        pytest.skip("the embedded run covers bulk_create; the postgres test covers COPY")
    summary = run("--profiles", "300", "--swipes", "6000", "--tenant", "synth", "--embeddings", "synthetic")
    assert summary["loader"] == "bulk_create"
    tenant = Tenant.objects.get(slug="synth")
    check_loaded(tenant, 300, summary)
    assert ProfileEmbedding.objects.filter(tenant=tenant).count() == summary["embeddings"] > 250
    with pytest.raises(CommandError, match="already has profiles"):
        run("--profiles", "10", "--tenant", "synth")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_load_synthetic_with_copy_on_postgres():
    summary = run("--profiles", "2000", "--swipes", "30000", "--tenant", "synth-pg", "--embeddings", "synthetic")
    assert summary["loader"] == "copy"
    tenant = Tenant.objects.get(slug="synth-pg")
    check_loaded(tenant, 2000, summary)
    vec = ProfileEmbedding.objects.filter(tenant=tenant).first()
    v = np.frombuffer(bytes(vec.vector), dtype="<f4")
    assert v.shape == (384,) and abs(float(np.linalg.norm(v)) - 1) < 1e-4


def test_simulated_swipes_follow_preferences():
    population = build_population(synthetic_rows(2000, seed=3), seed=3)
    sim = simulate_swipes(population, 20_000, seed=3)
    assert 15_000 < len(sim.user) <= 20_000
    assert (sim.user != sim.candidate).all()
    assert len(np.unique(sim.user * len(population) + sim.candidate)) == len(sim.user)
    sought = [
        population[c].gender in population[u].seeking
        for u, c in zip(sim.user[:2000], sim.candidate[:2000], strict=True)
    ]
    assert all(sought)
    like_rate = {
        g: float((sim.action[[population[u].gender == g for u in sim.user]] > 0).mean()) for g in ("woman", "man")
    }
    assert like_rate["man"] > 2 * like_rate["woman"]  # the base rates differ, as in dating-app data


def test_generation_with_progress_equals_build_population():
    from recommender.services.bulk_load import generate_population

    rows = synthetic_rows(500, seed=4)
    seen: list[int] = []
    generated = generate_population(rows, seed=4, progress=lambda step, done, total: seen.append(done))
    assert generated == build_population(rows, seed=4)
    assert seen == [500]
