"""Small tenants: does a team's own small tenant get a model that beats the simple baseline?

    .venv/bin/python -m bench.small_tenants                 # 3 cohort tenants, PostgreSQL + Redis
    .venv/bin/python -m bench.small_tenants --tenants 5 --embedded

What is measured, per tenant, all in one run:

* **Data**: a speed-dating-shaped tenant (``recommender.simulation.cohorts``): people from the
  vendored OkCupid sample meet in waves of 8-18 per side, every meeting decided both ways by the
  simulator's hidden preferences (``COHORT_SIM_CONFIG``); 20 % of each wave's meetings are held
  out. Seeds 0, 1, 2, ... give different tenants (different people, waves and decisions).
* **The integrator's path, through the public API** (Django's test client, in process): one
  profile per person from sign-up fields only (age, gender, seeking, location, interests,
  lifestyle attributes; no bio, no age preference) with ``POST /internal/v1/profiles/batch``,
  then for every training meeting an impression and a like/pass swipe each way
  (``POST /api/v1/events/impressions``, ``POST /api/v1/events/swipes``).
* **The documented commands with their defaults**: ``extract_events --tenant``,
  ``build_datasets`` (split strategy ``auto``), ``train --model lmf`` (schedule, search,
  learned fusion, refit on every split: the defaults), the first version activated.
* **Scored through** ``POST /api/v1/ml/profiles/rank/batch`` for every held-out meeting:
  one-way AUC of ``components.p_user_likes`` against the decision, match AUC of ``score`` against
  a mutual yes (both decisions of a meeting are held out together).
* **Beside it, same run, same held-out meetings**: the baseline (the partner's share of yes
  received times the chooser's share of yes given, over the training meetings; the harmonic
  mean of both directions for matches), the feed's signals without any model (rank/batch before
  training), and ``lmf`` without the learned fusion (an ablation: the same training with the
  hand-set weights pooling the model, activated in its turn).
* **Intervals**: 95 % bootstrap intervals (1,000 resamples of the held-out meetings) for each
  AUC and for its difference with the baseline (paired: the same resample for both).

Results: ``bench/results/small_tenants.json`` and a table; recorded runs in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    clear_cache,
    format_table,
    isolate,
    machine_info,
    migrate_schema,
    recreate_database,
    setup_django,
    write_result,
)

BOOTSTRAP = 1000


@dataclass(frozen=True)
class Tenant:
    slug: str
    key: str
    meetings: list[Any]
    ids: dict[int, str]  # population index -> external id


# --- data -------------------------------------------------------------------------------------


def build_tenant(seed: int) -> Tenant:
    """A cohort tenant's meetings (in time order) and a service key to send them with."""
    from django.utils import timezone

    from accounts.services import service_key_create, tenant_create
    from recommender.simulation import SwipeSimulator, build_population, load_sample
    from recommender.simulation.cohorts import COHORT_SIM_CONFIG, CohortConfig, cohort_meetings

    population = build_population(load_sample(), seed=7)
    simulator = SwipeSimulator(population, seed=seed, config=COHORT_SIM_CONFIG)
    # waves three days apart, the last a week ago: within the event retention window
    start = timezone.now() - timedelta(days=3 * 20 + 7)
    meetings = cohort_meetings(simulator, CohortConfig(seed=seed, days_between_waves=3.0), start)
    tenant = tenant_create(slug=f"cohort-{seed}", name=f"Cohort tenant, seed {seed}")
    key = service_key_create(tenant=tenant, name="bench").raw
    people = sorted({m.man for m in meetings} | {m.woman for m in meetings})
    return Tenant(slug=tenant.slug, key=key, meetings=meetings, ids={i: population[i].external_id for i in people})


class Api:
    """The public API through Django's test client, with one tenant's service key."""

    def __init__(self, key: str) -> None:
        from rest_framework.test import APIClient

        self.client = APIClient()
        self.client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post(path, body, format="json")
        if response.status_code >= 300:
            raise RuntimeError(f"POST {path} answered {response.status_code}: {response.content[:500]!r}")
        return response.json()


def send_profiles(api: Api, tenant: Tenant) -> None:
    from recommender.simulation import build_population, load_sample
    from recommender.simulation.cohorts import signup_profile

    population = build_population(load_sample(), seed=7)
    rows = [signup_profile(population[i]) for i in sorted(tenant.ids)]
    for start in range(0, len(rows), 200):
        api.post("/internal/v1/profiles/batch", {"profiles": rows[start : start + 200]})


