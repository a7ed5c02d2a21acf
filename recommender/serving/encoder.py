"""The text encoder a process holds: the configured bio-embedding model, loaded once per process.

Every process imports this at start-up (profile hooks, the feed) but few ever encode a text, so
the model (torch, transformers) loads on the first call, not on import. Embedding writes
(:mod:`recommender.services.embeddings`), index builds and the ML API encode through here. The
stored form of its vectors (``ProfileEmbedding.vector``) is defined here too, so that everything
reading them (the serving index, index builds, training) depends on the encoder, not on the
embedding writes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from django.conf import settings

from recommender.ml.embedding_spec import ModelNotAvailable

if TYPE_CHECKING:
    from recommender.ml.embeddings import BioEncoder

logger = logging.getLogger(__name__)

VECTOR_DTYPE = np.dtype("<f4")  # float32 little-endian, as documented on ProfileEmbedding.vector


class EmbeddingUnavailable(Exception):
    """Embeddings cannot be computed: ML is disabled or the model cannot be loaded."""


# (model, device, backend) -> the loaded encoder, or why it could not load. Cached per process:
# the feed asks on every request, and a failed load is not retried (seconds per call for a model
# that is not on disk).
_encoders: dict[tuple[str, str, str], BioEncoder | str] = {}
_encoders_lock = threading.Lock()


def loaded_encoder() -> BioEncoder:
    if not settings.ML_ENABLED:
        raise EmbeddingUnavailable("ML is disabled (ML_ENABLED=false)")
    key = (settings.EMBEDDING_MODEL, settings.EMBEDDING_DEVICE, settings.EMBEDDING_BACKEND)
    outcome = _encoders.get(key)
    if outcome is None:
        with _encoders_lock:  # one thread loads, the others wait for its outcome
            outcome = _encoders.get(key)
            if outcome is None:
                outcome = _encoders[key] = _load_encoder(*key)
    if isinstance(outcome, str):
        raise EmbeddingUnavailable(outcome)
    return outcome


def _load_encoder(model: str, device: str, backend: str) -> BioEncoder | str:
    try:
        # torch and transformers load here, with the model, and not when this module is imported:
        # every process imports it at start-up (profile hooks, the feed), few ever encode a text.
        from recommender.ml.embeddings import get_encoder

        # The ONNX backends cache their derived ONNX file under ARTIFACT_ROOT (built offline once).
        return get_encoder(model, device, backend=backend, artifact_dir=settings.ARTIFACT_ROOT / "embeddings-onnx")
    except (ModelNotAvailable, ImportError, OSError, ValueError, RuntimeError) as exc:
        message = f"embedding model {model!r} ({backend}) on device {device!r} could not be loaded: {exc}"
        logger.error(message)
        return message


def ml_available() -> bool:
    """True when ML is enabled and the configured model loads (tried once per process)."""
    try:
        loaded_encoder()
    except EmbeddingUnavailable:
        return False
    return True


def encode_texts(texts: Sequence[str]) -> np.ndarray:
    """(n, dim) float32 unit rows; raises EmbeddingUnavailable."""
    return loaded_encoder().encode(list(texts))


def embedding_dim() -> int:
    """Dimension of the configured model's vectors; raises EmbeddingUnavailable."""
    return loaded_encoder().dim


def vector_from_bytes(raw: bytes | memoryview) -> np.ndarray:
    """(dim,) float32 from stored bytes (PostgreSQL returns memoryview, SQLite bytes)."""
    return np.frombuffer(bytes(raw), dtype=VECTOR_DTYPE).astype(np.float32, copy=False)
