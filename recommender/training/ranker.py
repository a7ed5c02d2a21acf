"""Training the LightGBM ranker from impressions and the swipes that followed them, and its ONNX
export; both register ``ranker`` versions.

Two ways to form the query groups (``groups``), both labelled by the swipes users made after
seeing candidates (superlike 2, like 1, pass or none 0); groups without any like teach
LambdaMART nothing and are dropped. In both, the features see only the history before the
period they are labelled by, and model scores come from the tenant's active collaborative
model *refitted* on that history (same type, configuration and epochs,
:func:`recommender.training.train.collaborative_refit`): the served version has already seen the
swipes being predicted, and a ranker trained on its scores learns to trust them more than they
deserve when serving.

``impressions`` (the default)
    Every Impression since ``since`` is a row; the rows of one feed (same user,
    ``context_hash`` and timestamp) are one group, labelled by the user's first swipe on that
    candidate at or after the impression. The history is the swipes before the first impression
    used. The last 20 % of the groups in time are the early-stopping set. This learns
    P(like | shown) on what the feed actually showed, with no feedback loop on exposure.

``pools``
    What the feed's final scorer faces: at each of a few cuts of the history (70 %, 80 % and
    90 % of the swipes since ``since``), each user who liked someone in the next tenth gets one
    group: the candidates the feed would have pooled at the cut (the refitted model's top
    ``ML_COLLABORATIVE_CANDIDATES`` by its fused both-ways score among the profiles passing the
    hard filters both ways and not yet swiped, plus those who had already liked the user),
    labelled by what the user liked in that tenth. The probability scale (Platt) is fitted on
    the rows the user actually swiped in that tenth, so it stays P(like | shown), the side of the
    reciprocal fusion it replaces. The early-stopping set is a fifth of the last window's users.
    This is ``bench.deep``'s ranker stack (1.26x the best single model in NDCG@10 where
    impression groups gave 0.91-0.97x); part of that edge is predicting which profiles the
    running feed will *show*, which in production would feed the ranker its own exposure back,
    and the online simulation did not favour it (``docs/benchmarks.md``).

Model scores come from the tenant's active collaborative version (any model type: ALS, BPR,
two-tower, GraphSAGE, lmf; NaN for the other models' columns).

Artifact folder: ``ranker.txt`` + ``ranker.json`` (:class:`recommender.ml.ranker.Ranker`), and
``check.npy``: up to 2,000 feature rows of the early-stopping set, which ``export_onnx`` scores
with both LightGBM and onnxruntime before it registers an ONNX version.
"""

from __future__ import annotations

import bisect
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from django.conf import settings
from django.utils import timezone
from tqdm import tqdm

from accounts.models import Tenant
from recommender.feed.features import profile_features
from recommender.ml.collab import IdMap, load_recommender
from recommender.ml.ranker import (
    LABELS,
    ONNX_FILE,
    SOURCE_MODELS,
    OnnxRanker,
    PoolGroups,
    Ranker,
    RankerConfig,
    RankerContext,
    context_features,
    history_arrays,
    pool_groups,
)
from recommender.ml.structured import CandidateBatch, ProfileFeatures, hard_filter_mask
from recommender.models import Impression, Profile, ProfileEmbedding, Swipe
from recommender.pseudonyms import export_hash
from recommender.serving.encoder import vector_from_bytes
from recommender.training.options import GROUP_KINDS, GroupKind
from recommender.training.train import collaborative_refit
from registry.models import ModelVersion
from registry.selectors import active_version
from registry.services import model_version_register
from registry.storage import artifact_store

logger = logging.getLogger(__name__)

MODEL_TYPE = "ranker"
CHECK_FILE = "check.npy"
CHECK_ROWS = 2000
ONNX_TOLERANCE = 1e-4
# Cuts of the history (shares of the swipes since ``since``) and the span each is labelled by:
# three windows gave bench.deep more groups without reaching back into stale history.
POOL_CUTS: tuple[float, ...] = (0.7, 0.8, 0.9)
POOL_SPAN = 0.1
VALIDATION_SHARE = 0.2
PROGRESS_EVERY = 500  # users (pools) or feeds (impressions) between progress reports
OnProgress = Callable[[str, int, int], None]  # (stage, done, total)


