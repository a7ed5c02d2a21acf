"""Training the text heads on the public sets (+ moderator decisions) and registering them.

Shared by ``manage.py train_safety``, the ``retrain_safety`` task and ``bench/safety.py``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

from accounts.models import Tenant
from registry.services import model_version_register
from safety import serving
from safety.ml.cache import cache_key, embed_cached
from safety.ml.classifier import SafetyClassifier
from safety.ml.data import Dataset, load_davidson, load_sms
from safety.ml.evaluate import binary_metrics
from safety.ml.heads import C_GRID, HATE_WEIGHT, TextHeads, TrainingSet, train_heads
from safety.selectors import decision_examples

DECISION_WEIGHT = 3.0  # a moderator's verdict on real profile text outweighs a tweet or an SMS


@dataclass
class Split:
    """One data set's rows on one side of the fixed split (test = row index mod 5 == 0)."""

    name: str
    texts: list[str]
    classes: np.ndarray  # (n,) source coding
    emb: np.ndarray  # (n, dim)


@dataclass
class PublicData:
    sms_train: Split
    sms_test: Split
    dav_train: Split
    dav_test: Split
    sources: dict[str, str] = field(default_factory=dict)


def _subset(ds: Dataset, limit: int | None) -> Dataset:
    """The first ``limit`` rows in file order (tests): the mod-5 split still applies to them."""
    if limit is None or limit >= len(ds.texts):
        return ds
    return Dataset(ds.name, ds.texts[:limit], ds.classes[:limit], ds.source)


def _splits(ds: Dataset, *, max_train: int | None, progress: bool) -> tuple[Split, Split]:
    cache_dir = Path(settings.ARTIFACT_ROOT) / "safety" / "embedding-cache"
    model = settings.EMBEDDING_MODEL
    te, tr = ds.test_mask, ds.train_mask
    whole = cache_dir / f"{ds.name}-{cache_key(model, ds.texts)}.npy"
    if whole.exists():  # an earlier run embedded the whole file at once
        emb = np.load(whole, allow_pickle=False)
        test_emb, train_emb = emb[te], emb[tr]
        train_texts = [t for t, k in zip(ds.texts, tr, strict=True) if k]
    else:
        test_texts = [t for t, k in zip(ds.texts, te, strict=True) if k]
        train_texts = [t for t, k in zip(ds.texts, tr, strict=True) if k]
        if max_train is not None:
            train_texts = train_texts[:max_train]
        encode = _encoder()
        test_emb = embed_cached(
            name=f"{ds.name}-test",
            texts=test_texts,
            model_name=model,
            encode=encode,
            cache_dir=cache_dir,
            progress=progress,
        )
        train_emb = embed_cached(
            name=f"{ds.name}-train",
            texts=train_texts,
            model_name=model,
            encode=encode,
            cache_dir=cache_dir,
            progress=progress,
        )
    n_train = len(train_texts) if max_train is None else min(max_train, len(train_texts))
    return (
        Split(ds.name, train_texts[:n_train], ds.classes[tr][:n_train], train_emb[:n_train]),
        Split(ds.name, [t for t, k in zip(ds.texts, te, strict=True) if k], ds.classes[te], test_emb),
    )


def load_public(*, limit: int | None = None, max_train: int | None = None, progress: bool = True) -> PublicData:
    """Both public sets, split, with MiniLM embeddings (cached under ARTIFACT_ROOT).
    ``max_train`` keeps only the first N training rows of each set (in file order)."""
    root = Path(settings.SAFETY_DATA_ROOT)
    sms, dav = _subset(load_sms(root), limit), _subset(load_davidson(root), limit)
    sms_train, sms_test = _splits(sms, max_train=max_train, progress=progress)
    dav_train, dav_test = _splits(dav, max_train=max_train, progress=progress)
    return PublicData(sms_train, sms_test, dav_train, dav_test, {"sms": str(sms.source), "davidson": str(dav.source)})


def _encoder() -> Callable[..., np.ndarray]:
    from recommender.ml.embeddings import get_encoder

    return get_encoder(settings.EMBEDDING_MODEL, settings.EMBEDDING_DEVICE).encode


def targets(split: Split, label: str) -> np.ndarray:
    if split.name == "sms":
        return split.classes.astype(np.int64)
    return (split.classes != 2).astype(np.int64)  # Davidson: hate or offensive vs neither


def training_sets(data: PublicData, extra: dict[str, list[tuple[str, int]]] | None = None) -> dict[str, TrainingSet]:
    """Training rows only (row index mod 5 != 0); the test rows never reach a head."""
    dav = data.dav_train
    dav_y = targets(dav, "inappropriate")
    hate = (dav.classes == 0).astype(np.float64)
    sets = {
        "spam_scam": TrainingSet(
            data.sms_train.texts,
            data.sms_train.emb,
            targets(data.sms_train, "spam_scam"),
            np.ones(len(data.sms_train.texts)),
            "sms train split",
        ),
        "inappropriate": TrainingSet(dav.texts, dav.emb, dav_y, np.ones(len(dav_y)), "davidson train split"),
        "harassment": TrainingSet(
            dav.texts, dav.emb, dav_y, 1.0 + (HATE_WEIGHT - 1.0) * hate, f"davidson train split, hate x{HATE_WEIGHT:g}"
        ),
    }
    for label, rows in (extra or {}).items():
        if not rows:
            continue
        texts = [t for t, _ in rows]
        s = sets[label]
        sets[label] = TrainingSet(
            s.texts + texts,
            np.vstack([s.embeddings, serving.encode(texts)]),
            np.concatenate([s.y, np.asarray([y for _, y in rows], dtype=np.int64)]),
            np.concatenate([s.weights, np.full(len(rows), DECISION_WEIGHT)]),
            f"{s.source} + {len(rows)} moderator decisions",
        )
    return sets


