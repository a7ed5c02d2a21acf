"""core.tasks: services enqueue a task by its name, after commit, eagerly or through the broker."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import shared_task
from celery.result import AsyncResult
from django.db import transaction

from core.tasks import enqueue, enqueue_task, registered_task
from patra.celery import app

ROOT = Path(__file__).resolve().parent.parent
RAN: list[tuple[Any, ...]] = []


@shared_task(name="tests.core_tasks.record")
def record(value: Any, name: str = "") -> Any:
    RAN.append((value, name))
    return value


@pytest.fixture(autouse=True)
def _clear_ran() -> None:
    RAN.clear()


@pytest.fixture
def eager() -> Iterator[None]:
    was = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = was


@pytest.fixture
def not_eager() -> Iterator[None]:
    # The real-mode test run makes tasks eager; these tests must reach the broker.
    was = app.conf.task_always_eager
    app.conf.task_always_eager = False
    yield
    app.conf.task_always_eager = was


@pytest.mark.django_db(transaction=True)
def test_the_task_runs_only_once_the_transaction_commits(eager: None) -> None:
    with transaction.atomic():
        enqueue("tests.core_tasks.record", 1, name="kw")
        assert RAN == []
    assert RAN == [(1, "kw")]


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_task_runs_at_once(eager: None) -> None:
    enqueue("tests.core_tasks.record", 2)
    assert RAN == [(2, "")]


@pytest.mark.django_db(transaction=True)
def test_a_rollback_enqueues_nothing(eager: None) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        enqueue("tests.core_tasks.record", 3)
        raise RuntimeError("rolled back")
    assert RAN == []


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_savepoint_enqueues_nothing_but_the_outer_commit_does(eager: None) -> None:
    with transaction.atomic():
        enqueue("tests.core_tasks.record", "outer")
        with pytest.raises(RuntimeError), transaction.atomic():
            enqueue("tests.core_tasks.record", "inner")
            raise RuntimeError("savepoint rolled back")
    assert RAN == [("outer", "")]


@pytest.mark.django_db(transaction=True)
def test_on_sent_gets_the_result_after_an_eager_run(eager: None) -> None:
    results: list[AsyncResult] = []
    with transaction.atomic():
        enqueue_task("tests.core_tasks.record", args=[4], options={"queue": "default"}, on_sent=results.append)
        assert results == []
    assert RAN == [(4, "")]
    assert len(results) == 1 and results[0].id and results[0].get() == 4


@pytest.mark.django_db(transaction=True)
def test_an_unknown_name_fails_in_the_caller_and_queues_nothing(eager: None) -> None:
    with transaction.atomic():
        with pytest.raises(LookupError, match=r"no\.such\.task"):
            enqueue("no.such.task", 5)
        enqueue("tests.core_tasks.record", 6)
    assert RAN == [(6, "")]


@pytest.mark.django_db(transaction=True)
def test_without_eager_mode_the_message_goes_through_the_broker(not_eager: None) -> None:
    queue = f"core-tasks-test-{uuid.uuid4().hex}"
    sent: list[AsyncResult] = []
    with transaction.atomic():
        enqueue_task(
            "tests.core_tasks.record", args=[7], kwargs={"name": "x"}, options={"queue": queue}, on_sent=sent.append
        )
        assert sent == []
    assert RAN == [], "not run here: a worker would run it"
    assert len(sent) == 1
    with app.connection_for_read() as conn:
        simple = conn.SimpleQueue(queue)
        try:
            message = simple.get(timeout=10)
            message.ack()
            assert message.headers["task"] == "tests.core_tasks.record"
            assert message.headers["id"] == sent[0].id
            args, kwargs, _ = message.decode()
            assert (list(args), kwargs) == ([7], {"name": "x"})
        finally:
            simple.queue.delete()
            simple.close()


def test_a_task_whose_module_no_one_imported_yet_is_found() -> None:
    # A fresh process: Django is set up, but no tasks module of the apps is imported yet.
    code = (
        "import sys, django; django.setup()\n"
        "assert 'safety.tasks' not in sys.modules\n"
        "from core.tasks import registered_task\n"
        "print(registered_task('safety.tasks.classify_profile').name)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "patra.settings"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "safety.tasks.classify_profile"
    assert registered_task("patra.ping").name == "patra.ping"
