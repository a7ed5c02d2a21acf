"""Processes the load benchmarks and fault tests start: a production server (gunicorn), and
throw-away Redis and PostgreSQL servers on their own ports, so that stopping them never touches
the services other work on the machine uses.

* :class:`Gunicorn` -- ``gunicorn patra.wsgi`` with N sync workers, in its own environment.
* :class:`ThrowawayRedis` -- ``redis-server`` on a free port, no persistence; stop/start keep the port.
* :class:`ThrowawayPostgres` -- ``initdb`` of a fresh cluster in a temporary folder (run as the
  ``postgres`` user when we are root, as initdb requires), ``pg_ctl`` start/stop on a free port.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO_DIR = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as exc:
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def http_json(url: str, *, method: str = "GET", body: Any = None, token: str = "", timeout: float = 10.0) -> Any:
    """(status, parsed JSON body or None, seconds)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    elapsed = time.perf_counter() - start
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return status, parsed, elapsed


def manage(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    """Run ``manage.py`` with ``env``; returns stdout (raises with stderr on failure)."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO_DIR, env=env, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


class Gunicorn:
    def __init__(
        self,
        env: dict[str, str],
        *,
        workers: int = 2,
        threads: int = 1,
        log_path: Path | None = None,
        preload: bool = True,
    ):
        self.env = env
        self.preload = preload
        self.workers = workers
        self.threads = threads
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> Gunicorn:
        cmd = [sys.executable, "-m", "gunicorn", "patra.wsgi", "--bind", f"127.0.0.1:{self.port}"]
        cmd += ["--workers", str(self.workers), "--threads", str(self.threads), "--timeout", "60"]
        cmd += ["--graceful-timeout", "5", "--log-level", "warning", "--backlog", "2048"]
        if self.preload:  # import Django once in the master, then fork: faster start, shared pages
            cmd.append("--preload")
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, cwd=REPO_DIR, env=self.env, stdout=log, stderr=log)
        wait_until(lambda: self.alive() and http_json(self.url + "/api/v1/health", timeout=5)[0] in (200, 503),
                   timeout, "gunicorn to answer")  # fmt: skip
        return self

    def alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {self.proc.returncode}; see {self.log_path}")
        return self.proc is not None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None


class ThrowawayRedis:
    def __init__(self) -> None:
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return bool(shutil.which("redis-server") or Path("/usr/bin/redis-server").exists())

    def start(self) -> ThrowawayRedis:
        cmd = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._pings, 15, "redis-server to answer")
        return self

    def _pings(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)
        self.proc = None


def _pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class ThrowawayPostgres:
    """A fresh cluster (trust auth, user ``postgres``, fsync off) in a temporary folder."""

    def __init__(self) -> None:
        bindir = _pg_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found")
        self.bindir = bindir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="patra-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")

    @staticmethod
    def available() -> bool:
        return _pg_bindir() is not None

    def url(self, db: str = "patra") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{db}"

    def _run(self, *cmd: str, timeout: float = 120) -> None:
        full = (["runuser", "-u", "postgres", "--"] if self.as_root else []) + list(cmd)
        result = subprocess.run(full, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {result.stderr[-2000:]}")

    def init(self) -> ThrowawayPostgres:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        return self

    def start(self) -> None:
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off -c full_page_writes=off"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "start")

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def createdb(self, name: str = "patra") -> None:
        self._run(str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)

    def destroy(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def service_env(*, database_url: str, redis_url: str, var_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a server process in real mode (production-like: Celery not eager)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "CELERY_", "PYTEST"))}
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        PATRA_VAR_DIR=str(var_dir),
        ARTIFACT_ROOT=str(var_dir / "artifacts"),
        ARTIFACT_CACHE_DIR=str(var_dir / "artifact-cache"),
        ARTIFACT_STORAGE="local",
        PATRA_ENV="development",
        DEBUG="false",
        LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="patra.settings",
    )
    env.update(extra)
    return env


# --- Load steps --------------------------------------------------------------------------------


def load_step(spec: dict[str, Any], work_dir: Path) -> dict[str, Any]:
    """Run one constant-rate step of ``bench.loadgen`` in a separate process; returns its raw output."""
    work_dir.mkdir(parents=True, exist_ok=True)
    tag = f"{spec['kind']}-{spec['rate']:g}-{time.time_ns()}"
    spec_path, out_path = work_dir / f"{tag}.spec.json", work_dir / f"{tag}.out.json"
    spec_path.write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    subprocess.run(
        [sys.executable, "-m", "bench.loadgen", str(spec_path), str(out_path)],
        cwd=REPO_DIR,
        env=env,
        check=True,
        timeout=spec["duration_s"] + 180,
    )
    out = json.loads(out_path.read_text())
    spec_path.unlink()
    out_path.unlink()
    return out


def step_summary(out: dict[str, Any], ok_status: tuple[int, ...] = (200, 201)) -> dict[str, Any]:
    """Latency percentiles (all requests, scheduled-time based), errors and achieved rate."""
    import numpy as np

    rows = out["results"]
    lat = np.array([r[1] for r in rows], dtype=np.float64)
    ok = [r for r in rows if r[2] in ok_status]
    errors: dict[str, int] = {}
    for r in rows:
        if r[2] not in ok_status:
            errors[str(r[2])] = errors.get(str(r[2]), 0) + 1
    span = (max(r[0] + r[1] / 1000 for r in rows) - min(r[0] for r in rows)) if rows else 0.0
    pct = np.percentile(lat, [50, 95, 99]) if len(lat) else [float("nan")] * 3
    return {
        "offered_rate": out["offered_rate"],
        "requests": out["requests"],
        "ok": len(ok),
        "errors": sum(errors.values()) + out["unfinished"],
        "error_kinds": errors,
        "achieved_rate": round(len(ok) / span, 1) if span else 0.0,
        "p50_ms": round(float(pct[0]), 2),
        "p95_ms": round(float(pct[1]), 2),
        "p99_ms": round(float(pct[2]), 2),
        "max_ms": round(float(lat.max()), 2) if len(lat) else None,
        "generator_lag_s": out["send_lag_s"],
    }


def drain(base_url: str, *, quiet_s: float = 0.5, timeout: float = 180.0) -> float:
    """Wait until the server has worked off the backlog an overloaded step left behind (a health
    request answers within ``quiet_s``), so one step's queue does not pollute the next; returns
    the seconds waited."""
    start = time.monotonic()
    wait_until(
        lambda: http_json(base_url + "/api/v1/health", timeout=60)[2] < quiet_s, timeout, "the server to drain", 1
    )
    return round(time.monotonic() - start, 1)


def saturated(summary: dict[str, Any], p95_limit_ms: float) -> bool:
    """A step the server could not keep up with: errors, or p95 beyond ``p95_limit_ms``; higher
    offered rates would only measure the queue."""
    return summary["errors"] > 0.05 * summary["requests"] or summary["p95_ms"] > p95_limit_ms


# --- CPU accounting ----------------------------------------------------------------------------


class CpuMeter:
    """CPU seconds used during a block by the server (gunicorn master and workers), by PostgreSQL
    (every ``postgres`` process: the backends serving the server and any other) and by the whole
    machine (so the rest: the load generator and anything else running).

    On a machine with few cores the question under load is where the CPU goes; per request,
    these say how many requests per second the cores could serve at best.
    """

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.seconds: dict[str, float] = {}

    def __enter__(self) -> CpuMeter:
        self._start = self._sample()
        self._wall = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._sample()
        self.seconds = {k: round(end[k] - self._start.get(k, 0.0), 2) for k in end}
        self.seconds["wall"] = round(time.monotonic() - self._wall, 2)

    def per_request_ms(self, requests: int) -> dict[str, float]:
        """CPU milliseconds per request of each group (and ``other`` = machine - server - PG)."""
        if requests <= 0 or not self.seconds:
            return {}
        s = self.seconds
        other = s["machine"] - s["server"] - s["postgres"]
        return {
            "server": round(1000 * s["server"] / requests, 2),
            "postgres": round(1000 * s["postgres"] / requests, 2),
            "other": round(1000 * other / requests, 2),
            "machine": round(1000 * s["machine"] / requests, 2),
        }

    def _sample(self) -> dict[str, float]:
        import psutil

        # a process that exits during the block is counted through its parent's reaped-children
        # times (gunicorn's master, PostgreSQL's postmaster): _cpu_seconds
        server = 0.0
        try:
            root = psutil.Process(self.server_pid)
            for proc in [root, *root.children(recursive=True)]:
                server += _cpu_seconds(proc)
        except psutil.NoSuchProcess:
            pass
        postgres = 0.0
        for proc in psutil.process_iter(["name"]):
            if proc.info["name"] in ("postgres", "postmaster"):
                postgres += _cpu_seconds(proc)
        times = psutil.cpu_times()
        machine = times.user + times.system + sum(getattr(times, k, 0.0) for k in ("nice", "irq", "softirq"))
        return {"server": server, "postgres": postgres, "machine": machine}


def _cpu_seconds(proc: Any) -> float:
    import psutil

    try:
        t = proc.cpu_times()
        # children_*: exited children the process reaped (a PostgreSQL backend whose connection
        # closed during the block); without them a group's total could go down
        return float(t.user + t.system + getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0))
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0.0
