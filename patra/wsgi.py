"""The WSGI application (gunicorn ``patra.wsgi``): Django's, with the optional tracing and error
reports (core/telemetry.py) turned on between set-up and loading the middleware, as
``django.core.wsgi.get_wsgi_application`` would do without them."""

import os

import django
from django.core.handlers.wsgi import WSGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "patra.settings")
django.setup(set_prefix=False)

from core.telemetry import configure_telemetry  # noqa: E402  (needs the settings configured)

configure_telemetry()
application = WSGIHandler()
