"""The ASGI application: Django's, with the optional tracing and error reports (core/telemetry.py)
turned on before the middleware is loaded, as ``django.core.asgi.get_asgi_application`` would do
without them."""

import os

import django
from django.core.handlers.asgi import ASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "patra.settings")
django.setup(set_prefix=False)

from core.telemetry import configure_telemetry  # noqa: E402  (needs the settings configured)

configure_telemetry()
application = ASGIHandler()
