"""Training a collaborative model on a split export, writing its artifact and registering it.

:func:`collaborative_train`, step by step:

1. the schedule (batch size, epochs, patience) adapts to the number of train interactions, for
   every field the config file does not set (``recommender.ml.collab.tuning``);
2. a bounded search (``ML_TRAIN_SEARCH_TRIALS`` fits, ``ML_TRAIN_SEARCH_SECONDS``) picks the
   configuration and epoch count with the best validation score (NDCG@10, or the model's own
   ``validation_metric``: ``lmf``'s like AUC);
3. the train-only model is judged on the test split, beside the hand-weighted prior, the learned
   fusion of the feed's signals (fitted on validation) and the popularity x pickiness baseline
   (``recommender.training.fusion``);
4. by default the chosen configuration is fitted again on every split and *that* model is saved,
   since a model served to the feed should know the latest swipes (the held-out figures stay
   those of step 3), with the fusion refitted on validation and test.

The artifact is a folder: ``model.pt`` (the checkpoint: config dataclass, tensors, id map),
``fusion.json`` (the learned fusion, ``recommender.ml.learned_fusion``; dating data only),
``metrics.json`` (the per-epoch validation curve of the chosen configuration, ``val_ndcg@10``
or, for ``lmf``, ``val_like_auc``, the best epoch, the schedule, every search trial, the test
comparison) and ``config.json`` (the chosen configuration). When the registry app provides
``model_version_register`` the folder is registered as a ``collaborative`` version of the tenant.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from django.conf import settings
from django.utils import timezone
from tqdm import tqdm

from accounts.models import DEFAULT_TENANT_SLUG, Tenant
from recommender.feed.plan import feed_signal_weights
from recommender.feed.scoring import prior_user_likes
from recommender.ml.collab import (
    EventWeights,
    IdMap,
    Interactions,
    config_from_dict,
    interactions_from_events,
    model_class,
    validation_like_auc,
    validation_ndcg,
)
from recommender.ml.collab.tuning import search, training_schedule
from recommender.ml.elo import elo_to_unit
from recommender.ml.learned_fusion import LearnedFusion, PairInputs
from recommender.training.datasets import SPLIT_FILE, SPLITS
from recommender.training.features import (
    pair_records_of,
    profile_hashes,
    side_features,
    tenant_profiles,
    tenant_slug_of,
)
from recommender.training.fusion import fusion_fit_and_report
from recommender.training.options import TRAINABLE

logger = logging.getLogger(__name__)

# Models that read side features (profile attributes, bio embeddings) and place every profile of
# the tenant, history or not: their id map covers the tenant's profiles, not only those in events.
FEATURE_MODELS: frozenset[str] = frozenset({"two_tower", "graphsage"})
MODEL_TYPE = "collaborative"
VALIDATION_K = 10
FUSION_FILE = "fusion.json"  # read by recommender.serving.collaborative (FUSION_NAME)


class TrainingError(ValueError):
    """Training cannot start (bad data folder, model name or config); the message says why."""


@dataclass
class SplitData:
    train: Interactions
    validation: Interactions
    test: Interactions
    ids: IdMap
    split: dict[str, Any]
    data_dir: Path


@dataclass
class TrainResult:
    artifact_dir: Path
    metrics: dict[str, Any]
    version_id: str | None


def event_weights() -> EventWeights:
    return EventWeights(
        like=settings.ML_LIKE_WEIGHT, superlike=settings.ML_SUPERLIKE_WEIGHT, pass_=settings.ML_PASS_WEIGHT
    )


def splits_load(data_dir: Path | str, *, ids: IdMap | None = None) -> SplitData:
    """The three splits as interaction matrices over one shared id map of (hashed) profiles.

    The map covers every profile in any split unless ``ids`` (a trained model's map, or a
    superset) is given; profiles only seen after train are then cold rows/columns, which is what
    they are.
    """
    folder = Path(data_dir)
    missing = [name for name in (*[f"{s}.parquet" for s in SPLITS], SPLIT_FILE) if not (folder / name).exists()]
    if missing:
        raise TrainingError(f"{folder} lacks {', '.join(missing)}; run build_datasets first")
    tables = {s: pq.read_table(folder / f"{s}.parquet", columns=["user", "candidate", "action"]) for s in SPLITS}
    if ids is None:
        everyone = np.concatenate(
            [t.column(c).to_numpy(zero_copy_only=False) for t in tables.values() for c in ("user", "candidate")]
        )
        ids = IdMap(everyone.astype(str))
    weights = event_weights()

    def matrix(name: str) -> Interactions:
        t = tables[name]
        return interactions_from_events(
            t.column("user").to_numpy(zero_copy_only=False).astype(str),
            t.column("candidate").to_numpy(zero_copy_only=False).astype(str),
            weights.of(t.column("action").to_numpy(zero_copy_only=False).astype(str)),
            user_map=ids,
            shared=True,
            drop_unknown=True,
        )

    return SplitData(
        train=matrix("train"),
        validation=matrix("validation"),
        test=matrix("test"),
        ids=ids,
        split=json.loads((folder / SPLIT_FILE).read_text()),
        data_dir=folder.resolve(),
    )


def config_values(model: str, path: Path | str | None) -> dict[str, Any]:
    """The config fields a JSON file sets for ``model`` (validated: unknown fields refused)."""
    if model not in TRAINABLE:
        raise TrainingError(f"unknown model {model!r}; expected one of {', '.join(TRAINABLE)}")
    values: dict[str, Any] = {}
    if path:
        try:
            values = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise TrainingError(f"cannot read config {path}: {exc}") from exc
        if not isinstance(values, dict):
            raise TrainingError(f"config {path} must hold a JSON object")
    try:
        config_from_dict(model_class(model).config_class, values)
    except (TypeError, ValueError) as exc:
        raise TrainingError(str(exc)) from exc
    return values


def config_load(model: str, path: Path | str | None) -> Any:
    """The model's config: its defaults with the file's fields on top (no adaptation to data)."""
    return config_from_dict(model_class(model).config_class, config_values(model, path))


def adapted_config(model: str, values: dict[str, Any], n_interactions: int) -> tuple[Any, dict[str, Any]]:
    """(the config to start from, the schedule fields chosen for the data): the model's defaults,
    the schedule for ``n_interactions`` (``recommender.ml.collab.tuning``) for every field the
    caller left out, and the caller's ``values`` on top."""
    cls = model_class(model).config_class
    schedule = training_schedule(cls, n_interactions, values)
    return config_from_dict(cls, {**schedule, **values}), schedule