def evaluate_heads(heads: TextHeads, data: PublicData) -> dict[str, Any]:
    """Held-out metrics of the heads alone and of the full classifier (heads + rules)."""
    clf = SafetyClassifier(heads, "eval")
    out: dict[str, Any] = {}
    for label, split in (("spam_scam", data.sms_test), ("inappropriate", data.dav_test), ("harassment", data.dav_test)):
        y = targets(split, label)
        head_p = heads.predict_proba(split.texts, split.emb)[label]
        full_p = np.asarray([r.labels[label] for r in clf.classify(split.texts, embeddings=split.emb)])
        threshold = heads.heads[label].threshold
        out[label] = {
            "dataset": f"{split.name} test split (row index mod 5 == 0), {len(y)} rows",
            "head": binary_metrics(y, head_p, threshold),
            "full": binary_metrics(y, full_p, threshold),
        }
    return out


@dataclass
class TrainResult:
    heads: TextHeads
    metrics: dict[str, Any]
    version_label: str
    checkpoint_dir: Path
    data_ref: dict[str, Any] = field(default_factory=dict)
    version_id: str | None = None  # the registered safety version, when registered


def train_and_register(
    *,
    tenant: Tenant | None,
    include_decisions: bool = True,
    created_by: str = "manage.py train_safety",
    limit: int | None = None,
    max_train: int | None = None,
    c_grid: tuple[float, ...] | None = None,
    register: bool = True,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> TrainResult:
    data = load_public(limit=limit, max_train=max_train, progress=progress)
    extra = decision_examples(tenant_id=tenant.pk) if (include_decisions and tenant is not None) else {}
    n_extra = {k: len(v) for k, v in extra.items()}
    log(
        f"training on sms {len(data.sms_train.texts)} + davidson {len(data.dav_train.texts)} rows; "
        f"moderator examples {n_extra}"
    )
    data_ref = _data_ref(data, n_extra)
    heads = train_heads(
        training_sets(data, extra),
        embedding_model=settings.EMBEDDING_MODEL,
        extra_config={"data_ref": data_ref},
        c_grid=c_grid or C_GRID,
        log=log,
    )
    metrics = _metrics(evaluate_heads(heads, data))
    label, version_id = _publish(
        heads, metrics, data_ref, tenant=tenant if register else None, created_by=created_by, log=log
    )
    return TrainResult(heads, metrics, label, Path(settings.SAFETY_CHECKPOINT_DIR), data_ref, version_id)


def _data_ref(data: PublicData, n_extra: dict[str, int]) -> dict[str, Any]:
    """What the heads were trained on, stored with the version."""
    return {
        "sms": {"path": data.sources["sms"], "train": len(data.sms_train.texts), "test": len(data.sms_test.texts)},
        "davidson": {
            "path": data.sources["davidson"],
            "train": len(data.dav_train.texts),
            "test": len(data.dav_test.texts),
        },
        "split": "test = row index mod 5 == 0 of each file, never trained or tuned on",
        "moderator_examples": n_extra,
    }


def _metrics(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The version's metrics: F1 and ROC AUC of the heads alone and of the full classifier per
    label, and the full classifier's precision-recall curves."""
    metrics: dict[str, Any] = {}
    for label, m in evaluation.items():
        for kind in ("head", "full"):
            metrics[f"{label}_{kind}_f1"] = round(m[kind]["f1"], 4)
            metrics[f"{label}_{kind}_roc_auc"] = round(m[kind]["roc_auc"], 4)
    metrics["curves"] = {f"{label}_pr": evaluation[label]["full"]["pr_curve"] for label in evaluation}
    return metrics


def _publish(
    heads: TextHeads,
    metrics: dict[str, Any],
    data_ref: dict[str, Any],
    *,
    tenant: Tenant | None,
    created_by: str,
    log: Callable[[str], None],
) -> tuple[str, str | None]:
    """Write the checkpoint to SAFETY_CHECKPOINT_DIR (swapped in whole) and, for a tenant,
    register it as a safety version; (version label or "local", version id or None)."""
    workdir = Path(tempfile.mkdtemp(prefix="patra-safety-"))
    try:
        heads.save(workdir / "checkpoint")
        local = Path(settings.SAFETY_CHECKPOINT_DIR)
        tmp = local.with_name(local.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(workdir / "checkpoint", tmp)
        shutil.rmtree(local, ignore_errors=True)
        tmp.rename(local)
        label, version_id = "local", None
        if tenant is not None:
            version = model_version_register(
                tenant=tenant,
                model_type="safety",
                artifact_path=workdir / "checkpoint",
                parameters={k: v for k, v in heads.config.items() if k != "data_ref"},
                metrics=metrics,
                data_ref=data_ref,
                created_by=created_by,
            )
            label, version_id = version.label, str(version.pk)
        log(f"checkpoint written to {local}; version {label}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return label, version_id
