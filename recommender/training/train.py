"""Training a collaborative model on a split export, writing its artifact and registering it.

The artifact is a folder: ``model.pt`` (the checkpoint: config dataclass, tensors, id map),
``metrics.json`` (the per-epoch validation curve, ``val_ndcg@10`` or, for ``lmf``, ``val_like_auc``,
and the best epoch) and
``config.json``. When the registry app provides ``model_version_register`` the folder is
registered as a ``collaborative`` version of the tenant.
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
from recommender.models import DEFAULT_TENANT_SLUG, Tenant
from recommender.training.datasets import SPLIT_FILE, SPLITS

logger = logging.getLogger(__name__)

TRAINABLE: tuple[str, ...] = ("als", "bpr", "lmf", "popularity", "two_tower", "graphsage")
# Models that read side features (profile attributes, bio embeddings) and place every profile of
# the tenant, history or not: their id map covers the tenant's profiles, not only those in events.
FEATURE_MODELS: frozenset[str] = frozenset({"two_tower", "graphsage"})
MODEL_TYPE = "collaborative"
VALIDATION_K = 10


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


def config_load(model: str, path: Path | str | None) -> Any:
    if model not in TRAINABLE:
        raise TrainingError(f"unknown model {model!r}; expected one of {', '.join(TRAINABLE)}")
    cls = model_class(model)
    values: dict[str, Any] = {}
    if path:
        try:
            values = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise TrainingError(f"cannot read config {path}: {exc}") from exc
        if not isinstance(values, dict):
            raise TrainingError(f"config {path} must hold a JSON object")
    try:
        return config_from_dict(cls.config_class, values)
    except (TypeError, ValueError) as exc:
        raise TrainingError(str(exc)) from exc


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
    from recommender.training.features import pair_records_of, side_features

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
) -> tuple[SplitData, dict[str, Any]]:
    """The splits re-mapped over every profile of the tenant (plus any id in the events), with
    the model's side features (:func:`model_side_features`) attached to train (the only split a
    model fits on); unchanged when the model reads none."""
    from recommender.training.features import profile_hashes, tenant_profiles, tenant_slug_of

    profiles = tenant_profiles(tenant_slug_of(tenant_slug))
    ids = IdMap(np.concatenate([data.ids.ids.astype(str), profile_hashes(profiles)]))
    features, info = model_side_features(model, config, ids, profiles)
    if features is None:
        return data, info
    remapped = splits_load(data.data_dir, ids=ids)
    remapped.train = remapped.train.with_features(features)
    return remapped, info


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


def _refit_all(model: str, config: Any, data: SplitData, fitted: Any, progress: bool) -> tuple[Any, dict[str, Any]]:
    epochs = (fitted.best_epoch if fitted.best_epoch is not None else len(fitted.history) - 1) + 1
    everything = replace(data.train, matrix=(data.train.matrix + data.validation.matrix + data.test.matrix).tocsr())
    refit = model_class(model)(replace(config, epochs=epochs))
    started = time.perf_counter()
    refit.fit(everything, progress=progress)
    return refit, {"epochs": epochs, "interactions": everything.nnz, "seconds": time.perf_counter() - started}


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
    refit_all: bool = False,
) -> TrainResult:
    """Fit ``model`` on the train split with early stopping on validation NDCG@10 (or the model's
    own ``validation_metric``), write the artifact folder and (if ``register``) register it as a
    collaborative version.

    ``refit_all``: once the epoch count is chosen, fit again on every split (train, validation
    and test) for that many epochs and save *that* model. The metrics stay those of the
    train-only model (the refit has no held-out data left); a model served to the feed should
    know the most recent swipes, which the time-ordered split holds out."""
    config = config_load(model, config_path)
    data = splits_load(data_dir)
    manifest_path = Path(data_dir) / "events_manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    data, features_info = _with_side_features(data, model, config, tenant_slug or manifest.get("tenant"))
    if data.train.positives().nnz == 0:
        raise TrainingError(f"the train split of {data_dir} has no likes; nothing to learn from")
    recommender = model_class(model)(config)
    metric = getattr(recommender, "validation_metric", f"ndcg@{VALIDATION_K}")
    validate = (
        validation_like_auc(data.validation)
        if metric == "like_auc"
        else validation_ndcg(data.train, data.validation, VALIDATION_K)
    )
    started = time.perf_counter()
    history = recommender.fit(data.train, validate=validate, progress=progress)
    seconds = time.perf_counter() - started
    stamp = timezone.now().strftime("%Y%m%dT%H%M%S")
    artifact_dir = (
        Path(output_dir)
        if output_dir
        else Path(settings.ARTIFACT_ROOT) / MODEL_TYPE / f"{model}-{stamp}-{uuid.uuid4().hex[:6]}"
    )
    artifact_dir.mkdir(parents=True, exist_ok=True)
    key = f"val_{metric}"
    curve = [{"epoch": r.epoch, "loss": r.loss, key: r.validation} for r in history]
    best = next((r.validation for r in history if r.epoch == recommender.best_epoch), None)
    tenant_slug = tenant_slug or manifest.get("tenant")
    data_ref = {"data_dir": str(data.data_dir), "split": data.split, "events_tenant": manifest.get("tenant")}
    metrics = {
        "model": model,
        "validation_metric": metric,
        key: best,
        "best_epoch": recommender.best_epoch,
        "epochs_run": len(history),
        "train_seconds": seconds,
        "curve": curve,
        "train_interactions": data.train.nnz,
        "profiles": len(data.ids),
        "event_weights": asdict(event_weights()),
        **features_info,
    }
    if refit_all:
        recommender, metrics["refit_all"] = _refit_all(model, config, data, recommender, progress)
    coefficients = getattr(recommender, "pair_coefficients", None)
    if coefficients is not None and coefficients():
        metrics["pair_coefficients"] = coefficients()  # what the served model learned per pair feature
    recommender.save(
        artifact_dir / "model.pt",
        extra={"ids": data.ids.to_list(), "data_dir": str(data.data_dir), "event_weights": asdict(event_weights())},
    )
    (artifact_dir / "config.json").write_text(json.dumps({"model": model, **asdict(config)}, indent=2) + "\n")
    (artifact_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    version_id = None
    if register:
        version_id = _register(
            artifact_dir=artifact_dir,
            tenant_slug=tenant_slug,
            metrics=metrics,
            parameters={"model": model, **asdict(config)},
            data_ref=data_ref,
            created_by=created_by,
        )
    return TrainResult(artifact_dir=artifact_dir, metrics=metrics, version_id=version_id)
