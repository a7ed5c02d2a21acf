"""The feed over HTTP under a constant offered rate, with the framework floor measured alongside.

    .venv/bin/python -m bench.http_load                                   # okcupid-sample, 3,000
    .venv/bin/python -m bench.http_load --population synthetic --size 60000 --reuse
    .venv/bin/python -m bench.http_load --rates 25,50,100,200 --duration 30 --workers 4

What runs: a production server (``gunicorn patra.wsgi``, ``--workers`` sync workers, preloaded)
on the benchmark's PostgreSQL database and Redis, with the population, history, embeddings and
index prepared by bench/feed_latency.py's own preparation (imported, not copied; ``--reuse``
takes a database feed_latency already prepared). ``--users`` distinct active users (seeded)
each get a user token. A separate process, the open-loop generator bench/loadgen.py, offers a
constant rate of ``GET /api/v1/feed?count=20`` (each request a different user, round robin) for
``--duration`` seconds per rate; then the same rate of ``GET /api/v1/me`` with the same tokens:
the framework floor (authentication, one profile, JSON) of the same server in the same run.
Latency is measured from each request's scheduled time, so queueing counts (no coordinated
omission). ``--floor-rates`` then offers ``/api/v1/me`` alone at rising rates until it saturates:
what the server sustains when a request does no feed work at all, a ceiling for any feed rate.
Before measuring, a warm-up step lets every worker build its candidate store and
load the index, as a server does after start. Feeds log their impressions, as in production.

Reported per offered rate: p50/p95/p99, errors and the achieved rate of both endpoints, the
feed/floor ratio of p50 and p95, and the highest offered rate whose feed p95 is under 50 ms with
no errors. Target at 1,000,000 profiles: p95 < 50 ms at 200 requests/s, no errors.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from bench import feed_latency
from bench.common import REPO_DIR, Phases, backend_info, format_table, isolate, machine_info, setup_django, write_result
from bench.server import CpuMeter, Gunicorn, drain, load_step, saturated, step_summary

TARGET_P95_MS = 50.0
TARGET_RATE = 200.0


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m bench.http_load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")], default=[25, 50, 100, 200, 300])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per offered rate and endpoint")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds of warm-up load")
    parser.add_argument("--users", type=int, default=2000, help="distinct users (tokens)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
    parser.add_argument("--count", type=int, default=20, help="items per feed")
    parser.add_argument(
        "--floor-rates",
        type=lambda s: [float(x) for x in s.split(",")],
        default=[],
        help="after the feed steps, GET /api/v1/me alone at these rates (until saturated): the most"
        " requests/s the server sustains when a request does no feed work at all",
    )
    parser.add_argument("--concurrency", type=int, default=256, help="most requests in flight (generator)")
    args, rest = parser.parse_known_args(argv)
    return args, rest  # the rest (--population, --size, --reuse, --swipes, --seed) goes to feed_latency


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, rest = parse_args(argv)
    prep = feed_latency.parse_args(rest)
    name = feed_latency.run_name(prep)
    # The same database as bench.feed_latency: --reuse shares one preparation between them.
    env = isolate(f"patra_bench_feed_{name}", embedded=False)
    setup_django()
    phases = Phases()
    tenant, facts, reused = feed_latency.open_or_prepare(env, prep, phases)
    from django.conf import settings
    from django.db import connections

    from accounts.services import user_token_issue

    with phases("tokens"):
        users = feed_latency.pick_users(tenant, args.users, prep.seed)
        tokens = [user_token_issue(profile=u).raw for u in users]
    profiles = feed_latency._profile_count(tenant)
    connections.close_all()

    server = Gunicorn(dict(os.environ), workers=args.workers, log_path=env.var_dir / "gunicorn.log")
    feed_path = f"/api/v1/feed?count={args.count}"
    load_before = os.getloadavg()
    steps: list[dict[str, Any]] = []
    with phases("server start"):
        server.start()
    try:
        with phases("warm-up"):
            # every worker builds its candidate store and loads the index on its first feeds
            load_step(_spec(server, feed_path, tokens, 10, args.warmup, args), env.var_dir)
        for rate in args.rates:
            drained = drain(server.url)
            feed = _measured_step(server, _spec(server, feed_path, tokens, rate, args.duration, args), env.var_dir)
            drained += drain(server.url)
            floor = _measured_step(server, _spec(server, "/api/v1/me", tokens, rate, args.duration, args), env.var_dir)
            step = {
                "offered_rate": rate,
                "feed": feed,
                "floor_me": floor,
                "ratio_p50": round(feed["p50_ms"] / max(floor["p50_ms"], 1e-9), 2),
                "ratio_p95": round(feed["p95_ms"] / max(floor["p95_ms"], 1e-9), 2),
                "drain_wait_s": drained,
            }
            steps.append(step)
            print(
                f"-- {rate:g}/s  feed p50 {feed['p50_ms']} p95 {feed['p95_ms']} p99 {feed['p99_ms']} "
                f"errors {feed['errors']} | /me p50 {floor['p50_ms']} p95 {floor['p95_ms']} errors {floor['errors']}",
                flush=True,
            )
            if saturated(feed, 20 * TARGET_P95_MS):
                print(f"-- saturated at {rate:g}/s: higher rates not run", flush=True)
                break
        floor_steps = _floor_capacity(server, tokens, args, env.var_dir)
    finally:
        server.stop()
    load_after = os.getloadavg()
    ok = [s["offered_rate"] for s in steps if s["feed"]["p95_ms"] < TARGET_P95_MS and s["feed"]["errors"] == 0]
    at_target = [s for s in steps if s["offered_rate"] == TARGET_RATE]
    payload = {
        "benchmark": "http_load",
        "command": "python -m bench.http_load " + " ".join(argv),
        "machine": machine_info(),
        "backend": backend_info(),
        "server": {
            "gunicorn_workers": args.workers,
            "worker_class": "sync",
            "preload": True,
            # how often each worker re-reads deltas: at a few requests/s per worker most feeds pay it
            "refresh_seconds": {
                name: getattr(settings, name)
                for name in (
                    "FEED_STORE_REFRESH_SECONDS",
                    "FEED_ELO_REFRESH_SECONDS",
                    "INDEX_REFRESH_SECONDS",
                    "REGISTRY_REFRESH_SECONDS",
                )
            },
        },
        "population": {"name": prep.population, "profiles": profiles, "swipes": prep.swipes, "seed": prep.seed},
        "preparation": {**facts, "reused": reused},
        "load": {"users": len(tokens), "duration_s": args.duration, "warmup_s": args.warmup, "feed_count": args.count},
        "load_average_1_5_15": {
            "before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in load_after],
        },
        "phase_seconds": phases.seconds,
        "steps": steps,
        "highest_rate_feed_p95_under_50ms": max(ok, default=None),
        "floor_alone": floor_steps,
        "highest_rate_floor_p95_under_50ms": max(
            (s["offered_rate"] for s in floor_steps if s["p95_ms"] < TARGET_P95_MS and s["errors"] == 0), default=None
        ),
        "target": {"rate": TARGET_RATE, "p95_ms": TARGET_P95_MS, "profiles": 1_000_000},
        "target_met_at_this_size": bool(
            at_target and at_target[0]["feed"]["p95_ms"] < TARGET_P95_MS and at_target[0]["feed"]["errors"] == 0
        ),
    }
    path = write_result(f"http_load_{name}", payload)
    rows = [
        [s["offered_rate"], s["feed"]["achieved_rate"], s["feed"]["p50_ms"], s["feed"]["p95_ms"], s["feed"]["p99_ms"],
         s["feed"]["errors"], s["floor_me"]["p50_ms"], s["floor_me"]["p95_ms"], s["floor_me"]["errors"],
         s["ratio_p95"]]
        for s in steps
    ]  # fmt: skip
    print(f"\nhttp_load {name}: {profiles:,} profiles, {args.workers} gunicorn workers")
    headers = ["offered/s", "feed ok/s", "feed p50", "feed p95", "feed p99", "feed err", "/me p50", "/me p95"]
    print(format_table([*headers, "/me err", "p95 ratio"], rows))
    parts = ("server", "postgres", "other", "machine")
    cpu_rows = [
        [s["offered_rate"], name, *(s[key]["cpu_ms_per_request"].get(k) for k in parts)]
        for s in steps
        for name, key in (("feed", "feed"), ("/me", "floor_me"))
    ]
    for s in floor_steps:
        cpu_rows.append([s["offered_rate"], "/me alone", *(s["cpu_ms_per_request"].get(k) for k in parts)])
    print("\nCPU ms per request (server = gunicorn, other = the load generator and the rest of the machine):")
    print(format_table(["offered/s", "endpoint", "server", "postgres", "other", "machine"], cpu_rows))
    best = payload["highest_rate_feed_p95_under_50ms"]
    print(f"highest offered rate with feed p95 < {TARGET_P95_MS:g} ms and no errors: {best}")
    if floor_steps:
        rows = [[s["offered_rate"], s["achieved_rate"], s["p50_ms"], s["p95_ms"], s["p99_ms"], s["errors"]]
                for s in floor_steps]  # fmt: skip
        print("\n/me alone (the framework floor's own capacity):")
        print(format_table(["offered/s", "ok/s", "p50", "p95", "p99", "errors"], rows))
        floor_best = payload["highest_rate_floor_p95_under_50ms"]
        print(f"highest offered rate with /me p95 < {TARGET_P95_MS:g} ms: {floor_best}")
    print(f"written {path.relative_to(REPO_DIR)}")


def _measured_step(server: Gunicorn, spec: dict[str, Any], var_dir: Any) -> dict[str, Any]:
    """One load step's summary, with the CPU each part of the machine spent per request."""
    assert server.proc is not None
    with CpuMeter(server.proc.pid) as cpu:
        out = load_step(spec, var_dir)
    summary = step_summary(out)
    summary["cpu_seconds"] = cpu.seconds
    summary["cpu_ms_per_request"] = cpu.per_request_ms(summary["requests"])
    return summary


def _floor_capacity(server: Gunicorn, tokens: list[str], args: Any, var_dir: Any) -> list[dict[str, Any]]:
    """``/api/v1/me`` alone at each of ``--floor-rates`` until saturated: a feed does all of this
    request's work (authentication, one profile, JSON) and then its own, so no feed rate can be
    sustained above the rate this one saturates at."""
    steps = []
    for rate in args.floor_rates:
        drain(server.url)
        summary = _measured_step(server, _spec(server, "/api/v1/me", tokens, rate, args.duration, args), var_dir)
        steps.append(summary)
        print(f"-- /me alone {rate:g}/s  p50 {summary['p50_ms']} p95 {summary['p95_ms']} errors {summary['errors']}")
        if saturated(summary, 20 * TARGET_P95_MS):
            break
    return steps


def _spec(server: Gunicorn, path: str, tokens: list[str], rate: float, duration: float, args: Any) -> dict[str, Any]:
    return {
        "base_url": server.url,
        "kind": "get",
        "path": path,
        "rate": rate,
        "duration_s": duration,
        "concurrency": args.concurrency,
        "tokens": tokens,
    }


if __name__ == "__main__":
    main()