class RankerTrainingError(ValueError):
    """The ranker cannot be trained or exported; the message says why."""


@dataclass
class RankerData:
    """x [rows, F], y [rows], groups [g] sizes; ``validation`` [g] bool: the early-stopping
    groups; ``calibration`` [rows] bool or None: the rows the Platt scaling is fitted on (None:
    the early-stopping rows)."""

    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    validation: np.ndarray
    calibration: np.ndarray | None
    info: dict[str, Any]


@dataclass
class _Tenant:
    """The tenant's profiles on dense rows 0..n-1 (by id) and what features need of them."""

    profiles: list[Profile]
    index: dict[int, int]
    features: list[ProfileFeatures]
    batch: CandidateBatch
    bio: np.ndarray | None  # [n, d] or None without embeddings
    hashes: np.ndarray  # [n] export pseudonyms, the collaborative models' ids

    @property
    def n(self) -> int:
        return len(self.profiles)


@dataclass
class _Swipes:
    """The tenant's swipes in time order, on dense profile rows."""

    users: np.ndarray  # [s] int64
    items: np.ndarray  # [s] int64
    actions: np.ndarray  # [s] str
    times: list[datetime]


def _tenant_data(tenant: Tenant) -> _Tenant:
    profiles = list(Profile.objects.filter(tenant=tenant).order_by("id"))
    index = {p.pk: i for i, p in enumerate(profiles)}
    vectors = {
        pk: vector_from_bytes(raw)
        for pk, raw in ProfileEmbedding.objects.filter(tenant=tenant).values_list("profile_id", "vector")
    }
    dim = next((v.size for v in vectors.values()), 0)
    bio = None
    if dim:
        bio = np.zeros((len(profiles), dim), dtype=np.float32)
        for pk, v in vectors.items():
            if pk in index and v.size == dim:
                bio[index[pk]] = v
    feats = [profile_features(p) for p in profiles]
    hashes = np.asarray([export_hash(p.external_id) for p in profiles], dtype=str)
    return _Tenant(profiles, index, feats, CandidateBatch.from_features(feats), bio, hashes)


def _swipes(tenant: Tenant, index: dict[int, int]) -> _Swipes:
    rows = [
        (index[u], index[v], a, at)
        for u, v, a, at in Swipe.objects.filter(tenant=tenant)
        .order_by("occurred_at", "id")
        .values_list("user_id", "candidate_id", "action", "occurred_at")
        if u in index and v in index
    ]
    return _Swipes(
        np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
        np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows)),
        np.asarray([r[2] for r in rows], dtype=str),
        [r[3] for r in rows],
    )


def _context(
    data: _Tenant, swipes: _Swipes, end: int, models: dict[str, Any], rows: dict[str, np.ndarray]
) -> RankerContext:
    """Ranker features' context from the swipes before position ``end``."""
    elo, given, liked, received, likes = history_arrays(
        data.n, swipes.users[:end], swipes.items[:end], swipes.actions[:end]
    )
    return RankerContext(
        profiles=data.features, batch=data.batch, bio=data.bio, elo=elo, swipes_given=given, likes_given=liked,
        likes_received=received, likes=likes, models=models, model_rows=rows,
    )  # fmt: skip


def _active_collaborative(tenant: Tenant) -> tuple[Any, str, str] | None:
    """(model, its name, its version label) of the tenant's active collaborative version."""
    version = active_version(tenant_id=tenant.pk, model_type="collaborative")
    if version is None:
        return None
    path = artifact_store().fetch(version)
    model = load_recommender(path / "model.pt" if path.is_dir() else path)
    return model, model.name, version.label