def send_history(api: Api, tenant: Tenant) -> int:
    """Each training meeting: an impression and a swipe each way, one batch per person and round."""
    from tqdm import tqdm

    sent = 0
    for m in tqdm([m for m in tenant.meetings if not m.held_out], desc=f"{tenant.slug}: history", unit="meeting"):
        for user, other, liked in ((m.man, m.woman, m.man_likes), (m.woman, m.man, m.woman_likes)):
            at = m.timestamp.isoformat()
            ids = tenant.ids
            api.post(
                "/api/v1/events/impressions",
                {"user_id": ids[user], "candidate_ids": [ids[other]], "positions": [0], "context_hash": "wave",
                 "timestamp": at},
            )  # fmt: skip
            api.post(
                "/api/v1/events/swipes",
                {"user_id": ids[user], "session_id": f"wave-{m.wave}-{m.round}", "timestamp": at,
                 "swipes": [{"candidate_id": ids[other], "action": "like" if liked else "pass"}]},
            )  # fmt: skip
            sent += 1
    return sent


# --- scoring ----------------------------------------------------------------------------------


def held_out_scores(api: Api, tenant: Tenant) -> dict[tuple[int, int], tuple[float, float]]:
    """(chooser, partner) -> (p_user_likes, score) for both directions of every held-out meeting."""
    wanted: dict[int, list[int]] = defaultdict(list)
    for m in tenant.meetings:
        if m.held_out:
            wanted[m.man].append(m.woman)
            wanted[m.woman].append(m.man)
    users = sorted(wanted)
    by_ext = {ext: i for i, ext in tenant.ids.items()}
    out: dict[tuple[int, int], tuple[float, float]] = {}
    for start in range(0, len(users), 100):
        requests = [
            {"user_id": tenant.ids[u], "candidate_ids": [tenant.ids[v] for v in wanted[u]]}
            for u in users[start : start + 100]
        ]
        answer = api.post("/api/v1/ml/profiles/rank/batch", {"requests": requests})
        for ranking in answer["rankings"]:
            u = by_ext[ranking["user_id"]]
            for c in ranking["candidates"]:
                out[(u, by_ext[c["candidate_id"]])] = (c["components"]["p_user_likes"], c["score"])
    return out


def auc_table(tenant: Tenant, variants: dict[str, dict[tuple[int, int], tuple[float, float]]]) -> dict[str, Any]:
    """One-way and match AUC of each variant with bootstrap intervals, and paired differences
    with the baseline."""
    from recommender.training.fusion import auc

    held = [m for m in tenant.meetings if m.held_out]
    pairs = [(m.man, m.woman, m.man_likes) for m in held] + [(m.woman, m.man, m.woman_likes) for m in held]
    y_one = np.array([liked for _, _, liked in pairs])
    y_match = np.array([m.match for m in held])
    rng = np.random.default_rng(0)
    one_idx = [rng.integers(0, len(pairs), len(pairs)) for _ in range(BOOTSTRAP)]
    match_idx = [rng.integers(0, len(held), len(held)) for _ in range(BOOTSTRAP)]
    out: dict[str, Any] = {}
    base = variants["baseline"]
    for name, scores in variants.items():
        one = np.array([scores[(a, b)][0] for a, b, _ in pairs])
        match = np.array([scores[(m.man, m.woman)][1] for m in held])
        b_one = np.array([base[(a, b)][0] for a, b, _ in pairs])
        b_match = np.array([base[(m.man, m.woman)][1] for m in held])
        out[name] = {
            "one_way_auc": _with_interval(auc, one, y_one, b_one, one_idx),
            "match_auc": _with_interval(auc, match, y_match, b_match, match_idx),
        }
    return out


def _with_interval(auc: Any, s: np.ndarray, y: np.ndarray, base: np.ndarray, draws: list[np.ndarray]) -> dict[str, Any]:
    point = auc(s, y)
    values, diffs = [], []
    for idx in draws:
        a, b = auc(s[idx], y[idx]), auc(base[idx], y[idx])
        if a is not None and b is not None:
            values.append(a)
            diffs.append(a - b)
    return {
        "auc": point,
        "ci95": [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))],
        "minus_baseline": point - auc(base, y),
        "minus_baseline_ci95": [float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))],
    }


# --- one tenant -------------------------------------------------------------------------------


