"""Enqueue a Celery task by its registered name, once the current transaction commits.

Services use this instead of importing a ``tasks`` module: tasks import services (a task loads
its rows and calls a service), so a service importing its tasks would close an import circle::

    from core.tasks import enqueue

    enqueue("safety.tasks.classify_profile", profile.pk, force=True)

The message leaves only after the transaction that wrote the rows commits (at once outside a
transaction; never after a rollback), so a worker always finds them. The task is looked up in the
Celery app's registry and sent with ``apply_async``, which honours eager mode (the embedded mode
and the test suite run it inline, in this process); ``send_task`` would always go to the broker.

core sits under every app, so it reaches the project's Celery app as Celery's current app (the
``patra`` package creates it on import, before Django loads any app) rather than importing
``patra.celery``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from celery import Task, current_app
from celery.result import AsyncResult
from django.db import transaction


def enqueue(name: str, /, *args: Any, **kwargs: Any) -> None:
    """Queue the task registered as ``name`` with these arguments after the current transaction
    commits. ``name`` is positional-only, so a task may take a keyword argument called ``name``."""
    enqueue_task(name, args=args, kwargs=kwargs)


def enqueue_task(
    name: str,
    *,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    on_sent: Callable[[AsyncResult], None] | None = None,
    using: str | None = None,
) -> None:
    """``enqueue`` with Celery's sending ``options`` (``queue=...``, ``countdown=...``) and
    ``on_sent``, called with the result once the message has left (in eager mode: once the task
    has run), e.g. to record its id. ``using`` names the database whose commit to wait for."""
    # Looked up now, not at commit: a wrong name fails in the caller, not after its data is saved.
    task = registered_task(name)

    def send() -> None:
        result = task.apply_async(args=tuple(args), kwargs=dict(kwargs or {}), **dict(options or {}))
        if on_sent is not None:
            on_sent(result)

    transaction.on_commit(send, using=using)


def registered_task(name: str) -> Task:
    """The task registered as ``name``; LookupError if no app defines one.

    A process imports the apps' ``tasks`` modules only on demand (a worker imports them at
    start-up; a web process may never have), so a name not registered yet makes Celery import
    them (autodiscovery) once before giving up."""
    app = current_app._get_current_object()
    if name not in app.tasks:
        app.loader.import_default_modules()
    try:
        task: Task = app.tasks[name]
    except KeyError:
        raise LookupError(f"No Celery task is registered as {name!r}.") from None
    return task
