"""Training the LightGBM ranker from impressions and the swipes that followed them, and its ONNX
export; both register ``ranker`` versions.

Data: every Impression of the tenant since ``since`` is one row; the rows of one feed (same user,
``context_hash`` and timestamp) are one query group. Label = the user's first swipe on that
candidate at or after the impression (superlike 2, like 1, pass or none 0). Groups with no like
at all teach LambdaMART nothing and are dropped. Features (:data:`recommender.ml.ranker.RANKER_FEATURES`)
come from :func:`recommender.ml.ranker.context_features`: the history (Elo, activity, who liked
whom) is the swipes *before* the first impression used, so no feature sees the swipes it is
trained to predict; model scores come from the tenant's active collaborative version (any model
type: ALS, BPR, two-tower, GraphSAGE; NaN for the other models' columns). The last 20 % of the
groups in time are the early-stopping set.

Artifact folder: ``ranker.txt`` + ``ranker.json`` (:class:`recommender.ml.ranker.Ranker`), and
``check.npy``: up to 2,000 feature rows of the early-stopping set, which ``export_onnx`` scores
with both LightGBM and onnxruntime before it registers an ONNX version.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from django.utils import timezone
from tqdm import tqdm

from recommender.ml.collab import load_recommender
from recommender.ml.ranker import (
    LABELS,
    ONNX_FILE,
    SOURCE_MODELS,
    OnnxRanker,
    Ranker,
    RankerConfig,
    RankerContext,
    context_features,
    history_arrays,
)
from recommender.ml.structured import CandidateBatch
from recommender.models import Impression, Profile, ProfileEmbedding, Swipe, Tenant
from recommender.services.embeddings import vector_from_bytes
from recommender.services.feed import profile_features
from recommender.training.extract import export_hash

logger = logging.getLogger(__name__)

MODEL_TYPE = "ranker"
CHECK_FILE = "check.npy"
CHECK_ROWS = 2000
ONNX_TOLERANCE = 1e-4


class RankerTrainingError(ValueError):
    """The ranker cannot be trained or exported; the message says why."""


@dataclass
class RankerData:
    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    info: dict[str, Any]


def _active_collaborative(tenant: Tenant) -> tuple[Any, str, str] | None:
    """(model, its name, its version label) of the tenant's active collaborative version."""
    from registry.selectors import active_version
    from registry.storage import artifact_store

    version = active_version(tenant_id=tenant.pk, model_type="collaborative")
    if version is None:
        return None
    path = artifact_store().fetch(version)
    model = load_recommender(path / "model.pt" if path.is_dir() else path)
    return model, model.name, version.label


