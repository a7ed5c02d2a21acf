"""What this process serves, for the health report (``core.health``, which asks it through the
readiness source registered in ``RecommenderConfig.ready``): the ANN index of every tenant it
holds, and the tenants whose candidate store it is still building."""

from __future__ import annotations

from core.health import Readiness
from recommender.feed import store
from recommender.serving import index as index_service


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
