"""Training that adapts to the data it is given: a schedule scaled to the number of
interactions, and a small, time-bounded hyperparameter search on validation.

Why: a model's defaults are tuned for one size of data. A small tenant (a few thousand swipes)
trained with a minibatch of 8,192 takes one optimiser step per epoch, and early stopping then
ends training after a handful of steps; on a large tenant the same defaults are fine. A team
running ``train`` on its own data gets the defaults, so the defaults must fit the data.

:func:`training_schedule`
    For models trained by minibatches (a ``batch_size`` field), the batch shrinks so that an
    epoch has at least ``MIN_STEPS_PER_EPOCH`` steps (never below ``MIN_BATCH``, never above the
    model's default); the epoch budget grows so that training can take at least ``MIN_STEPS``
    optimiser steps (capped at ``MAX_EPOCHS``); early-stopping patience grows with it (a tenth
    of the budget). Full-batch models (ALS, popularity) keep their epochs. Fields the caller set
    explicitly are never changed.

:func:`search`
    Fits the model once per configuration with early stopping on a validation callback and keeps
    the best. The first configuration is always the scheduled default, so the search can only
    improve on it (as judged on validation). Other configurations come from the model's
    ``search_space`` (a dict of field -> values, most important field first) by coordinate
    search, then untried combinations at random, for at most ``max_trials`` fits (1: the default
    alone), and fewer if the next fit would overrun ``budget_seconds``. The trial count, not the
    clock, is the usual limit, so the same data gives the same model on a busy machine as on a
    quiet one; the clock is the safety net for large data. Each trial is recorded: parameters,
    best validation score, epochs, seconds.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from recommender.ml.collab.base import Recommender, RecommenderConfig
from recommender.ml.collab.data import Interactions

MIN_STEPS = 1_500  # optimiser steps a minibatch model may take in all (before early stopping)
MIN_STEPS_PER_EPOCH = 32
MIN_BATCH = 64
MAX_EPOCHS = 400

Validate = Callable[[Recommender], float]


def training_schedule(
    config_class: type[RecommenderConfig], n_interactions: int, given: Mapping[str, Any]
) -> dict[str, int]:
    """Schedule fields (``batch_size``, ``epochs``, ``patience``) for ``n_interactions`` training
    interactions, leaving out every field in ``given`` (the caller's own choices)."""
    default = config_class()
    names = {f.name for f in fields(config_class)}
    n = max(int(n_interactions), 1)
    out: dict[str, int] = {}
    steps_per_epoch = 1
    if "batch_size" in names:
        batch = int(given.get("batch_size", 0)) or _batch_for(n, int(default.batch_size))  # type: ignore[attr-defined]
        if "batch_size" not in given:
            out["batch_size"] = batch
        steps_per_epoch = math.ceil(n / batch)
        if "epochs" not in given:
            out["epochs"] = int(np.clip(math.ceil(MIN_STEPS / steps_per_epoch), default.epochs, MAX_EPOCHS))
    epochs = int(given.get("epochs", out.get("epochs", default.epochs)))
    if "patience" not in given:
        out["patience"] = max(default.patience, epochs // 10)
    return out


def _batch_for(n: int, largest: int) -> int:
    """The largest power of two giving at least MIN_STEPS_PER_EPOCH steps an epoch, in
    [MIN_BATCH, largest]."""
    target = n / MIN_STEPS_PER_EPOCH
    batch = 2 ** math.floor(math.log2(max(target, 1.0)))
    return int(min(max(batch, MIN_BATCH), largest))


@dataclass
class Trial:
    params: dict[str, Any]
    validation: float
    epochs: int  # epochs to the best validation score (what a refit uses)
    seconds: float


@dataclass
class SearchResult:
    config: RecommenderConfig  # the best configuration, epochs set to its best epoch count
    model: Recommender  # the best model as fitted (train split only, best epoch restored)
    trials: list[Trial] = field(default_factory=list)
    seconds: float = 0.0
    budget_seconds: float = 0.0
    max_trials: int = 0
    candidates: int = 0  # configurations in the search space (the first is the default)

    def summary(self) -> dict[str, Any]:
        """What the version's metrics record about the search."""
        best = max(self.trials, key=lambda t: t.validation)
        return {
            "max_trials": self.max_trials,
            "budget_seconds": self.budget_seconds,
            "seconds": round(self.seconds, 2),
            "candidates": self.candidates,
            "tried": len(self.trials),
            "best": {"params": best.params, "validation": best.validation, "epochs": best.epochs},
            "default_validation": self.trials[0].validation,
            "trials": [asdict(t) for t in self.trials],
        }


def _neighbours(space: Mapping[str, list[Any]], names: list[str], at: dict[str, Any]) -> list[dict[str, Any]]:
    """Every configuration that differs from ``at`` in exactly one field of ``names``, field by
    field in the order of ``space``."""
    return [{**at, name: value} for name in names for value in space[name] if value != at[name]]


class _Fits:
    """The search's fits: each configuration trained with early stopping, recorded once."""

    def __init__(
        self,
        model_class: type[Recommender],
        base: RecommenderConfig,
        train: Interactions,
        validate: Validate,
        names: list[str],
        progress: Callable[[int, int, Trial], None] | None,
        max_trials: int,
    ) -> None:
        self.model_class, self.base, self.train, self.validate = model_class, base, train, validate
        self.names, self.progress, self.max_trials = names, progress, max_trials
        self.trials: list[Trial] = []
        self._seen: set[tuple[Any, ...]] = set()

    def tried(self, params: dict[str, Any]) -> bool:
        return tuple(params[n] for n in self.names) in self._seen

    def run(self, params: dict[str, Any]) -> tuple[float, RecommenderConfig, Recommender]:
        """(best validation score, the configuration with its best epoch count, the model)."""
        config = replace(self.base, **params)
        started = time.perf_counter()
        model = self.model_class(config)
        model.fit(self.train, validate=self.validate)
        score = max((r.validation for r in model.history if r.validation is not None), default=-math.inf)
        epochs = (model.best_epoch if model.best_epoch is not None else len(model.history) - 1) + 1
        self.trials.append(Trial(params, float(score), epochs, time.perf_counter() - started))
        self._seen.add(tuple(params[n] for n in self.names))
        if self.progress is not None:
            self.progress(len(self.trials), self.max_trials, self.trials[-1])
        return score, replace(config, epochs=epochs), model


def search(
    model_class: type[Recommender],
    base: RecommenderConfig,
    train: Interactions,
    validate: Validate,
    *,
    fixed: Collection[str] = (),
    max_trials: int = 12,
    budget_seconds: float = 180.0,
    progress: Callable[[int, int, Trial], None] | None = None,
) -> SearchResult:
    """Fit ``base``, then move one field of ``model_class.search_space`` at a time (leaving the
    ``fixed`` fields alone), each fit with early stopping on ``validate``; move to a configuration
    as soon as it beats the best so far and go on from there (coordinate search). When every
    one-field move from the best has been tried and trials remain, try the untried combinations
    in a seeded random order, and resume the coordinate moves from any that wins. Returns the best
    (see the module docs).

    Coordinate moves first: with a budget of a few fits they walk the field that matters most
    (listed first in ``search_space``) before the next. They can stall where two fields interact
    (ALS's regularisation and confidence scale together): the random combinations get past that.
    """
    space: Mapping[str, list[Any]] = getattr(model_class, "search_space", {}) if max_trials > 1 else {}
    names = [name for name in space if name not in fixed]
    started = time.perf_counter()
    fits = _Fits(model_class, base, train, validate, names, progress, max_trials)
    combos = [dict(zip(names, values, strict=True)) for values in itertools.product(*(space[n] for n in names))]
    shuffled = [combos[i] for i in np.random.default_rng(base.seed).permutation(len(combos))]
    best_params = {name: getattr(base, name) for name in names}
    best = fits.run(best_params)
    while len(fits.trials) < max_trials:
        elapsed = time.perf_counter() - started
        if elapsed + elapsed / len(fits.trials) > budget_seconds:
            break  # the next fit would likely overrun the clock
        moves = [p for p in _neighbours(space, names, best_params) if not fits.tried(p)]
        params = next(iter(moves or [p for p in shuffled if not fits.tried(p)]), None)
        if params is None:
            break  # every combination tried
        result = fits.run(params)
        if result[0] > best[0]:
            best_params, best = params, result
    trials = fits.trials
    return SearchResult(
        config=best[1],
        model=best[2],
        trials=trials,
        seconds=time.perf_counter() - started,
        budget_seconds=budget_seconds,
        max_trials=max_trials,
        candidates=int(np.prod([len(space[n]) for n in names])) if names else 1,
    )
