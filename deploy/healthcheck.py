"""The image's HEALTHCHECK: what healthy means follows the role the container runs.

deploy/entrypoint.sh writes the role to /tmp/patra-role before it starts the role's program:

* ``web``: ``GET /livez`` on the local port answers 200 (the process serves; dependencies are
  /readyz's business, which decides whether a balancer sends traffic, not whether to restart);
* ``worker NODE``: the worker answers a Celery ping through the broker (``celery inspect ping``);
* ``beat``: the broker answers (beat holds no other state worth probing);
* anything else (migrate, manage, a shell): healthy while it runs.

Exit 0 when healthy, 1 when not; one line on stderr says why.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

ROLE_FILE = Path("/tmp/patra-role")  # the container's own /tmp, written by the entrypoint


def host_header() -> str:
    """A name Django accepts (the first of ALLOWED_HOSTS), so production's host check passes."""
    for host in os.environ.get("ALLOWED_HOSTS", "").split(","):
        host = host.strip().lstrip(".")
        if host and host != "*":
            return host
    return "localhost"


def web() -> str:
    url = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/livez"
    request = urllib.request.Request(url, headers={"Host": host_header()})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError as exc:
        return f"{url}: {exc}"
    return "" if status == 200 else f"{url} answered {status}"


def worker(node: str) -> str:
    command = ["celery", "-A", "patra", "inspect", "ping", "--destination", node, "--timeout", "5"]
    done = subprocess.run(command, cwd="/app", capture_output=True, text=True, timeout=30, check=False)
    return "" if done.returncode == 0 else f"{node} did not answer a ping: {(done.stdout + done.stderr)[-300:]}"


def broker() -> str:
    url = os.environ.get("CELERY_BROKER_URL") or os.environ.get("REDIS_URL", "")
    if not url.startswith(("redis://", "rediss://")):
        return ""
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5).ping()
    except redis.RedisError as exc:
        return f"broker: {exc}"
    return ""


def main() -> int:
    try:
        role, *args = ROLE_FILE.read_text().split()
    except (OSError, ValueError):
        return 0  # not one of the long-running roles (migrate, manage, a shell)
    if role == "web":
        problem = web()
    elif role == "worker" and args:
        problem = worker(args[0])
    elif role == "beat":
        problem = broker()
    else:
        problem = ""
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
