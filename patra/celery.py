"""The Celery application. Configuration lives in patra/settings.py under the CELERY_ prefix."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "patra.settings")

app = Celery("patra")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="patra.ping", acks_late=True)
def ping() -> str:
    """A task with no side effects: lets operators and tests check broker and workers end to end."""
    return "pong"
