"""Which classifier serves, per tenant: the registry's active ``safety`` version when there is
one (hot-swapped by ``registry.serving.ActiveModel``), else the local checkpoint written by
``train_safety`` (SAFETY_CHECKPOINT_DIR), else rules only. The version string says which."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

from recommender.serving import encoder as embedding_service
from registry.models import ModelVersion
from registry.serving import ActiveModel
from safety.ml.classifier import SafetyClassifier, SafetyResult
from safety.ml.fake import BehaviourSignals
from safety.ml.heads import TextHeads

logger = logging.getLogger(__name__)

RULES_ONLY_VERSION = "safety-rules-only"

_holders: dict[int, ActiveModel[SafetyClassifier]] = {}
_local: dict[str, tuple[float, SafetyClassifier]] = {}
_lock = threading.Lock()


def _load_version(version: ModelVersion, path: Path) -> SafetyClassifier:
    return SafetyClassifier(TextHeads.load(path), version.label)


def _local_classifier() -> SafetyClassifier | None:
    directory = Path(settings.SAFETY_CHECKPOINT_DIR)
    config = directory / "config.json"
    if not config.exists():
        return None
    mtime = config.stat().st_mtime
    with _lock:
        cached = _local.get(str(directory))
        if cached is not None and cached[0] == mtime:
            return cached[1]
        digest = hashlib.sha256(config.read_bytes()).hexdigest()[:8]
        clf = SafetyClassifier(TextHeads.load(directory), f"safety-local-{digest}")
        _local[str(directory)] = (mtime, clf)
        return clf


def classifier_for(tenant_id: int) -> SafetyClassifier:
    with _lock:
        holder = _holders.get(tenant_id)
        if holder is None:
            holder = _holders[tenant_id] = ActiveModel(tenant_id, "safety", loader=_load_version)
    current = holder.get()
    if current is not None:
        return current[1]
    return _local_classifier() or SafetyClassifier(None, RULES_ONLY_VERSION)


def encode(texts: Sequence[str]) -> np.ndarray:
    """MiniLM vectors through the embedding service (its model, device and backend); raises
    ``EmbeddingUnavailable`` with ML disabled or the model missing."""
    return embedding_service.encode_texts(texts)  # looked up per call: tests replace it


def classify(
    tenant_id: int, texts: Sequence[str], behaviour: Sequence[BehaviourSignals | None] | None = None
) -> tuple[list[SafetyResult], str, str | None]:
    """(results, the version that produced them, fallback reason or None).

    The tenant's classifier; with ML disabled or the embedding model unavailable, trained heads
    cannot run, so the rules (and the behaviour signals) answer alone under
    ``RULES_ONLY_VERSION`` with the reason (``ml_disabled`` / ``model_unavailable``): a stored
    score then says what produced it, and the next change reclassifies it with the model.
    """
    clf = classifier_for(tenant_id)
    if clf.heads is None:
        return clf.classify(texts, behaviour=behaviour), clf.version, None
    try:
        embedding_service.loaded_encoder()  # raises when ML is off or the model cannot be loaded
    except embedding_service.EmbeddingUnavailable:
        reason = "ml_disabled" if not settings.ML_ENABLED else "model_unavailable"
        rules = SafetyClassifier(None, RULES_ONLY_VERSION)
        return rules.classify(texts, behaviour=behaviour), RULES_ONLY_VERSION, reason
    return clf.classify(texts, encode=encode, behaviour=behaviour), clf.version, None


def classifier_status(tenant: Any) -> dict[str, Any]:
    """The ``safety`` section of the ML health answer (registered in ``SafetyConfig.ready``):
    which classifier serves the tenant. Never raises: a classifier that cannot load says why."""
    try:
        clf = classifier_for(tenant.pk)
    except Exception as exc:
        return {"available": False, "name": None, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {
        "available": True,
        "name": clf.version,
        "trained_heads": clf.heads is not None,
        "error": None if clf.version != RULES_ONLY_VERSION else "no trained heads: rules only (run train_safety)",
    }


def reset_for_tests() -> None:
    with _lock:
        _holders.clear()
        _local.clear()
