"""The pseudonym of a profile in exports and collaborative models, without the export code.

Serving hashes live external ids to find a model's rows (``recommender.serving.collaborative``),
and every process imports that module at start-up (the URLconf's feed views), so the hash lives
here rather than in ``recommender.training.extract``, which imports pyarrow; and outside
``recommender.training``, so that serving does not import the training package, which imports
serving's users (the feed).
"""

from __future__ import annotations

from django.utils.crypto import salted_hmac

EXPORT_SALT = "patra.export"


def export_hash(external_id: object) -> str:
    """The pseudonym of a profile in exports (hex HMAC-SHA256, keyed by SECRET_KEY)."""
    return salted_hmac(EXPORT_SALT, str(external_id), algorithm="sha256").hexdigest()