def ranker_dataset(*, tenant: Tenant, since: datetime | None = None, progress: bool = False) -> RankerData:
    """Features, labels and query groups of the tenant's impressions (see the module docs)."""
    impressions = Impression.objects.filter(tenant=tenant)
    if since is not None:
        impressions = impressions.filter(occurred_at__gte=since)
    rows = list(
        impressions.order_by("occurred_at", "user_id", "context_hash", "position").values_list(
            "user_id", "candidate_id", "context_hash", "occurred_at"
        )
    )
    if not rows:
        raise RankerTrainingError(f"tenant {tenant.slug} has no impressions to learn from")
    start = rows[0][3]
    profiles = list(Profile.objects.filter(tenant=tenant).order_by("id"))
    index = {p.pk: i for i, p in enumerate(profiles)}
    n = len(profiles)
    # Label: the first swipe on the candidate at or after the impression.
    swipes = list(
        Swipe.objects.filter(tenant=tenant)
        .order_by("occurred_at", "id")
        .values_list("user_id", "candidate_id", "action", "occurred_at")
    )
    first_after: dict[tuple[int, int], list[tuple[datetime, str]]] = {}
    for u, v, action, at in swipes:
        if at >= start:
            first_after.setdefault((u, v), []).append((at, action))
    before = [(index[u], index[v], a) for u, v, a, at in swipes if at < start and u in index and v in index]
    hist = np.asarray(before, dtype=object).reshape(-1, 3)
    elo, given, liked, received, likes = history_arrays(
        n, hist[:, 0].astype(np.int64), hist[:, 1].astype(np.int64), hist[:, 2].astype(str)
    )
    vectors = {
        pk: vector_from_bytes(raw)
        for pk, raw in ProfileEmbedding.objects.filter(tenant=tenant).values_list("profile_id", "vector")
    }
    dim = next((v.size for v in vectors.values()), 0)
    bio = None
    if dim:
        bio = np.zeros((n, dim), dtype=np.float32)
        for pk, v in vectors.items():
            if pk in index and v.size == dim:
                bio[index[pk]] = v
    feats = [profile_features(p) for p in profiles]
    models: dict[str, Any] = {}
    model_rows: dict[str, np.ndarray] = {}
    source = _active_collaborative(tenant)
    source_label = None
    if source is not None:
        model, name, source_label = source
        ids = getattr(model, "extra", {}).get("ids")
        if name in SOURCE_MODELS and ids:
            from recommender.ml.collab import IdMap

            models[name] = model
            model_rows[name] = IdMap(np.asarray(ids)).index(
                np.asarray([export_hash(p.external_id) for p in profiles]), missing=-1
            )
    ctx = RankerContext(
        profiles=feats, batch=CandidateBatch.from_features(feats), bio=bio, elo=elo, swipes_given=given,
        likes_given=liked, likes_received=received, likes=likes, models=models, model_rows=model_rows,
    )  # fmt: skip
    groups: dict[tuple[int, str, datetime], list[int]] = {}
    for u, v, context, at in rows:
        if u in index and v in index:
            groups.setdefault((u, context, at), []).append(v)
    xs, ys, sizes = [], [], []
    skipped = 0
    for (u, _context, at), cands in tqdm(groups.items(), desc="ranker features", unit="feed", disable=not progress):
        labels = []
        for v in cands:
            later = [a for t, a in first_after.get((u, v), []) if t >= at]
            labels.append(LABELS[later[0]] if later else 0)
        if max(labels) == 0:
            skipped += 1
            continue
        xs.append(context_features(ctx, index[u], np.asarray([index[v] for v in cands], dtype=np.int64)))
        ys.append(np.asarray(labels, dtype=np.int32))
        sizes.append(len(cands))
    if len(sizes) < 2:
        raise RankerTrainingError(
            f"tenant {tenant.slug}: {len(sizes)} impression group(s) with a like; at least 2 are needed"
        )
    info = {
        "impressions": len(rows),
        "groups": len(sizes),
        "groups_without_like": skipped,
        "history_swipes": len(before),
        "history_before": start.isoformat(),
        "source_models": sorted(models),
        "source_version": source_label,
    }
    return RankerData(np.concatenate(xs), np.concatenate(ys), np.asarray(sizes), info)


@dataclass
class RankerResult:
    artifact_dir: Path
    metrics: dict[str, Any]
    version_id: str | None


