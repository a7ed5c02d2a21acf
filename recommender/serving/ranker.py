"""The ranker as the feed's final scorer, chosen by the registry's active version or an experiment.

When the tenant has an active ``ranker`` version (``python manage.py train_ranker``), the
reciprocal feed takes the user's side from that LightGBM model: its calibrated P(user likes
candidate) (the ``ranker`` component) replaces the hand-weighted P(user likes candidate) in the
reciprocal fusion with P(candidate likes user). The ranker is trained on the user's own swipes,
so it knows one side only; ranked by its score alone the simulated feed made more likes but 14 %
fewer matches (docs/benchmarks.md). A ranker saved without a calibration orders the feed by its
raw score. While a ``ranker`` experiment runs, the user's arm (deterministic per
user, :mod:`registry.experiments`) picks the version. No active version, ML off, or a version that
cannot be loaded: the fusion ranks, as before.

Features are built here from what the feed already holds, by name
(:data:`recommender.ml.ranker.RANKER_FEATURES`, in the order the loaded ranker was trained on), with
the same definitions as training (:func:`recommender.ml.ranker.context_features`):

* structured, demographic and per-attribute agreement (``same_<attribute>``):
  :func:`recommender.ml.ranker.pair_features`;
* ``p_uv_<model>`` / ``p_vu_<model>``: the active collaborative model's calibrated probabilities
  (the training set uses the version active when it was built);
* ``bio_similarity``: the cosine of the two bio vectors (the feed's ``similarity``);
* Elo and the swipe counters (``EloRating``), the like rates smoothed as in training;
* ``liked_you``.

Rankers are small (LightGBM text files), so a version is loaded the first time an experiment arm
needs it, with the request waiting for it, and kept per process (:class:`registry.serving.PinnedVersions`);
the active one follows the registry through :class:`registry.serving.ActiveModel` (hot swap, no
restart).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from accounts.models import Tenant
from core.refresher import first_load_wait
from recommender.ml.ranker import SOURCE_MODELS, Ranker, pair_features, smoothed_rate
from recommender.ml.structured import CandidateBatch, ProfileFeatures
from recommender.models import Profile
from registry.experiments import experiment_for_impression
from registry.models import ModelType, ModelVersion
from registry.serving import PinnedVersions, TenantModels

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankerChoice:
    """The ranker serving one feed: its version label and, when an experiment chose it, the arm."""

    label: str
    ranker: Ranker
    arm: str | None = None


@dataclass(frozen=True)
class RankerInputs:
    """What the feed knows about the user and its candidates (row-aligned arrays, (n,))."""

    user: ProfileFeatures
    cands: CandidateBatch
    similarity: np.ndarray  # cosine of the bio vectors, NaN where unavailable
    collab_model: str | None  # the collaborative model's name ("als", "lmf", ...) or None
    collab_uv: np.ndarray | None  # log-odds that the user likes each candidate
    collab_vu: np.ndarray | None  # log-odds that each candidate likes the user
    elo_user: float
    elo_candidate: np.ndarray
    user_swipes: float
    user_likes: float
    cand_swipes: np.ndarray
    cand_likes: np.ndarray
    liked_you: np.ndarray  # bool


def ranker_columns(inputs: RankerInputs) -> dict[str, Any]:
    """Feature name -> (n,) array (or scalar) for :meth:`Ranker.matrix`."""
    cols: dict[str, Any] = dict(pair_features(inputs.user, inputs.cands))
    if inputs.collab_model in SOURCE_MODELS and inputs.collab_uv is not None and inputs.collab_vu is not None:
        cols[f"p_uv_{inputs.collab_model}"] = _sigmoid(inputs.collab_uv)
        cols[f"p_vu_{inputs.collab_model}"] = _sigmoid(inputs.collab_vu)
    cols.update(
        bio_similarity=inputs.similarity,
        elo_user=inputs.elo_user,
        elo_candidate=inputs.elo_candidate,
        cand_swipes_given=inputs.cand_swipes,
        cand_like_rate=smoothed_rate(inputs.cand_likes, inputs.cand_swipes),
        user_swipes_given=inputs.user_swipes,
        user_like_rate=float(smoothed_rate(inputs.user_likes, inputs.user_swipes)),
        liked_you=inputs.liked_you.astype(np.float32),
    )
    return cols


def ranker_scores(ranker: Ranker, inputs: RankerInputs) -> tuple[np.ndarray, bool]:
    """((n,) scores, calibrated): the ranker's calibrated P(user likes candidate) when it has a
    calibration (then the feed fuses it with the candidate's side), else its raw scores."""
    n = len(inputs.cands)
    if n == 0:
        return np.zeros(0), ranker.calibration is not None
    x = ranker.matrix(ranker_columns(inputs), n)
    p = ranker.like_probability(x)
    return (p, True) if p is not None else (ranker.predict(x), False)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))  # NaN stays NaN


# --------------------------------------------------------------------------- which ranker


def ranker_for(tenant: Tenant, user: Profile) -> RankerChoice | None:
    """The experiment arm's ranker when a ranker experiment runs (and its version loads), else the
    active version's; None when neither is available."""
    assigned = experiment_for_impression(tenant, ModelType.RANKER, user)
    if assigned is not None:
        tag, label = assigned
        ranker = _version_ranker(tenant.pk, label)
        if ranker is not None:
            return RankerChoice(label=label, ranker=ranker, arm=tag)
        logger.warning("experiment arm %s: ranker %s is unavailable; serving the active ranker untagged", tag, label)
    current = serving_ranker(tenant.pk)
    if current is None:
        return None
    version, ranker = current
    return RankerChoice(label=version.label, ranker=ranker)


def serving_ranker(tenant_id: int) -> tuple[ModelVersion, Ranker] | None:
    """The active ranker version and its model. The first call per process and tenant waits
    (briefly: a ranker is a small text file) for the first load, so a fresh worker's first feeds
    are ranked like the others."""
    return _active.serving(tenant_id)


def ranker_wait(tenant_id: int, timeout: float = 30.0) -> tuple[ModelVersion, Ranker] | None:
    """Load the active version now and wait for it (after an activation: commands, tests)."""
    holder = _active.holder(tenant_id)
    holder.wait(timeout)
    return holder.get()


def _load(version: ModelVersion, path: Any) -> Ranker:
    return Ranker.load(path)


FIRST_LOAD_WAIT_SECONDS = 5.0
ARM_LOAD_SECONDS = 30.0  # inline (tests, commands) an arm's ranker is waited for this long
_active: TenantModels[Ranker] = TenantModels(ModelType.RANKER, _load, first_load_seconds=FIRST_LOAD_WAIT_SECONDS)
# A label that names no servable version is remembered too: no query per feed for it.
_arms: PinnedVersions[Ranker] = PinnedVersions(ModelType.RANKER, _load, idle_seconds=None, remember_missing=True)


def _version_ranker(tenant_id: int, label: str) -> Ranker | None:
    """The ranker of version ``label`` (an experiment arm's), loaded once per process; None when it
    does not exist, is not servable, or fails to load (logged, not retried)."""
    version = _arms.version(tenant_id, label)
    if version is None:
        return None
    # A broken artifact must not break feeds: the active ranker serves. The wait is bounded like
    # every first load on a feed's path (core.refresher.first_load_wait): until the arm's ranker
    # is loaded, its users get the active one.
    return _arms.pinned(version).get(first_load_wait(ARM_LOAD_SECONDS))


def ranker_reset_for_tests() -> None:
    _active.reset()
    _arms.reset()
