"""gunicorn's settings for the image's web role (deploy/entrypoint.sh web).

WEB_CONCURRENCY sets the worker processes (default 2), PORT the port (default 8000); anything
else through gunicorn's own GUNICORN_CMD_ARGS (e.g. "--threads 8", docs/deployment.md on large
tenants) or options after `web`. These are process settings of the image, not Django settings,
so they are read here rather than in patra/settings.py; docs/configuration.md lists them.
"""

from __future__ import annotations

import logging
import os
from typing import Any

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Loaded once in the arbiter, then forked: workers start fast and share the code's pages. Each
# forked worker starts its own serving refresher lazily (core/refresher.py).
preload_app = True
# A serving process's first loads run on threads of their own and a request waits at most
# SERVING_FIRST_LOAD_WAIT_SECONDS for each (docs/deployment.md): 60 s is ample.
timeout = 60
graceful_timeout = 30
keepalive = 5
# The heartbeat file on memory, not on the container's (possibly read-only, overlay) disk.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# Requests are logged by the application (structured, with the request id): no access log here.
accesslog = None
errorlog = "-"


def post_worker_init(worker: Any) -> None:
    """Start warming what this worker serves (candidate stores, index, models: core/probes.py) as
    it boots, so /readyz turns 200 without waiting for traffic. A failure (the database still
    down) is logged and left to /readyz, which starts the warm-up again; the worker serves on."""
    try:
        from core.probes import start_warmup

        start_warmup()
    except Exception:
        logging.getLogger("patra.gunicorn").exception("warm-up did not start at worker boot")


def child_exit(server: Any, worker: Any) -> None:
    """A worker died or was replaced: drop its live gauges from the multiprocess metrics."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