def ranker_train(
    *,
    tenant: Tenant,
    since: datetime | None = None,
    config: RankerConfig | None = None,
    output_dir: Path | str | None = None,
    register: bool = True,
    created_by: str = "system:train_ranker",
    progress: bool = False,
) -> RankerResult:
    """Train the ranker on the tenant's impressions, write its folder and register a version."""
    config = config or RankerConfig()
    data = ranker_dataset(tenant=tenant, since=since, progress=progress)
    cut = max(1, round(0.8 * data.groups.size))
    if cut >= data.groups.size:
        cut = data.groups.size - 1
    rows = int(data.groups[:cut].sum())
    started = time.perf_counter()
    ranker = Ranker(config).fit(
        data.x[:rows], data.y[:rows], data.groups[:cut],
        validation=(data.x[rows:], data.y[rows:], data.groups[cut:]), progress=progress,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if output_dir:
        folder = Path(output_dir)
    else:
        from django.conf import settings

        stamp = timezone.now().strftime("%Y%m%dT%H%M%S")
        folder = Path(settings.ARTIFACT_ROOT) / MODEL_TYPE / f"lightgbm-{stamp}-{tenant.slug}"
    ranker.save(folder)
    np.save(folder / CHECK_FILE, data.x[rows:][:CHECK_ROWS], allow_pickle=False)
    metrics = {
        **{k: v for k, v in ranker.metrics.items()},
        "train_seconds": seconds,
        **data.info,
        "feature_importance": dict(sorted(ranker.feature_importance().items(), key=lambda kv: -kv[1])[:10]),
    }
    version_id = None
    if register:
        from registry.services import model_version_register

        version = model_version_register(
            tenant=tenant,
            model_type=MODEL_TYPE,
            artifact_path=folder,
            parameters={"model": "lightgbm_lambdamart", "format": "lightgbm", **asdict(config)},
            metrics=metrics,
            data_ref={"since": since.isoformat() if since else None, **data.info},
            created_by=created_by,
        )
        version_id = str(version.id)
    return RankerResult(artifact_dir=folder, metrics=metrics, version_id=version_id)


def ranker_export_onnx(
    *,
    tenant: Tenant,
    version_id: str | None = None,
    output_dir: Path | str | None = None,
    register: bool = True,
    created_by: str = "system:export_onnx",
) -> RankerResult:
    """Export a ranker version (default: the tenant's active one) to ONNX, check its scores
    against LightGBM on the stored check rows, and register the folder (LightGBM files +
    ``ranker.onnx``) as a new ranker version with ``parameters.format = "onnx"``."""
    from registry.models import ModelVersion
    from registry.selectors import active_version
    from registry.storage import artifact_store

    if version_id:
        version = ModelVersion.objects.filter(pk=version_id, tenant=tenant, model_type=MODEL_TYPE).first()
    else:
        version = active_version(tenant_id=tenant.pk, model_type=MODEL_TYPE)
    if version is None:
        raise RankerTrainingError(f"no ranker version {version_id or '(active)'} for tenant {tenant.slug}")
    source = artifact_store().fetch(version)
    ranker = Ranker.load(source)
    with tempfile.TemporaryDirectory(prefix="patra-onnx-") as tmp:
        folder = Path(output_dir) if output_dir else Path(tmp) / "ranker"
        if folder.resolve() != source.resolve():
            shutil.copytree(source, folder, dirs_exist_ok=True)
        ranker.export_onnx(folder / ONNX_FILE)
        check_path = folder / CHECK_FILE
        check = (
            np.load(check_path, allow_pickle=False)
            if check_path.exists()
            else np.random.default_rng(0).standard_normal((500, len(ranker.features))).astype(np.float32)
        )
        onnx_scores = OnnxRanker.load(folder).predict(check)
        diff = float(np.max(np.abs(onnx_scores - ranker.predict(check)))) if len(check) else 0.0
        if diff > ONNX_TOLERANCE:
            raise RankerTrainingError(f"ONNX scores differ from LightGBM by {diff:.2e} (> {ONNX_TOLERANCE})")
        metrics = {**version.metrics, "onnx_max_abs_diff": diff, "onnx_check_rows": len(check)}
        version_out = None
        if register:
            from registry.services import model_version_register

            registered = model_version_register(
                tenant=tenant,
                model_type=MODEL_TYPE,
                artifact_path=folder,
                parameters={**version.parameters, "format": "onnx", "source_version": version.label},
                metrics=metrics,
                data_ref=version.data_ref,
                created_by=created_by,
            )
            version_out = str(registered.id)
        result_dir = Path(output_dir) if output_dir else Path(version.artifact_uri)
    return RankerResult(artifact_dir=result_dir, metrics=metrics, version_id=version_out)
