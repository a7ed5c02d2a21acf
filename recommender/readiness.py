"""What this process serves, for the health report (``core.health``, which asks it through the
readiness source registered in ``RecommenderConfig.ready``): the ANN index of every tenant it
holds, and the tenants whose candidate store it is still building; and its warm-up, for
``GET /readyz`` (``core.probes``, through the warm-up source registered there)."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connections

from accounts.models import Tenant
from core.health import Readiness
from core.refresher import in_background, inline
from recommender.feed import store
from recommender.serving import index as index_service
from recommender.serving.collaborative import collaborative_wait
from recommender.serving.ranker import ranker_wait

logger = logging.getLogger(__name__)


def serving_readiness() -> Readiness:
    # Loaded in-process, per tenant, with any load error.
    models = {f"index:tenant-{tenant_id}": status for tenant_id, status in index_service.index_statuses().items()}
    building = store.stores_building()
    if building:
        # This process answers feeds of these tenants 503 warming_up until their stores exist.
        problem = "warming up: building the candidate store of tenant " + ", ".join(str(t) for t in building)
    elif any(m["last_error"] for m in models.values()):
        # A model that failed to load: the previous version keeps serving, but operators must know.
        problem = "a model version failed to load: " + "; ".join(
            f"{name}: {m['last_error']}" for name, m in models.items() if m["last_error"]
        )
    else:
        problem = ""
    return Readiness(models=models, problem=problem)


# --------------------------------------------------------------------------- warm-up (GET /readyz)


@dataclass
class _Warmup:
    """This process's warm-up: one thread that builds, tenant by tenant, what a feed needs."""

    pid: int = 0
    thread: threading.Thread | None = None
    done: bool = False
    step: str = "starting"
    lock: threading.Lock = field(default_factory=threading.Lock)


_warmup = _Warmup()
MODEL_LOAD_TIMEOUT_SECONDS = 600.0


def serving_warmup() -> list[str]:
    """The warm-up source of ``core.probes`` (``GET /readyz``): starts, once per process, a
    thread that builds every tenant's candidate store and loads its serving index,
    collaborative model and ranker (what its first feed would otherwise wait for); what it is
    still doing, or [] once done. A tenant that fails to build is logged and skipped: the health
    report names it, and keeping the whole process out of the balancer would not fix it."""
    if not in_background():  # commands and tests: warm on the caller's thread, every time
        _warm_all(inline=True)
        return []
    with _warmup.lock:
        if _warmup.pid != os.getpid():  # first call, or a child forked after the parent's
            _warmup.pid, _warmup.done, _warmup.step = os.getpid(), False, "starting"
            _warmup.thread = threading.Thread(target=_warm_all, name="serving-warmup", daemon=True)
            _warmup.thread.start()
        return [] if _warmup.done else [f"warming up: {_warmup.step}"]


def _warm_all(*, inline: bool = False) -> None:
    try:
        tenant_ids = list(Tenant.objects.order_by("pk").values_list("pk", flat=True))
    except Exception:  # the database is down: the next /readyz starts the warm-up again
        logger.warning("the serving warm-up could not list the tenants; retrying on the next /readyz", exc_info=True)
        tenant_ids = None
    if tenant_ids is not None:
        for tenant_id in tenant_ids:
            _warm_tenant(tenant_id)
    if not inline:
        with _warmup.lock:
            if tenant_ids is None:
                _warmup.pid = 0  # not warm: start over
            else:
                _warmup.done = True
        connections.close_all()  # this thread's connection dies with it


def _warm_tenant(tenant_id: int) -> None:
    def step(what: str) -> None:
        _warmup.step = f"{what} of tenant {tenant_id}"

    try:
        # Inline: this thread builds and loads, waiting as long as each takes (not a request's
        # bounded first-load wait), so "warm" means built and loaded.
        with inline():
            step("candidate store")
            store.candidate_store(tenant_id)
            if settings.ML_ENABLED:
                step("serving index")
                index_service.serving_index(tenant_id)
            step("collaborative model")
            collaborative_wait(tenant_id, MODEL_LOAD_TIMEOUT_SECONDS)
            step("ranker")
            ranker_wait(tenant_id, MODEL_LOAD_TIMEOUT_SECONDS)
    except Exception:
        logger.exception("warming tenant %s failed; its first feed will try again", tenant_id)
