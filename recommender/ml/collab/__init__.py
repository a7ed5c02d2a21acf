"""Collaborative-filtering recommenders (framework-free: no Django imports).

* :mod:`.base` -- the :class:`Recommender` interface, config dataclasses, saving checkpoints;
* :mod:`.catalog` -- every model by name, and loading any of them from a checkpoint;
* :mod:`.data` -- id maps, event weights and sparse interaction matrices;
* :mod:`.als`, :mod:`.bpr`, :mod:`.lmf`, :mod:`.popularity` -- the collaborative models;
* :mod:`.two_tower`, :mod:`.graphsage` -- the feature-aware, inductive models (side features from
  :mod:`.features`, shared code and the cold-start API in :mod:`.deep`);
* :mod:`.metrics` -- ranking metrics and the reciprocal match precision.
"""

from recommender.ml.collab.als import ALS, ALSConfig
from recommender.ml.collab.base import EpochRecord, FactorModel, Recommender, RecommenderConfig, config_from_dict
from recommender.ml.collab.bpr import BPR, BPRConfig
from recommender.ml.collab.catalog import load_recommender, model_class, model_names, read_checkpoint
from recommender.ml.collab.data import EventWeights, IdMap, Interactions, build_matrix, interactions_from_events
from recommender.ml.collab.deep import InductiveModel
from recommender.ml.collab.evaluation import evaluate_model, validation_like_auc, validation_ndcg
from recommender.ml.collab.features import feature_names, profile_feature_matrix
from recommender.ml.collab.graphsage import GraphSAGE, GraphSAGEConfig
from recommender.ml.collab.lmf import LMFConfig, LogisticMF
from recommender.ml.collab.popularity import Popularity, PopularityConfig
from recommender.ml.collab.two_tower import TwoTower, TwoTowerConfig

__all__ = [
    "ALS",
    "BPR",
    "ALSConfig",
    "BPRConfig",
    "EpochRecord",
    "EventWeights",
    "FactorModel",
    "GraphSAGE",
    "GraphSAGEConfig",
    "IdMap",
    "InductiveModel",
    "Interactions",
    "LMFConfig",
    "LogisticMF",
    "Popularity",
    "PopularityConfig",
    "Recommender",
    "RecommenderConfig",
    "TwoTower",
    "TwoTowerConfig",
    "build_matrix",
    "config_from_dict",
    "evaluate_model",
    "feature_names",
    "interactions_from_events",
    "load_recommender",
    "model_class",
    "model_names",
    "profile_feature_matrix",
    "read_checkpoint",
    "validation_like_auc",
    "validation_ndcg",
]