def _source_model(tenant: Tenant, data: _Tenant) -> tuple[Any, str, str, IdMap, np.ndarray] | None:
    """(model, name, version label, its id map, [n] its row of each profile, -1 unknown) of the
    active collaborative version when the ranker has columns for it."""
    source = _active_collaborative(tenant)
    if source is None:
        return None
    model, name, label = source
    ids = getattr(model, "extra", {}).get("ids")
    if name not in SOURCE_MODELS or not ids:
        return None
    id_map = IdMap(np.asarray(ids))
    return model, name, label, id_map, id_map.index(data.hashes, missing=-1)


def _refit_before(model: Any, ids: IdMap, data: _Tenant, swipes: _Swipes, end: int) -> Any:
    """``model`` refitted on the swipes before position ``end``: the served version has seen the
    swipes the ranker learns to predict, and a ranker trained on its scores would trust them
    more than they deserve at serving time."""
    return collaborative_refit(
        model=model, ids=ids, users=data.hashes[swipes.users[:end]], items=data.hashes[swipes.items[:end]],
        actions=swipes.actions[:end], profiles=data.profiles,
    )  # fmt: skip


def ranker_dataset(
    *,
    tenant: Tenant,
    since: datetime | None = None,
    groups: GroupKind = "impressions",
    progress: bool = False,
    on_progress: OnProgress | None = None,
) -> RankerData:
    """Features, labels and query groups of the tenant (see the module docs). ``progress``: bars
    on the terminal; ``on_progress(stage, done, total)``: the same counts for a caller that
    reports elsewhere (the registry job's run page)."""
    report = on_progress or (lambda stage, done, total: None)
    if groups == "pools":
        return _pool_dataset(tenant=tenant, since=since, progress=progress, report=report)
    if groups == "impressions":
        return _impression_dataset(tenant=tenant, since=since, progress=progress, report=report)
    raise RankerTrainingError(f"unknown groups {groups!r}; expected one of {', '.join(GROUP_KINDS)}")


def _impression_dataset(*, tenant: Tenant, since: datetime | None, progress: bool, report: OnProgress) -> RankerData:
    rows = _impression_rows(tenant, since)
    start = rows[0][3]
    data = _tenant_data(tenant)
    index = data.index
    swipes = _swipes(tenant, index)
    first_after, before = _swipes_from(swipes, start)
    models: dict[str, Any] = {}
    model_rows: dict[str, np.ndarray] = {}
    source = _source_model(tenant, data)
    if source is not None:
        model, name, _label, ids, rows_of = source
        models[name], model_rows[name] = _refit_before(model, ids, data, swipes, before), rows_of
    ctx = _context(data, swipes, before, models, model_rows)
    feeds = _impression_feeds(rows, index)
    xs, ys, sizes, skipped = _impression_groups(ctx, feeds, first_after, progress=progress, report=report)
    if len(sizes) < 2:
        raise RankerTrainingError(
            f"tenant {tenant.slug}: {len(sizes)} impression group(s) with a like; at least 2 are needed"
        )
    cut = min(max(1, round(0.8 * len(sizes))), len(sizes) - 1)  # the last fifth in time
    info = {
        "groups_from": "impressions",
        "impressions": len(rows),
        "groups": len(sizes),
        "groups_without_like": skipped,
        "history_swipes": before,
        "history_before": start.isoformat(),
        "source_models": sorted(models),
        "source_version": source[2] if source else None,
    }
    held = np.arange(len(sizes)) >= cut
    return RankerData(np.concatenate(xs), np.concatenate(ys), np.asarray(sizes), held, None, info)


def _impression_rows(tenant: Tenant, since: datetime | None) -> list[tuple[Any, ...]]:
    """The tenant's impressions (since ``since``) in time order: (user, candidate, context hash, time)."""
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
    return rows