def _register(
    *,
    artifact_dir: Path,
    tenant_slug: str | None,
    metrics: dict[str, Any],
    parameters: dict[str, Any],
    data_ref: dict[str, Any],
    created_by: str,
) -> str | None:
    try:
        from registry.services import model_version_register
    except ImportError:  # the registry app is optional: the artifact stands on its own
        logger.info("registry not available; %s written but not registered", artifact_dir)
        return None
    tenant = Tenant.objects.filter(slug=tenant_slug or DEFAULT_TENANT_SLUG).first()
    if tenant is None:
        logger.warning("tenant %r not found; %s not registered", tenant_slug or DEFAULT_TENANT_SLUG, artifact_dir)
        return None
    version = model_version_register(
        tenant=tenant,
        model_type=MODEL_TYPE,
        artifact_path=artifact_dir,
        parameters=parameters,
        metrics=metrics,
        data_ref=data_ref,
        created_by=created_by,
    )
    return str(version.id)


def model_side_features(
    model: str, config: Any, ids: IdMap, profiles: list[Any]
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """The side features ``model`` with ``config`` trains on, one row per id of ``ids`` (None:
    it reads none), and a summary for the metrics: the full matrix (attributes, interests,
    location, bio embedding) for two-tower and GraphSAGE; attributes without the bio for ALS's
    collective-MF term (bio columns swamp it, bench.collab); the compact pair records for
    ``lmf``'s learned pair features and group priors."""
    if model in FEATURE_MODELS or getattr(config, "side_weight", 0.0) > 0:
        features = side_features(ids, profiles, with_bio=model in FEATURE_MODELS)
        with_bio = int((features[:, -1] > 0).sum())
        return features, {"feature_columns": int(features.shape[1]), "profiles_with_bio": with_bio}
    if getattr(config, "pair_features", False) or getattr(config, "profile_priors", False):
        records = pair_records_of(ids, profiles)
        return records, {"pair_record_columns": int(records.shape[1]), "profiles_with_records": len(profiles)}
    return None, {}


def _with_side_features(
    data: SplitData, model: str, config: Any, tenant_slug: str | None
) -> tuple[SplitData, list[Any], dict[str, Any]]:
    """(the splits re-mapped over every profile of the tenant (plus any id in the events), with
    the model's side features (:func:`model_side_features`) attached to train (the only split a
    model fits on), the tenant's profiles, a summary); the splits are unchanged when the model
    reads no features."""
    profiles = tenant_profiles(tenant_slug_of(tenant_slug))
    ids = IdMap(np.concatenate([data.ids.ids.astype(str), profile_hashes(profiles)]))
    features, info = model_side_features(model, config, ids, profiles)
    if features is None:
        return data, profiles, info
    remapped = splits_load(data.data_dir, ids=ids)
    remapped.train = remapped.train.with_features(features)
    return remapped, profiles, info


def collaborative_refit(
    *, model: Any, ids: IdMap, users: np.ndarray, items: np.ndarray, actions: np.ndarray, profiles: list[Any]
) -> Any:
    """A fresh model of ``model``'s type and configuration fitted on the given swipes (export
    pseudonyms on ``ids``, the served model's id map, so rows line up with it), for as many
    epochs as the served model's fit chose. Used where a model must not have seen later swipes:
    the ranker's training windows (:mod:`recommender.training.ranker`)."""
    config = model.config
    if model.best_epoch is not None and model.history and any(r.validation is not None for r in model.history):
        config = replace(config, epochs=model.best_epoch + 1)  # early-stopped, not refitted
    data = interactions_from_events(
        np.asarray(users, dtype=str), np.asarray(items, dtype=str), event_weights().of(np.asarray(actions, dtype=str)),
        user_map=ids, shared=True, drop_unknown=True,
    )  # fmt: skip
    features, _info = model_side_features(model.name, config, ids, profiles)
    if features is not None:
        data = data.with_features(features)
    refit = model_class(model.name)(config)
    refit.fit(data)
    return refit


def _refit_all(model: str, config: Any, data: SplitData, progress: bool) -> tuple[Any, dict[str, Any]]:
    """``model`` with the chosen ``config`` (its epochs those the search found best) fitted on
    every split: what serves. Its held-out figures are those of the train-only fit."""
    everything = replace(data.train, matrix=(data.train.matrix + data.validation.matrix + data.test.matrix).tocsr())
    refit = model_class(model)(config)
    started = time.perf_counter()
    refit.fit(everything, progress=progress)
    return refit, {"epochs": config.epochs, "interactions": everything.nnz, "seconds": time.perf_counter() - started}


def _validation_callback(recommender_cls: Any, data: SplitData) -> tuple[str, Any]:
    metric = getattr(recommender_cls, "validation_metric", f"ndcg@{VALIDATION_K}")
    if metric == "like_auc":
        return metric, validation_like_auc(data.validation)
    return metric, validation_ndcg(data.train, data.validation, VALIDATION_K)


def search_configurations(
    model: str, config: Any, values: dict[str, Any], train: Interactions, validate: Any, trials: int, progress: bool
) -> Any:
    """The configuration search (``recommender.ml.collab.tuning.search``) as ``train`` and
    ``evaluate_offline`` run it: the caller's ``values`` fixed, the trial and time budgets of the
    settings, a progress bar (at most ``trials`` fits; the search may stop sooner)."""
    bar = tqdm(total=trials, desc=f"search {model}", unit="fit", disable=not progress, leave=False)

    def tick(done: int, total: int, trial: Any) -> None:
        bar.set_postfix(val=f"{trial.validation:.4f}", epochs=trial.epochs)
        bar.update(1)

    try:
        return search(
            model_class(model), config, train, validate, fixed=set(values), max_trials=trials,
            budget_seconds=settings.ML_TRAIN_SEARCH_SECONDS, progress=tick,
        )  # fmt: skip
    finally:
        bar.close()


def _prior_probability(inputs: PairInputs) -> np.ndarray:
    """The hand-weighted P(swiper likes candidate) of ``inputs`` (what serves without a learned
    fusion), for the version's comparison on test."""
    weights = {"age_fit": 0.25, "distance": 0.25, "interests": 0.25, "lifestyle": 0.25}
    comps = np.stack([np.asarray(getattr(inputs, name), dtype=np.float64) for name in weights])  # (4, n)
    w = np.full(comps.shape, 0.25) * ~np.isnan(comps)
    structured = (np.nan_to_num(comps) * w).sum(axis=0) / w.sum(axis=0).clip(min=1e-12)
    similarity = (np.clip(inputs.similarity, -1.0, 1.0) + 1.0) / 2.0
    return prior_user_likes(
        similarity, structured, elo_to_unit(inputs.candidate_elo), np.full(len(structured), np.nan),
        inputs.collab_logit, feed_signal_weights(),
    )  # fmt: skip


def _fusion(
    data: SplitData, model: Any, profiles: list[Any], learn: bool
) -> tuple[LearnedFusion | None, dict[str, Any] | None]:
    """The learned fusion and the held-out report, for dating data (one id map for both sides)."""
    if not (learn and data.train.shared and profiles):
        return None, None
    return fusion_fit_and_report(
        data_dir=data.data_dir, ids=data.ids, model=model, profiles=profiles, prior=_prior_probability
    )


def collaborative_train(
    *,
    model: str,
    data_dir: Path | str,
    config_path: Path | str | None = None,
    output_dir: Path | str | None = None,
    tenant_slug: str | None = None,
    register: bool = True,
    created_by: str = "system:train",
    progress: bool = False,
    refit_all: bool = True,
    search_trials: int | None = None,
    learn_fusion: bool = True,
) -> TrainResult:
    """Train ``model`` on a split export (the module docs list the steps), write the artifact and,
    if ``register``, register it as a collaborative version. ``search_trials`` (default
    ``ML_TRAIN_SEARCH_TRIALS``; 1: the default configuration only) bounds the search;
    ``refit_all`` saves the chosen configuration refitted on every split (what serves) instead of
    the train-only fit; ``learn_fusion`` fits the learned fusion of the feed's signals."""
    values = config_values(model, config_path)
    trials = settings.ML_TRAIN_SEARCH_TRIALS if search_trials is None else int(search_trials)
    if trials < 1:
        raise TrainingError("the search needs at least 1 trial (1: the default configuration only)")
    data = splits_load(data_dir)
    exported_for = _manifest(data_dir).get("tenant")
    tenant_slug = tenant_slug or exported_for
    config, schedule = adapted_config(model, values, data.train.nnz)
    data, profiles, features_info = _with_side_features(data, model, config, tenant_slug)
    if data.train.positives().nnz == 0:
        raise TrainingError(f"the train split of {data_dir} has no likes; nothing to learn from")
    started = time.perf_counter()
    _metric, validate = _validation_callback(model_class(model), data)
    found = search_configurations(model, config, values, data.train, validate, trials, progress)
    seconds = time.perf_counter() - started
    fusion, fusion_report = _fusion(data, found.model, profiles, learn_fusion)
    metrics = _metrics(model, found, data, seconds, schedule, features_info, fusion_report)
    recommender = found.model
    if refit_all:
        recommender, metrics["refit_all"] = _refit_all(model, found.config, data, progress)
    coefficients = getattr(recommender, "pair_coefficients", None)
    if coefficients is not None and coefficients():
        metrics["pair_coefficients"] = coefficients()  # what the served model learned per pair feature
    artifact_dir = _artifact_dir(model, output_dir)
    _write_artifact(artifact_dir, recommender, found.config, model, data, metrics, fusion)
    version_id = None
    if register:
        data_ref = {"data_dir": str(data.data_dir), "split": data.split, "events_tenant": exported_for}
        version_id = _register(
            artifact_dir=artifact_dir, tenant_slug=tenant_slug, metrics=metrics, data_ref=data_ref,
            parameters={"model": model, **asdict(found.config)}, created_by=created_by,
        )  # fmt: skip
    return TrainResult(artifact_dir=artifact_dir, metrics=metrics, version_id=version_id)


def _manifest(data_dir: Path | str) -> dict[str, Any]:
    """The export's manifest that build_datasets copied beside the splits ({} without one)."""
    path = Path(data_dir) / "events_manifest.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _metrics(
    model: str,
    found: Any,
    data: SplitData,
    seconds: float,
    schedule: dict[str, Any],
    features_info: dict[str, Any],
    fusion_report: dict[str, Any] | None,
) -> dict[str, Any]:
    fitted = found.model
    metric, _validate = _validation_callback(type(fitted), data)
    key = f"val_{metric}"
    curve = [{"epoch": r.epoch, "loss": r.loss, key: r.validation} for r in fitted.history]
    best = next((r.validation for r in fitted.history if r.epoch == fitted.best_epoch), None)
    metrics: dict[str, Any] = {
        "model": model,
        "validation_metric": metric,
        key: best,
        "best_epoch": fitted.best_epoch,
        "epochs_run": len(fitted.history),
        "train_seconds": seconds,
        "curve": curve,
        "train_interactions": data.train.nnz,
        "profiles": len(data.ids),
        "event_weights": asdict(event_weights()),
        "split_strategy": data.split.get("strategy", "time"),
        "schedule": schedule,
        "search": found.summary(),
        **features_info,
    }
    if fusion_report is not None:
        metrics["learned_fusion"] = fusion_report
        metrics["test_like_auc"] = fusion_report["test_like_auc"]
    return metrics


def _artifact_dir(model: str, output_dir: Path | str | None) -> Path:
    stamp = timezone.now().strftime("%Y%m%dT%H%M%S")
    folder = (
        Path(output_dir)
        if output_dir
        else Path(settings.ARTIFACT_ROOT) / MODEL_TYPE / f"{model}-{stamp}-{uuid.uuid4().hex[:6]}"
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _write_artifact(
    folder: Path,
    recommender: Any,
    config: Any,
    model: str,
    data: SplitData,
    metrics: dict[str, Any],
    fusion: LearnedFusion | None,
) -> None:
    recommender.save(
        folder / "model.pt",
        extra={"ids": data.ids.to_list(), "data_dir": str(data.data_dir), "event_weights": asdict(event_weights())},
    )
    if fusion is not None:
        (folder / FUSION_FILE).write_text(json.dumps(fusion.to_dict(), indent=2) + "\n")
    (folder / "config.json").write_text(json.dumps({"model": model, **asdict(config)}, indent=2) + "\n")
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