def train_and_activate(tenant: Tenant, folder: Path, *, learn_fusion: bool) -> dict[str, Any]:
    """The documented commands (or, for the ablation, the same training without the learned
    fusion), then the new version active and loaded."""
    from django.core.management import call_command

    from accounts.models import Tenant as TenantModel
    from recommender.feed.pipeline import feed_reset_for_tests
    from recommender.serving.collaborative import collaborative_wait
    from recommender.training.train import collaborative_train
    from registry.models import ModelVersion, VersionStatus
    from registry.services import model_version_activate

    events, splits = folder / "events", folder / "splits"
    if not splits.exists():
        call_command(
            "extract_events", "--tenant", tenant.slug, "--output", str(events), "--start-date", "2000-01-01",
            verbosity=0,
        )  # fmt: skip
        call_command("build_datasets", "--input", str(events), "--output", str(splits), verbosity=0)
    started = time.perf_counter()
    if learn_fusion:
        call_command("train", "--model", "lmf", "--data", str(splits), "--tenant", tenant.slug, verbosity=0)
    else:
        result = collaborative_train(model="lmf", data_dir=splits, tenant_slug=tenant.slug, learn_fusion=False)
        version = ModelVersion.objects.get(pk=result.version_id)
        model_version_activate(version=version, actor="system:bench", reason="ablation without the learned fusion")
    seconds = time.perf_counter() - started
    owner = TenantModel.objects.get(slug=tenant.slug)
    feed_reset_for_tests()
    served = collaborative_wait(owner.pk)
    version = ModelVersion.objects.get(tenant=owner, model_type="collaborative", status=VersionStatus.ACTIVE)
    return {"seconds": seconds, "version": version.label, "fusion": served is not None and served.fusion is not None,
            "metrics": {k: version.metrics.get(k) for k in ("split_strategy", "schedule", "test_like_auc")},
            "search": {k: version.metrics["search"][k] for k in ("tried", "best")}}  # fmt: skip


def run_tenant(seed: int, var_dir: Path) -> dict[str, Any]:
    from recommender.simulation.cohorts import baseline_scores

    started = time.perf_counter()
    tenant = build_tenant(seed)
    api = Api(tenant.key)
    send_profiles(api, tenant)
    swipes = send_history(api, tenant)
    loaded = time.perf_counter() - started
    variants = {"baseline": baseline_scores(tenant.meetings), "no_model": held_out_scores(api, tenant)}
    folder = var_dir / tenant.slug
    trained = {"lmf_default": train_and_activate(tenant, folder, learn_fusion=True)}
    variants["lmf_default"] = held_out_scores(api, tenant)
    trained["lmf_hand_weights"] = train_and_activate(tenant, folder, learn_fusion=False)
    variants["lmf_hand_weights"] = held_out_scores(api, tenant)
    held = [m for m in tenant.meetings if m.held_out]
    return {
        "seed": seed,
        "people": len(tenant.ids),
        "waves": len({m.wave for m in tenant.meetings}),
        "meetings": len(tenant.meetings),
        "held_out_meetings": len(held),
        "training_decisions_sent": swipes,
        "held_out_match_rate": float(np.mean([m.match for m in held])),
        "load_seconds": loaded,
        "trained": trained,
        "auc": auc_table(tenant, variants),
    }


# --- main -------------------------------------------------------------------------------------


def _cell(value: float, ci: list[float], signed: bool = False) -> str:
    f = "+.3f" if signed else ".3f"
    return f"{value:{f}} [{ci[0]:{f}}, {ci[1]:{f}}]"


def table(runs: list[dict[str, Any]]) -> str:
    rows = []
    for run in runs:
        for name, res in run["auc"].items():
            one, match = res["one_way_auc"], res["match_auc"]
            rows.append([
                run["seed"], name,
                _cell(one["auc"], one["ci95"]), _cell(one["minus_baseline"], one["minus_baseline_ci95"], True),
                _cell(match["auc"], match["ci95"]), _cell(match["minus_baseline"], match["minus_baseline_ci95"], True),
            ])  # fmt: skip
    headers = ["tenant", "variant", "one-way AUC [95% CI]", "vs baseline", "match AUC [95% CI]", "vs baseline"]
    return format_table(headers, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=3, help="cohort tenants (seeds 0..N-1)")
    parser.add_argument("--embedded", action="store_true", help="SQLite and local-memory cache")
    args = parser.parse_args()
    env = isolate("patra_bench_small_tenants", embedded=args.embedded)
    if not env.embedded:
        recreate_database(env)
    elif env.sqlite_path.exists():
        env.sqlite_path.unlink()
    setup_django()
    migrate_schema()
    clear_cache()
    started = time.perf_counter()
    runs = []
    for seed in range(args.tenants):
        runs.append(run_tenant(seed, env.var_dir / f"run-{uuid.uuid4().hex[:6]}"))
        print(table(runs[-1:]), flush=True)
    payload = {
        "benchmark": "small_tenants",
        "command": "python -m bench.small_tenants" + (" --embedded" if args.embedded else "")
        + (f" --tenants {args.tenants}" if args.tenants != 3 else ""),
        "machine": machine_info(),
        "seconds": time.perf_counter() - started,
        "tenants": runs,
    }  # fmt: skip
    path = write_result("small_tenants" + ("_embedded" if args.embedded else ""), payload)
    print(table(runs))
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
