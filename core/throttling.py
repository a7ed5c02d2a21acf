"""Burst and sustained request limits per credential, counted in the Django cache.

Every API call counts against two windows of its credential: a short **burst** window and a long
**sustained** one, with rates per credential kind (``user_*`` for user tokens, ``service_*`` for
service keys). The model-calling ML endpoints also count against the stricter ``ml_burst`` and
``ml_sustained`` windows. Rates come from ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`` (read from
the environment in ``patra/settings.py``), read on every request so a changed setting applies at
once.

A rate is ``"<requests>/<period>"`` with the period ``s``, ``m``, ``h`` or ``d`` (``"3000/h"``,
or DRF's long forms such as ``"60/min"``), optionally with a count of units (``"100/10s"``);
``"off"`` (or empty) disables that window.

How it counts: a fixed window per (scope, credential) whose counter is an atomic cache
increment (Redis ``INCR`` in real mode), so every API process shares one count and a request
costs one cache round trip per window, whatever the rate. At a window boundary a client can
briefly get up to twice a window's rate; the burst window bounds that spike. An exceeded window
answers 429 with ``Retry-After``: the seconds until that window ends.

Fail-open: when the cache is unreachable, requests are let through (logged once per outage) --
a Redis outage must degrade the service, not stop it -- and for ``OUTAGE_SKIP_SECONDS`` after a
failure the counters are not even tried, so a dead or hanging Redis does not add its timeouts to
every request. Requests without a credential (the public health endpoint, the schema) are not
throttled here.
"""

from __future__ import annotations

import logging
import math
import re
import time
from abc import ABC, abstractmethod
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.views import APIView

logger = logging.getLogger(__name__)

PERIOD_SECONDS: dict[str, int] = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*$")
OFF_VALUES = frozenset({"", "off", "none", "0"})


class InvalidRate(ValueError):
    pass


class Credential(ABC):
    """What the throttles count by: an authenticated API credential, the ``request.user`` of an
    API call (``accounts.authentication.ApiClient``). core sits under the app that authenticates,
    so it knows a credential only by this base; any other ``request.user`` is not throttled."""

    @property
    @abstractmethod
    def is_service(self) -> bool:
        """A backend service's key (the ``service_*`` rates) rather than a user's token (``user_*``)."""

    @property
    @abstractmethod
    def ident(self) -> str:
        """A stable identity for the counters (never the raw key)."""


@lru_cache(maxsize=64)
def parse_rate(rate: str | None) -> tuple[int, int] | None:
    """``"100/10s"`` -> (100, 10); ``"3000/h"`` -> (3000, 3600); ``"off"`` -> None."""
    if rate is None or rate.strip().lower() in OFF_VALUES:
        return None
    match = _RATE.match(rate.lower())
    if not match:
        raise InvalidRate(f"{rate!r} is not a rate like '100/10s' or '3000/h'")
    count, multiple, unit = int(match.group(1)), match.group(2), match.group(3)
    if unit[0] not in PERIOD_SECONDS:
        raise InvalidRate(f"{rate!r}: the period must be in s, m, h or d")
    if count < 1:
        raise InvalidRate(f"{rate!r}: the request count must be at least 1")
    period = (int(multiple) if multiple else 1) * PERIOD_SECONDS[unit[0]]
    if period < 1:
        raise InvalidRate(f"{rate!r}: the period must be at least one second")
    return count, period


def throttle_rates() -> dict[str, str | None]:
    return dict(settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES") or {})


OUTAGE_SKIP_SECONDS = 5.0

# One warning per cache outage, then debug until the cache answers again.
_outage_logged = False
# Until this time.monotonic(), the counters are not tried (the cache failed just before).
_skip_until = 0.0


def _cache_failed(exc: Exception) -> None:
    global _outage_logged, _skip_until
    _skip_until = time.monotonic() + OUTAGE_SKIP_SECONDS
    if not _outage_logged:
        logger.warning("throttle counters unavailable, letting requests through: %s", exc)
        _outage_logged = True
    else:
        logger.debug("throttle counters unavailable: %s", exc)


def _count(key: str, timeout: int) -> int:
    """Increment the window's counter (created at 1) and return it."""
    client = _redis_client()
    if client is not None:
        # One round trip: create the counter at 0 with the window's expiry unless it exists,
        # then INCR. Through the cache API it took three (add, then incr's EXISTS and INCR), on
        # every request, for each window.
        full_key = cache.make_and_validate_key(key)
        pipe = client.pipeline(transaction=False)
        pipe.set(full_key, 0, ex=timeout, nx=True)
        pipe.incr(full_key)
        return int(pipe.execute()[1])
    if cache.add(key, 1, timeout=timeout):
        return 1
    try:
        return int(cache.incr(key))
    except ValueError:  # the key expired between add and incr: a new window started
        cache.add(key, 1, timeout=timeout)
        return 1


def _redis_client() -> Any:
    """The Redis client behind Django's Redis cache backend, or None for other backends (the
    local-memory cache of the embedded mode). ``_cache.get_client`` is the backend's own
    accessor (Django 4.0+); the counters stay under the cache's key prefix and integer encoding,
    so ``cache.get`` still reads them."""
    backend = getattr(cache, "_cache", None)
    get_client = getattr(backend, "get_client", None)
    return get_client(write=True) if get_client is not None else None


class CredentialThrottle(BaseThrottle):
    """A fixed-window counter keyed by (scope, credential). Subclasses set ``window``
    (``burst`` or ``sustained``) and, for the ML pair, ``ml = True``."""

    window: str = "burst"
    ml: bool = False

    def __init__(self) -> None:
        self._wait: float | None = None
        self.scope: str | None = None

    def scope_for(self, client: Credential) -> str:
        if self.ml:
            return f"ml_{self.window}"
        return f"{'service' if client.is_service else 'user'}_{self.window}"

    def allow_request(self, request: Request, view: APIView) -> bool:
        client = request.user
        if not isinstance(client, Credential):
            return True
        self.scope = self.scope_for(client)
        parsed = parse_rate(throttle_rates().get(self.scope))
        if parsed is None:
            return True
        limit, period = parsed
        if time.monotonic() < _skip_until:
            return True  # the cache failed moments ago: do not wait for its timeouts again
        now = time.time()
        window = int(now // period)
        key = f"throttle:{self.scope}:{client.ident}:{window}"
        try:
            count = _count(key, timeout=period + 5)
        except Exception as exc:  # any cache backend error: fail open
            _cache_failed(exc)
            return True
        global _outage_logged
        _outage_logged = False
        if count > limit:
            self._wait = max((window + 1) * period - now, 0.001)
            return False
        return True

    def wait(self) -> float | None:
        return None if self._wait is None else float(math.ceil(self._wait))


class CredentialBurstThrottle(CredentialThrottle):
    window = "burst"


class CredentialSustainedThrottle(CredentialThrottle):
    window = "sustained"


class MlBurstThrottle(CredentialThrottle):
    window = "burst"
    ml = True


class MlSustainedThrottle(CredentialThrottle):
    window = "sustained"
    ml = True


# The general pair plus the stricter ML pair, for the model-calling endpoints.
ML_THROTTLES: list[type[BaseThrottle]] = [
    CredentialBurstThrottle,
    CredentialSustainedThrottle,
    MlBurstThrottle,
    MlSustainedThrottle,
]
