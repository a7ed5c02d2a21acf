"""Every collaborative model by name, and loading any of them from a checkpoint.

The one place that knows all the model classes: the models themselves import only ``.base`` and
``.data``, so adding a model is one import and one entry here (and no module imports the package
it lives in, which would make an import circle).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from recommender.ml.collab.als import ALS
from recommender.ml.collab.base import CHECKPOINT_FORMAT, EpochRecord, Recommender, config_from_dict
from recommender.ml.collab.bpr import BPR
from recommender.ml.collab.graphsage import GraphSAGE
from recommender.ml.collab.lmf import LogisticMF
from recommender.ml.collab.popularity import Popularity
from recommender.ml.collab.two_tower import TwoTower

MODELS: dict[str, type[Recommender]] = {
    cls.name: cls for cls in (ALS, BPR, LogisticMF, Popularity, TwoTower, GraphSAGE)
}


def model_class(name: str) -> type[Recommender]:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    return MODELS[name]


def model_names() -> list[str]:
    return sorted(MODELS)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    checkpoint = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint")
    return checkpoint


def load_recommender(path: str | Path) -> Recommender:
    """Restore any model saved with :meth:`Recommender.save` (its ``extra`` in ``.extra``)."""
    checkpoint = read_checkpoint(path)
    cls = model_class(checkpoint["model"])
    model = cls(config_from_dict(cls.config_class, checkpoint["config"]))
    meta = checkpoint["meta"]
    model.n_users, model.n_items, model.shared = int(meta["n_users"]), int(meta["n_items"]), bool(meta["shared"])
    state = dict(checkpoint["state"])
    model.popularity = state.pop("_popularity")
    model.user_activity = state.pop("_user_activity")
    model._load_state(state)
    a, b = meta["calibration"]
    model.calibration = (float(a), float(b))
    model.best_epoch = meta["best_epoch"]
    model.history = [EpochRecord(**r) for r in meta["history"]]
    model.extra = checkpoint["extra"]  # type: ignore[attr-defined]
    model.fitted = True
    return model
