"""What serves one feed, resolved once before its stages run, and the version name it records.

The ANN index (the active one, or an index experiment arm's), why the feed falls back without
one, the collaborative model and the hand-set signal weights. The ranker is the one exception:
it is chosen in the ranker stage (``recommender.serving.ranker.ranker_for``), and only when there
are candidates to rank, because choosing it assigns the user a ranker experiment arm.

Experiments: while an ``index`` experiment runs for the tenant, the user's arm (deterministic per
user, ``registry.experiments``) picks the index version the ANN stages query, and impressions
record the arm's tag and that version's label. An impression is tagged with an arm only when the
arm's version served it: if that version cannot be loaded the user gets the active index (and
``experiment_arm`` is the variant), so an arm's numbers never mix in another version's feeds.
A ``ranker`` experiment works the same way for the final scorer. An impression records one arm:
while an index and a ranker experiment run at once, the ranker arm's tag is recorded, so run
them one after the other for clean numbers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from django.conf import settings

from accounts.models import Tenant
from recommender.feed.scoring import SignalWeights
from recommender.models import Profile
from recommender.serving.collaborative import CollaborativeServing, serving_collaborative
from recommender.serving.health import ml_fallback
from recommender.serving.index import ServingIndex, serving_index, serving_index_version
from recommender.serving.ranker import RankerChoice
from registry.experiments import experiment_for_impression
from registry.models import ModelType

logger = logging.getLogger(__name__)

FEED_VERSION = "feed-v1"
MODEL_VERSION_MAX = 64  # Impression.model_version


@dataclass(frozen=True)
class FeedPlan:
    index: ServingIndex | None  # None: the feed falls back (``fallback`` says why)
    fallback: str | None
    arm: str | None  # experiment arm tag, set only when ``index`` is that arm's version
    cf: CollaborativeServing | None
    weights: SignalWeights

    def without_vectors(self) -> FeedPlan:
        """This plan once the embeddings turned out unavailable mid-feed: the fallback."""
        return replace(self, index=None, fallback="model_unavailable")

    def served_arm(self, ranker: RankerChoice | None) -> str | None:
        """The experiment arm that served the feed: the ranker's, else the index's while the
        arm's index survived every stage."""
        if ranker is not None and ranker.arm is not None:
            return ranker.arm
        return self.arm if self.index is not None else None


def feed_plan(tenant: Tenant, user: Profile, *, variant: str, use_collaborative: bool) -> FeedPlan:
    ml = _ml_state(tenant, user)
    # The random baseline draws from the pre-filter scan only: none of the informed sources.
    informed = variant != "random"
    cf = serving_collaborative(tenant.pk) if informed and use_collaborative and settings.ML_ENABLED else None
    return FeedPlan(index=ml.index, fallback=ml.fallback, arm=ml.arm, cf=cf, weights=feed_signal_weights())


@dataclass(frozen=True)
class _MlState:
    index: ServingIndex | None
    fallback: str | None
    arm: str | None = None  # experiment arm tag, set only when ``index`` is that arm's version


def _ml_state(tenant: Tenant, user: Profile) -> _MlState:
    fallback = ml_fallback()
    if fallback is not None:
        return _MlState(None, fallback)
    arm = _experiment_index(tenant, user)
    if arm is not None:
        return _MlState(arm[0], None, arm[1])
    index = serving_index(tenant.pk)
    if index is None:
        return _MlState(None, "index_missing")
    return _MlState(index, None)


def _experiment_index(tenant: Tenant, user: Profile) -> tuple[ServingIndex, str] | None:
    """(the arm's index, the arm's tag) when an index experiment runs and the arm's version is
    available; None otherwise (the active index serves, untagged)."""
    assigned = experiment_for_impression(tenant, ModelType.INDEX, user)
    if assigned is None:
        return None
    tag, label = assigned
    index = serving_index_version(tenant.pk, label)
    if index is None:
        logger.warning("experiment arm %s: index %s is unavailable; serving the active index untagged", tag, label)
        return None
    return index, tag


def feed_signal_weights() -> SignalWeights:
    """The hand-set signal weights the feed pools with (the cold-start prior)."""
    return SignalWeights(
        similarity=settings.ML_SIMILARITY_WEIGHT,
        structured=settings.ML_STRUCTURED_WEIGHT,
        elo=settings.ML_ELO_WEIGHT,
        interaction=settings.ML_INTERACTION_WEIGHT,
        selectivity=settings.ML_SELECTIVITY_WEIGHT,
        collaborative=settings.ML_COLLABORATIVE_WEIGHT,
    )


def feed_model_version(
    variant: str,
    index: ServingIndex | None,
    fallback: str | None,
    cf: CollaborativeServing | None = None,
    ranker: RankerChoice | None = None,
) -> str:
    """``feed-v1+index:<version>+cf:<version>+ranker:<version>``, ``feed-v1-one_way+index:<version>``,
    ``feed-v1-fallback``...: the feed variant and the versions that served it."""
    name = FEED_VERSION if variant == "reciprocal" else f"{FEED_VERSION}-{variant}"
    if fallback is not None:
        name += "-fallback"
    elif index is not None:
        name += f"+index:{index.version}"
    if cf is not None:
        name += f"+cf:{cf.version}"
    if ranker is not None:
        name += f"+ranker:{ranker.label}"
    return name[:MODEL_VERSION_MAX]