def _swipes_from(swipes: _Swipes, start: datetime) -> tuple[dict[tuple[int, int], list[tuple[datetime, str]]], int]:
    """(each pair's swipes at or after ``start``, in time order: what labels the impressions;
    the number of swipes before ``start``: the history is ``swipes[:before]``)."""
    # Label: the first swipe on the candidate at or after the impression.
    first_after: dict[tuple[int, int], list[tuple[datetime, str]]] = {}
    before = 0
    history = zip(swipes.users.tolist(), swipes.items.tolist(), swipes.actions.tolist(), swipes.times, strict=True)
    for u, v, action, at in history:
        if at >= start:
            first_after.setdefault((u, v), []).append((at, action))
        else:
            before += 1  # time-ordered: the history is swipes[:before]
    return first_after, before


def _impression_feeds(rows: list[tuple[Any, ...]], index: dict[int, int]) -> dict[tuple[int, str, datetime], list[int]]:
    """The candidates (dense rows) of each feed served, keyed by (user row, context hash, time)."""
    feeds: dict[tuple[int, str, datetime], list[int]] = {}
    for u, v, context, at in rows:
        if u in index and v in index:
            feeds.setdefault((index[u], context, at), []).append(index[v])
    return feeds


def _impression_groups(
    ctx: RankerContext,
    feeds: dict[tuple[int, str, datetime], list[int]],
    first_after: dict[tuple[int, int], list[tuple[datetime, str]]],
    *,
    progress: bool,
    report: OnProgress,
) -> tuple[list[np.ndarray], list[np.ndarray], list[int], int]:
    """(features, labels, size) of each feed with a like, and how many feeds had none."""
    xs, ys, sizes = [], [], []
    skipped = 0
    bar = tqdm(feeds.items(), desc="ranker features", unit="feed", disable=not progress)
    for done, ((u, _context_hash, at), cands) in enumerate(bar):
        if done % PROGRESS_EVERY == 0:
            report("features", done, len(feeds))
        labels = []
        for v in cands:
            later = [a for t, a in first_after.get((u, v), []) if t >= at]
            labels.append(LABELS[later[0]] if later else 0)
        if max(labels) == 0:
            skipped += 1
            continue
        xs.append(context_features(ctx, u, np.asarray(cands, dtype=np.int64)))
        ys.append(np.asarray(labels, dtype=np.int32))
        sizes.append(len(cands))
    report("features", len(feeds), len(feeds))
    return xs, ys, sizes, skipped


def _position(swipes: _Swipes, first: int, share: float) -> int:
    """Position of the first swipe at or after ``share`` of the swipes from ``first`` on (in time)."""
    count = len(swipes.times) - first
    if share >= 1.0:
        return len(swipes.times)
    at = swipes.times[first + int(np.floor(share * count))]
    return bisect.bisect_left(swipes.times, at)  # never splits one instant between periods


