"""Collaborative-filtering recommenders (framework-free: no Django imports).

* :mod:`.base` -- the :class:`Recommender` interface, config dataclasses, checkpoints;
* :mod:`.data` -- id maps, event weights and sparse interaction matrices;
* :mod:`.als`, :mod:`.bpr`, :mod:`.popularity` -- the models;
* :mod:`.metrics` -- ranking metrics and the reciprocal match precision.
"""

from recommender.ml.collab.als import ALS, ALSConfig
from recommender.ml.collab.base import (
    EpochRecord,
    FactorModel,
    Recommender,
    RecommenderConfig,
    config_from_dict,
    load_recommender,
    model_class,
    model_names,
    read_checkpoint,
)
from recommender.ml.collab.bpr import BPR, BPRConfig
from recommender.ml.collab.data import EventWeights, IdMap, Interactions, build_matrix, interactions_from_events
from recommender.ml.collab.evaluation import evaluate_model, validation_ndcg
from recommender.ml.collab.popularity import Popularity, PopularityConfig

__all__ = [
    "ALS",
    "BPR",
    "ALSConfig",
    "BPRConfig",
    "EpochRecord",
    "EventWeights",
    "FactorModel",
    "IdMap",
    "Interactions",
    "Popularity",
    "PopularityConfig",
    "Recommender",
    "RecommenderConfig",
    "build_matrix",
    "config_from_dict",
    "evaluate_model",
    "interactions_from_events",
    "load_recommender",
    "model_class",
    "model_names",
    "read_checkpoint",
    "validation_ndcg",
]
