"""Side features of a tenant's profiles for the feature-aware models, keyed like the exports.

Rows follow an :class:`IdMap` of export pseudonyms (``export_hash(external_id)``), so the
feature matrix lines up with the interaction matrices of :func:`recommender.training.train.splits_load`.
Each row is :func:`recommender.ml.collab.profile_feature_matrix` of the profile's
``ProfileFeatures`` (the same ones the feed builds) and its stored bio embedding (zeros when the
profile has none yet); ids without a profile (another tenant's, or erased) get all-zero rows.
"""

from __future__ import annotations

import numpy as np

from accounts.models import Tenant
from recommender.feed.features import profile_features
from recommender.ml.collab import IdMap, profile_feature_matrix
from recommender.ml.collab.features import BIO_DIM
from recommender.ml.collab.pairs import missing_record, pair_profile_matrix
from recommender.models import Profile, ProfileEmbedding
from recommender.pseudonyms import export_hash
from recommender.serving.encoder import vector_from_bytes


def tenant_profiles(tenant_slug: str | None) -> list[Profile]:
    qs = Profile.objects.all() if tenant_slug is None else Profile.objects.filter(tenant__slug=tenant_slug)
    return list(qs.order_by("id"))


def profile_hashes(profiles: list[Profile]) -> np.ndarray:
    return np.asarray([export_hash(p.external_id) for p in profiles], dtype=str)


def side_features(ids: IdMap, profiles: list[Profile], *, with_bio: bool = True) -> np.ndarray:
    """[len(ids), f] float32 side features of the profiles behind ``ids``; without ``with_bio`` the
    bio-embedding columns are zeros (constant columns carry nothing once standardised)."""
    hashes = profile_hashes(profiles)
    if not with_bio:
        rows = profile_feature_matrix([profile_features(p) for p in profiles], None)
        return _by_id(ids, hashes, rows)
    vectors = {
        pk: vector_from_bytes(raw)
        for pk, raw in ProfileEmbedding.objects.filter(profile__in=[p.pk for p in profiles]).values_list(
            "profile_id", "vector"
        )
    }
    dim = next((v.size for v in vectors.values()), BIO_DIM)
    bio = np.zeros((len(profiles), dim), dtype=np.float32)
    for row, p in enumerate(profiles):
        v = vectors.get(p.pk)
        if v is not None and v.size == dim:
            bio[row] = v
    rows = profile_feature_matrix([profile_features(p) for p in profiles], bio, bio_dim=dim)
    return _by_id(ids, hashes, rows)


def pair_records_of(ids: IdMap, profiles: list[Profile]) -> np.ndarray:
    """[len(ids), RECORD_WIDTH] float32 pair records (``recommender.ml.collab.pairs``) of the
    profiles behind ``ids``: what ``lmf`` computes its pair features from (zeros for ids without a
    profile: no attributes, no interests)."""
    rows = pair_profile_matrix([profile_features(p) for p in profiles])
    out = _by_id(ids, profile_hashes(profiles), rows)
    missing = ~np.isin(np.arange(len(ids)), ids.index(profile_hashes(profiles), missing=-1))
    out[missing] = missing_record()  # attribute codes -1: unknown, never "the same"
    return out


def _by_id(ids: IdMap, hashes: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``rows`` (one per profile, in ``hashes`` order) placed at their rows of ``ids`` (zeros for
    ids without a profile)."""
    out = np.zeros((len(ids), rows.shape[1]), dtype=np.float32)
    where = ids.index(hashes, missing=-1)
    known = where >= 0
    out[where[known]] = rows[known]
    return out


def tenant_slug_of(slug: str | None) -> str | None:
    """The slug if that tenant exists, else None (features then cover every tenant)."""
    return slug if slug and Tenant.objects.filter(slug=slug).exists() else None