def _period(swipes: _Swipes, lo: int, hi: int, n: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(labels, swiped) CSR [n, n] of swipes ``lo:hi``: each pair's first action in the period
    (superlike 2, like 1, pass 0) and 1 wherever the pair was swiped."""
    users, items, actions = swipes.users[lo:hi], swipes.items[lo:hi], swipes.actions[lo:hi]
    pair = users * n + items
    _, first = np.unique(pair, return_index=True)  # time order: the first occurrence per pair
    label = np.asarray([LABELS[a] for a in actions[first]], dtype=np.float32)
    labels = sp.csr_matrix((label, (users[first], items[first])), shape=(n, n))
    swiped = sp.csr_matrix((np.ones(first.size, np.float32), (users[first], items[first])), shape=(n, n))
    return labels, swiped


def _pools(
    data: _Tenant, ctx: RankerContext, model: Any, rows_of: np.ndarray, seen: sp.csr_matrix, users: np.ndarray
) -> list[np.ndarray]:
    """What the feed would pool for each user at the cut: ``model``'s top
    ``ML_COLLABORATIVE_CANDIDATES`` by fused P(u likes v) and P(v likes u) among the profiles
    passing the hard filters both ways and not yet swiped, then those who already liked the user
    (eligible the same way). Users the model has no row for get no pool."""
    k = int(settings.ML_COLLABORATIVE_CANDIDATES)
    liked_by = ctx.likes.tocsc()
    pools = []
    for u in users.tolist():
        eligible = hard_filter_mask(data.features[u], data.batch)  # [n]
        eligible[u] = False
        eligible[seen.indices[seen.indptr[u] : seen.indptr[u + 1]]] = False
        cands = np.flatnonzero(eligible & (rows_of >= 0))
        if rows_of[u] < 0 or cands.size == 0:
            pools.append(np.zeros(0, dtype=np.int64))
            continue
        score = model.reciprocal_scores(int(rows_of[u]), rows_of[cands], settings.ML_FUSION_METHOD)  # [cands]
        top = cands[np.argsort(-score, kind="stable")[:k]]
        fans = liked_by.indices[liked_by.indptr[u] : liked_by.indptr[u + 1]]
        fans = fans[eligible[fans]]
        pool = np.concatenate([top, fans])
        _, first = np.unique(pool, return_index=True)
        pools.append(pool[np.sort(first)])
    return pools


def _pool_dataset(*, tenant: Tenant, since: datetime | None, progress: bool, report: OnProgress) -> RankerData:
    data = _tenant_data(tenant)
    source = _source_model(tenant, data)
    if source is None:
        raise RankerTrainingError(
            f"tenant {tenant.slug} has no active collaborative version of a type the ranker reads "
            f"({', '.join(SOURCE_MODELS)}): pool groups are that model's proposals (train one first)"
        )
    _model, name, label, _id_map, _rows_of = source
    swipes = _swipes(tenant, data.index)
    first = 0
    if since is not None:
        first = bisect.bisect_left(swipes.times, since)
    if len(swipes.times) - first < 10:
        count = len(swipes.times) - first
        raise RankerTrainingError(f"tenant {tenant.slug} has {count} swipes to learn from; at least 10 are needed")
    parts: list[PoolGroups] = []
    per_window: dict[str, int] = {}
    refit_seconds = 0.0
    for cut in POOL_CUTS:
        part, seconds = _pool_window(data, swipes, source, first, cut, progress=progress, report=report)
        refit_seconds += seconds
        per_window[f"{cut:.0%}"] = int(part.sizes.size)
        parts.append(part)
    sizes = np.concatenate([g.sizes for g in parts])
    if sizes.size < 2:
        raise RankerTrainingError(
            f"tenant {tenant.slug}: {sizes.size} pool group(s) with a like; at least 2 are needed"
        )
    held = _pool_validation(sizes, parts[-1].sizes.size)
    info = {
        "groups_from": "pools",
        "groups": int(sizes.size),
        "groups_per_window": per_window,
        "rows": int(sizes.sum()),
        "mean_pool_size": float(sizes.mean()),
        "swipes": len(swipes.times) - first,
        "windows": list(POOL_CUTS),
        "refit_seconds": refit_seconds,
        "source_models": [name],
        "source_version": label,
    }
    return RankerData(
        np.concatenate([g.x for g in parts]), np.concatenate([g.y for g in parts]), sizes, held,
        np.concatenate([g.shown for g in parts]), info,
    )  # fmt: skip


def _pool_window(
    data: _Tenant,
    swipes: _Swipes,
    source: tuple[Any, str, str, IdMap, np.ndarray],
    first: int,
    cut: float,
    *,
    progress: bool,
    report: OnProgress,
) -> tuple[PoolGroups, float]:
    """(the pool groups of the window after ``cut``, the seconds the source model's refit on the
    swipes before it took)."""
    model, name, _label, id_map, rows_of = source
    stage = f"pools at {cut:.0%}"
    report(stage, 0, 1)
    lo, hi = _position(swipes, first, cut), _position(swipes, first, round(cut + POOL_SPAN, 6))
    started = time.perf_counter()
    refit = _refit_before(model, id_map, data, swipes, lo)
    refit_seconds = time.perf_counter() - started
    ctx = _context(data, swipes, lo, {name: refit}, {name: rows_of})
    seen = sp.csr_matrix((np.ones(lo, np.float32), (swipes.users[:lo], swipes.items[:lo])), shape=(data.n, data.n))
    labels, swiped = _period(swipes, lo, hi, data.n)
    users = np.flatnonzero(np.asarray((labels > 0).sum(axis=1)).reshape(-1))
    chunks = []
    with tqdm(total=users.size, desc=f"ranker {stage}", unit="user", disable=not progress) as bar:
        for start in range(0, users.size, PROGRESS_EVERY):
            chunk = users[start : start + PROGRESS_EVERY]
            pools = _pools(data, ctx, refit, rows_of, seen, chunk)
            chunks.append(pool_groups(ctx, chunk.tolist(), pools, labels, swiped))
            bar.update(chunk.size)
            report(stage, start + chunk.size, users.size)
    part = PoolGroups.concat(chunks) if chunks else pool_groups(ctx, [], [], labels, swiped)
    return part, refit_seconds


def _pool_validation(sizes: np.ndarray, last: int) -> np.ndarray:
    """[groups] bool, the early-stopping groups, of which the last ``last`` are the last window's."""
    # Early stopping: a fifth of the last window's users (random, fixed seed), the period
    # closest to what the ranker will serve.
    held = np.zeros(sizes.size, dtype=bool)
    if last >= 2:
        pick = np.random.default_rng(0).permutation(last)[: max(1, round(VALIDATION_SHARE * last))]
        held[sizes.size - last + pick] = True
    else:
        held[-1] = True
    return held


@dataclass
class RankerResult:
    artifact_dir: Path
    metrics: dict[str, Any]
    version_id: str | None


def _rows_of(sizes: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """[rows] bool: the rows of the groups ``keep`` ([groups] bool)."""
    return np.repeat(keep, sizes)


def ranker_train(
    *,
    tenant: Tenant,
    since: datetime | None = None,
    groups: GroupKind = "impressions",
    config: RankerConfig | None = None,
    output_dir: Path | str | None = None,
    register: bool = True,
    created_by: str = "system:train_ranker",
    progress: bool = False,
    on_progress: OnProgress | None = None,
) -> RankerResult:
    """Train the ranker on the tenant's history, write its folder and register a version."""
    config = config or RankerConfig()
    data = ranker_dataset(tenant=tenant, since=since, groups=groups, progress=progress, on_progress=on_progress)
    val_rows = _rows_of(data.groups, data.validation)
    calibration = None
    if data.calibration is not None:
        shown = val_rows & data.calibration
        calibration = (data.x[shown], data.y[shown])
    started = time.perf_counter()
    ranker = Ranker(config).fit(
        data.x[~val_rows], data.y[~val_rows], data.groups[~data.validation],
        validation=(data.x[val_rows], data.y[val_rows], data.groups[data.validation]),
        calibration=calibration, progress=progress,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if output_dir:
        folder = Path(output_dir)
    else:
        stamp = timezone.now().strftime("%Y%m%dT%H%M%S")
        folder = Path(settings.ARTIFACT_ROOT) / MODEL_TYPE / f"lightgbm-{stamp}-{tenant.slug}"
    ranker.save(folder)
    np.save(folder / CHECK_FILE, data.x[val_rows][:CHECK_ROWS], allow_pickle=False)
    metrics = {
        **{k: v for k, v in ranker.metrics.items()},
        "train_seconds": seconds,
        "calibration_rows": int(calibration[0].shape[0]) if calibration else int(val_rows.sum()),
        **data.info,
        "feature_importance": dict(sorted(ranker.feature_importance().items(), key=lambda kv: -kv[1])[:10]),
    }
    version_id = None
    if register:
        version = model_version_register(
            tenant=tenant,
            model_type=MODEL_TYPE,
            artifact_path=folder,
            parameters={"model": "lightgbm_lambdamart", "format": "lightgbm", "groups": groups, **asdict(config)},
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
