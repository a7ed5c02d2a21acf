"""The health of what a serving process holds: is ML able to serve, and how are its models.

``ml_health`` extends ``core.health.health_report`` (database, cache, broker) with the embedding
model, the tenant's serving index, the active model versions and the sections apps above
recommender register (``register_model_health``: safety's classifier). ``ml_fallback`` is the one
answer to "can ML serve at all" the ML API's endpoints share.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings

from accounts.models import Tenant
from core.health import health_report
from recommender.serving.encoder import EmbeddingUnavailable, loaded_encoder, ml_available
from recommender.serving.index import index_status, serving_index
from registry.models import ModelType, ModelVersion, VersionStatus


def ml_fallback() -> str | None:
    """Why ML cannot serve (``"ml_disabled"``, ``"model_unavailable"``), or None when it can."""
    if not settings.ML_ENABLED:
        return "ml_disabled"
    if not ml_available():
        return "model_unavailable"
    return None


ModelHealth = Callable[[Tenant], dict[str, Any]]

# Sections of ``models`` in the health answer that apps above recommender add at start-up
# (AppConfig.ready), so health never imports them: safety reports its classifier.
_model_health: dict[str, ModelHealth] = {}


def register_model_health(name: str, section: ModelHealth) -> None:
    """``section(tenant)`` answers ``models[name]`` while the database answers (else ``{}``);
    it must not raise: a model that cannot load says so in its answer."""
    _model_health[name] = section


def ml_health(*, tenant: Tenant) -> dict[str, Any]:
    """The ML side of readiness for ``tenant``, on top of ``core.health.health_report``.

    ``unavailable``: the database does not answer, ML is disabled, or the embedding model does
    not load (the ML endpoints answer their fallbacks). ``degraded``: ML serves but something is
    off -- the cache or broker does not answer, a model version failed to load, or the tenant has
    no serving index (feeds fall back). ``ready``: everything answers.
    """
    base = health_report()
    embedding = _embedding_status()
    db_ok = base["checks"]["database"]["ok"]
    index = _index_status(tenant) if db_ok else {"loaded": False}
    versions = _active_versions(tenant) if db_ok else {}
    models = {name: section(tenant) if db_ok else {} for name, section in _model_health.items()}
    if base["status"] == "unavailable":
        status, reason = "unavailable", base["reason"]
    elif not settings.ML_ENABLED:
        status, reason = "unavailable", "ML is disabled (ML_ENABLED=false): the ML endpoints answer their fallbacks"
    elif not embedding["available"]:
        status, reason = "unavailable", f"the embedding model is not available: {embedding['error']}"
    elif base["status"] == "degraded":
        status, reason = "degraded", base["reason"]
    elif index.get("last_error"):
        status, reason = "degraded", f"the tenant's index failed to load: {index['last_error']}"
    elif not index.get("loaded"):
        status, reason = "degraded", "no serving index for this tenant: feeds use the fallback (run build_index)"
    else:
        status, reason = "ready", ""
    return {
        "status": status,
        "reason": reason,
        "ml_enabled": settings.ML_ENABLED,
        "models": {"embedding": embedding, **models},
        "active_versions": versions,
        "index": index,
        "cache": base["checks"]["cache"],
        "broker": base["checks"]["broker"],
        "database": base["checks"]["database"],
        "serving": base["models"],
        "mode": base["mode"],
    }


def _embedding_status() -> dict[str, Any]:
    from recommender.ml.embeddings import resolve_model_path  # torch: loaded when health first asks

    status: dict[str, Any] = {
        "available": False,
        "name": settings.EMBEDDING_MODEL,
        "requested_device": settings.EMBEDDING_DEVICE,
        "backend": getattr(settings, "EMBEDDING_BACKEND", "torch"),
        "device": None,
        "dimension": None,
        "path": None,
        "error": None,
    }
    if not settings.ML_ENABLED:
        status["error"] = "ML is disabled (ML_ENABLED=false)"
        return status
    try:
        status["path"] = str(resolve_model_path(settings.EMBEDDING_MODEL))
    except Exception as exc:
        status["error"] = f"{type(exc).__name__}: {exc}"[:300]
        return status
    try:
        # The encoder the API and the feed use (loaded once per process; a failed load is
        # remembered with its reason, not retried on every call).
        encoder = loaded_encoder()
    except EmbeddingUnavailable as exc:
        status["error"] = str(exc)[:300]
        return status
    status.update(available=True, device=getattr(encoder, "device", None), dimension=int(encoder.dim))
    return status


def _index_status(tenant: Tenant) -> dict[str, Any]:
    error: str | None = None
    try:
        serving_index(tenant.pk)  # what a feed request would load; a no-op once loaded
    except Exception as exc:  # reported, never raised: health must answer
        error = f"{type(exc).__name__}: {exc}"[:300]
    status = index_status(tenant.pk)
    if error and not status.get("last_error"):
        status["last_error"] = error
    if status.get("age_seconds") is not None:
        status["age_seconds"] = round(float(status["age_seconds"]), 1)
    return status


def _active_versions(tenant: Tenant) -> dict[str, str | None]:
    active = dict(
        ModelVersion.objects.filter(tenant=tenant, status=VersionStatus.ACTIVE).values_list("model_type", "version")
    )
    types: list[str] = list(ModelType.values)
    return {t: (f"{t}-v{active[t]}" if t in active else None) for t in types}
