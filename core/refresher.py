"""Serving-state refreshes off the request path.

A serving process keeps derived state in memory and brings it up to date from the database every
few seconds: the candidate store (``recommender/feed/store.py``), the ANN index's deltas
(``recommender/serving/index.py``) and the active model versions (``registry/serving.py``).
Done inline, the request that finds a refresh due pays for it: one index delta refresh took
316 ms on 60,000 profiles, and under HTTP load those requests made the feed's p95 (164 ms
against a p50 of 45 ms at 5 feeds/s).

:func:`refresh_later` hands such work to this process's refresher thread instead, at most once
per key at a time, and returns at once: the request goes on with the state it has, which is at
most one refresh interval older than an inline refresh would have left it. Only refreshes of
state that already serves go here; a first build or load still happens inline, because without
it the request has nothing to serve.

``SERVING_REFRESH_IN_BACKGROUND=false`` runs the work inline, on the caller's thread. Tests use
that (``tests/conftest.py``): their rows live in a transaction that another thread's database
connection cannot see. :func:`inline` does the same for a block (commands, benchmarks).

The thread is created lazily in the process that first needs it, so a gunicorn ``--preload``
master never starts one and every forked worker gets its own.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

from django.conf import settings
from django.db import close_old_connections, connections

logger = logging.getLogger(__name__)

THREAD_NAME = "serving-refresh"

_lock = threading.Lock()
_pending: set[Hashable] = set()
_executor: ThreadPoolExecutor | None = None
_executor_pid: int | None = None


_inline: contextvars.ContextVar[bool] = contextvars.ContextVar("serving_refresh_inline", default=False)


def in_background() -> bool:
    return bool(settings.SERVING_REFRESH_IN_BACKGROUND) and not _inline.get()


@contextmanager
def inline() -> Iterator[None]:
    """Within the block, this thread refreshes and builds serving state itself, waiting as long
    as that takes: for commands and benchmarks, which want the complete answer of a one-shot
    process rather than a request's bounded wait."""
    token = _inline.set(True)
    try:
        yield
    finally:
        _inline.reset(token)


def first_load_wait(seconds: float) -> float:
    """How long a caller may wait for a first build or load that takes ``seconds`` at most by
    itself: all of it inline (commands, tests), at most ``SERVING_FIRST_LOAD_WAIT_SECONDS`` in a
    serving process. A request that waits longer than the web server's worker timeout gets its
    worker killed and the load started over; the waits of one feed (store, index, collaborative
    model, ranker) add up, so four times that setting must stay under the timeout."""
    if not in_background():
        return seconds
    return min(seconds, float(settings.SERVING_FIRST_LOAD_WAIT_SECONDS))


def refresh_later(key: Hashable, work: Callable[[], object]) -> Future[None] | None:
    """Run ``work`` on the refresher thread unless work with the same ``key`` is queued or
    running; inline when background refreshes are off. Returns the queued future (None when
    it ran inline or was already pending), for tests and warm-ups that want to wait."""
    if not in_background():
        work()
        return None
    with _lock:
        if key in _pending:
            return None
        _pending.add(key)
        executor = _executor_for_this_process()
    try:
        return executor.submit(_run, key, work)
    except RuntimeError:  # the interpreter is shutting down: nothing left to serve
        with _lock:
            _pending.discard(key)
        return None


def pending_keys() -> set[Hashable]:
    """Keys queued or running now (health checks and tests)."""
    with _lock:
        return set(_pending)


def wait_idle(timeout: float = 30.0) -> bool:
    """Wait until no refresh is queued or running (benchmarks' warm-up, tests). True if idle."""
    done = threading.Event()
    with _lock:
        if not _pending or _executor is None or _executor_pid != os.getpid():
            return True
        executor = _executor
    # One worker runs jobs in order, so a job queued now finishes after every earlier one.
    executor.submit(done.set)
    return done.wait(timeout)


def _executor_for_this_process() -> ThreadPoolExecutor:
    global _executor, _executor_pid
    pid = os.getpid()
    if _executor is None or _executor_pid != pid:
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=THREAD_NAME)
        _executor_pid = pid
    return _executor


def _after_fork_in_child() -> None:
    # A forked child inherits the parent's lock (possibly held), queue and executor object, but
    # not its thread: start from nothing.
    global _lock, _executor, _executor_pid
    _lock = threading.Lock()
    _pending.clear()
    _executor, _executor_pid = None, None


os.register_at_fork(after_in_child=_after_fork_in_child)


def _run(key: Hashable, work: Callable[[], object]) -> None:
    try:
        _drop_stale_connections()
        work()
    except Exception:  # a refresh failure must not kill the thread; the next one retries
        logger.exception("background refresh %r failed; serving the previous state", key)
    finally:
        with _lock:
            _pending.discard(key)
        _drop_stale_connections()


def _drop_stale_connections() -> None:
    # This thread holds its own database connection: drop it when broken or past its age, as
    # Django does around each request, so a restarted PostgreSQL does not break every refresh.
    try:
        close_old_connections()
    except Exception:  # the work will report a database that is really gone
        logger.warning("closing the refresher thread's old database connections failed", exc_info=True)


def close_connections(timeout: float = 30.0) -> bool:
    """Close the refresher thread's database connections once the queued work is done (tests,
    before their database is flushed or dropped). True if it finished in time."""
    with _lock:
        executor = _executor if _executor_pid == os.getpid() else None
    if executor is None:
        return True
    try:
        executor.submit(connections.close_all).result(timeout)
    except Exception:  # a test teardown reports it by the return value
        return False
    return True
