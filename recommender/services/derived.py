"""Derived work after a bulk write of profiles: embeddings and safety classification, enqueued
after commit as batched tasks (one per concern per chunk of ids), never one task per profile.

The single-profile path (``services/hooks.py``) enqueues one embedding task and one safety
classification per profile, each with its own model call: 551 profiles cost 551 of each. A bulk
write (``POST /internal/v1/profiles/batch``, ``import_profiles``) enqueues instead
``recommender.tasks.embed_profiles`` (queue ``embeddings``) and, through the batch hooks other
apps register (:func:`register_profiles_hook`), ``safety.tasks.classify_profiles`` (queue
``safety``), with up to ``chunk_size`` ids each: one model call per 256 texts. The serving
indexes follow by themselves: every serving process applies new embeddings to its index within
``INDEX_REFRESH_SECONDS`` (``recommender/serving/index.py``), and ``build_index`` rebuilds it whole.

Nothing here can lose accepted data: the profiles are committed before anything is enqueued, and
a lost task is caught up by ``build_index`` (which embeds whatever is missing) and the hourly
``classify_unscored`` sweep.

**The embedded mode** (eager Celery, no broker): ``.delay()`` runs the task in the calling
process, so a request would wait for the model. Inside :func:`derived_work_in_background` (the
batch endpoint uses it) the batched tasks go instead to this process's *embedded worker*, one
thread that runs them one after the other, as a Celery worker would, after the answer has gone;
elsewhere (commands, tests) they run at commit, in batches. The thread is created lazily, so a
forked server worker gets its own, and it closes its database connections after each job.
Queued work does not survive the process (no broker): ``build_index`` and ``classify_unscored``
catch up, as for a lost task.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.db import connections, transaction

from core.tasks import enqueue

logger = logging.getLogger(__name__)

# Ids per task: one task of 500 profiles embeds in a few seconds on a CPU, far within the task's
# time limit, and a failure retries 500 profiles, not a whole import.
DERIVED_CHUNK_SIZE = 500

ProfilesHook = Callable[[list[int]], None]

# The batch variant of services/hooks.py's per-profile hooks: apps above recommender register at
# start-up (AppConfig.ready) what to enqueue for each chunk of written profiles, so this module
# never imports them. Safety's classification is the one today (counted as ``safety_tasks``).
_profiles_hooks: list[ProfilesHook] = []


def register_profiles_hook(hook: ProfilesHook) -> None:
    if hook not in _profiles_hooks:
        _profiles_hooks.append(hook)


@dataclass(frozen=True)
class DerivedWork:
    """What was (or, inside a transaction, will be at commit) enqueued."""

    profiles: int
    embedding_tasks: int
    safety_tasks: int
    eager: bool  # the embedded mode: the tasks run in this process


def profiles_derived_enqueue(*, profile_ids: Sequence[int], chunk_size: int = DERIVED_CHUNK_SIZE) -> DerivedWork:
    """Enqueue, once the current transaction commits (at once outside one), the embedding and
    safety tasks of ``profile_ids`` in chunks of ``chunk_size`` ids."""
    ids = list(dict.fromkeys(int(i) for i in profile_ids))
    chunks = [ids[i : i + chunk_size] for i in range(0, len(ids), chunk_size)]
    embed = bool(settings.ML_ENABLED)  # as the profile hook: without ML there is nothing to embed
    if chunks:
        transaction.on_commit(lambda: _in_background_or_now(lambda: _dispatch(chunks, embed=embed)))
    return DerivedWork(
        profiles=len(ids),
        embedding_tasks=len(chunks) if embed else 0,
        safety_tasks=len(chunks) if _profiles_hooks else 0,
        eager=bool(settings.CELERY_TASK_ALWAYS_EAGER),
    )


# By name: tasks import the services, so a service never imports them. Runs at once, as this
# module enqueues only after commit.
EMBED_PROFILES_TASK = "recommender.tasks.embed_profiles"


def _dispatch(chunks: list[list[int]], *, embed: bool) -> None:
    """Enqueue every chunk; never raises (the profiles are committed; see the module docstring)."""
    for chunk in chunks:
        if embed:
            _send(EMBED_PROFILES_TASK, chunk)
        for hook in _profiles_hooks:
            _call(hook, chunk)


def _send(task_name: str, chunk: list[int]) -> None:
    try:
        enqueue(task_name, chunk)
    except Exception:
        logger.exception("%s of %d profiles failed; build_index / classify_unscored catch up", task_name, len(chunk))


def _call(hook: ProfilesHook, chunk: list[int]) -> None:
    try:
        hook(chunk)
    except Exception:  # a hook should not raise; if one does, the next chunk and hook still go
        logger.exception("the profiles hook %r of %d profiles failed", hook, len(chunk))


# --- The embedded mode: an in-process worker ---------------------------------------------------

THREAD_NAME = "embedded-worker"
_state = threading.local()  # .background: inside derived_work_in_background on this thread
_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_executor_pid: int | None = None


@contextmanager
def derived_work_in_background() -> Iterator[None]:
    """In the embedded mode, derived work enqueued (committed) inside the block runs on the
    embedded worker thread, not in the request; with a broker, enqueueing is instant anyway."""
    previous = getattr(_state, "background", False)
    _state.background = bool(settings.CELERY_TASK_ALWAYS_EAGER)
    try:
        yield
    finally:
        _state.background = previous


def _in_background_or_now(call: Callable[[], None]) -> None:
    if not getattr(_state, "background", False):
        call()
        return
    global _executor, _executor_pid
    with _lock:
        if _executor is None or _executor_pid != os.getpid():  # created lazily, once per process
            _executor, _executor_pid = ThreadPoolExecutor(max_workers=1, thread_name_prefix=THREAD_NAME), os.getpid()
        _executor.submit(_job, call)


def _job(call: Callable[[], None]) -> None:
    try:
        call()
    except Exception:  # must not kill the thread; build_index / classify_unscored catch up
        logger.exception("derived work on the embedded worker failed")
    finally:
        connections.close_all()  # this thread's own connections


def _after_fork_in_child() -> None:
    # A forked child inherits the lock (possibly held) and the executor object, not its thread.
    global _lock, _executor, _executor_pid
    _lock = threading.Lock()
    _executor, _executor_pid = None, None


os.register_at_fork(after_in_child=_after_fork_in_child)


def wait_idle(timeout: float = 60.0) -> bool:
    """Wait until the embedded worker has run everything queued so far (tests, benchmarks)."""
    with _lock:
        executor = _executor if _executor_pid == os.getpid() else None
    if executor is None:
        return True
    done = threading.Event()
    executor.submit(done.set)  # one thread runs jobs in order: this one comes after the others
    return done.wait(timeout)
