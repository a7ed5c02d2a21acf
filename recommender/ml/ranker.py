"""The final scorer: a LightGBM LambdaMART ranker over per-candidate features (framework-free).

A candidate source (ALS, BPR, two-tower, GraphSAGE, the index) proposes a few hundred candidates
per user; the ranker orders them. It is trained on query groups (one group = the candidates one
user was shown in one feed, with the swipes that followed: superlike 2, like 1, pass or no swipe
0) with the LambdaMART objective, i.e. directly for NDCG.

Features (:data:`RANKER_FEATURES`, the column order of every matrix; NaN = unavailable, which
LightGBM and the ONNX export both route down each tree's learnt "missing" branch, so a feed
that lacks one model still gets scores):

* ``p_uv_<model>``: calibrated P(u likes v) of each collaborative model (``like_probability``);
  ``p_vu_<model>``: P(v likes u) from the same model, the predicted reciprocal like;
* ``bio_similarity``: cosine of the two bio embeddings;
* ``structured``, ``age_fit``, ``distance_score``, ``interests``, ``lifestyle``: the structured
  components of :mod:`recommender.ml.structured` (both ways where they are symmetric);
* ``elo_user``, ``elo_candidate``: Elo ratings (desirability);
* activity: ``cand_swipes_given``, ``cand_like_rate`` (v's selectivity), ``user_swipes_given``,
  ``user_like_rate`` (the counters the feed serves from ``EloRating``; likes *received* are not
  a feature: the feed has no per-request count of them, and a feature trained on values but
  served missing would take a branch no training row took);
* ``liked_you``: 1 when v already liked or superliked u (0 otherwise);
* demographic compatibility: ``distance_km``, ``distance_margin`` (how far inside both stated
  maximum distances the pair is, in km, the smaller side; negative beyond one), ``age_gap``
  (v's age - u's age), ``cand_age``, ``age_band_margin`` (how far inside both stated age bands
  the pair is, in years, the smaller side), ``gender_match`` (both seek the other's gender: 1/0);
* ``same_<attribute>``: whether the two agree on each lifestyle attribute of
  :data:`HOMOPHILY_ATTRIBUTES` (1/0, NaN when either left it blank), so the trees can weigh
  smoking or religion apart from, say, pets.

Build a matrix with :func:`feature_matrix` from a name -> array mapping (training, benchmark and
feed use the same function); :func:`pair_features` computes the structured and demographic part
from :class:`~recommender.ml.structured.ProfileFeatures` and a
:class:`~recommender.ml.structured.CandidateBatch`.

Files (no pickle): ``ranker.txt`` (LightGBM's text model), ``ranker.json`` (format, feature list,
config, metrics); :meth:`Ranker.export_onnx` adds ``ranker.onnx`` (onnxmltools), scored by
:class:`OnnxRanker` with onnxruntime for serving outside Python.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from recommender.ml.structured import (
    ATTR_INDEX,
    ORDINAL_SCALES,
    ORDINAL_TOLERANCE,
    CandidateBatch,
    ProfileFeatures,
    encode_attributes,
    gender_code,
    haversine_km,
    seeking_mask,
    structured_scores,
)

RANKER_FORMAT = "patra.ranker/1"
MODEL_FILE = "ranker.txt"
META_FILE = "ranker.json"
ONNX_FILE = "ranker.onnx"
SOURCE_MODELS: tuple[str, ...] = ("popularity", "als", "bpr", "two_tower", "graphsage", "lmf")
# Lifestyle attributes compared one by one (``same_<name>``): the ``lifestyle`` share weighs them
# all alike, while people care about some (smoking, religion, kids) more than others. Not
# ethnicity (the ranker must not learn racial filtering) nor height (nobody states a preference).
HOMOPHILY_ATTRIBUTES: tuple[str, ...] = tuple(a for a in ATTR_INDEX if a not in ("ethnicity", "height"))
RANKER_FEATURES: tuple[str, ...] = (
    *(f"p_uv_{m}" for m in SOURCE_MODELS),
    *(f"p_vu_{m}" for m in SOURCE_MODELS),
    "bio_similarity",
    "structured",
    "age_fit",
    "distance_score",
    "interests",
    "lifestyle",
    "elo_user",
    "elo_candidate",
    "cand_swipes_given",
    "cand_like_rate",
    "user_swipes_given",
    "user_like_rate",
    "liked_you",
    "distance_km",
    "distance_margin",
    "age_gap",
    "cand_age",
    "age_band_margin",
    "gender_match",
    *(f"same_{a}" for a in HOMOPHILY_ATTRIBUTES),
)
LABELS: dict[str, int] = {"superlike": 2, "like": 1, "pass": 0}


class RankerError(ValueError):
    """Bad ranker input or files; the message says why."""


def feature_matrix(
    columns: Mapping[str, np.ndarray | float | int], n: int, features: Sequence[str] = RANKER_FEATURES
) -> np.ndarray:
    """[n, len(features)] float32 in ``features`` order (default RANKER_FEATURES; a loaded ranker
    passes the list it was trained on); missing columns are NaN.

    ``columns`` maps feature names to [n] arrays (or scalars, broadcast); names outside
    RANKER_FEATURES raise so a typo cannot silently leave a feature empty.
    """
    unknown = set(columns) - set(RANKER_FEATURES)
    if unknown:
        raise RankerError(f"unknown ranker features: {sorted(unknown)}")
    out = np.full((n, len(features)), np.nan, dtype=np.float32)
    for j, name in enumerate(features):
        if name in columns:
            value = np.asarray(columns[name], dtype=np.float32)
            if value.ndim not in (0, 1) or (value.ndim == 1 and value.shape[0] != n):
                raise RankerError(f"feature {name} has shape {value.shape}, expected ({n},)")
            out[:, j] = value
    return out


def pair_features(user: ProfileFeatures, cands: CandidateBatch) -> dict[str, np.ndarray]:
    """Structured components and demographic compatibility of ``user`` with each candidate."""
    result = structured_scores(user, cands)
    u_gender, u_seek = gender_code(user.gender), seeking_mask(user.seeking)
    cand_bits = np.left_shift(np.uint8(1), cands.gender.astype(np.uint8))
    gender_ok = ((cand_bits & u_seek) != 0) & ((cands.seeking & (1 << u_gender)) != 0)
    age = cands.age.astype(np.float32)
    margin = np.minimum.reduce(
        [
            age - user.age_min,
            user.age_max - age,
            user.age - cands.age_min.astype(np.float32),
            cands.age_max.astype(np.float32) - user.age,
        ]
    )
    distance = haversine_km(user.lat, user.lon, cands.lat, cands.lon)
    return {
        **attribute_matches(user, cands),
        "structured": result.score,
        "age_fit": result.components["age_fit"],
        "distance_score": result.components["distance"],
        "interests": result.components["interests"],
        "lifestyle": result.components["lifestyle"],
        "distance_km": distance.astype(np.float32),
        "distance_margin": (np.minimum(user.max_distance_km, cands.max_distance_km) - distance).astype(np.float32),
        "age_gap": age - user.age,
        "cand_age": age,
        "age_band_margin": margin.astype(np.float32),
        "gender_match": gender_ok.astype(np.float32),
    }


_HOMOPHILY_COLS = np.array([ATTR_INDEX[a] for a in HOMOPHILY_ATTRIBUTES])
_HOMOPHILY_ORDINAL = np.array([a in ORDINAL_SCALES for a in HOMOPHILY_ATTRIBUTES])


def attribute_matches(user: ProfileFeatures, cands: CandidateBatch) -> dict[str, np.ndarray]:
    """``same_<attribute>``: 1 when the user and the candidate agree on it (equal, or within
    ORDINAL_TOLERANCE steps on an ordinal scale, as the ``lifestyle`` share counts), 0 when
    they differ, NaN when either left it blank."""
    u = encode_attributes(user.attributes)[_HOMOPHILY_COLS]  # [m]
    c = cands.attributes[:, _HOMOPHILY_COLS]  # [n, m]
    agree = np.where(_HOMOPHILY_ORDINAL, np.abs(c - u) <= ORDINAL_TOLERANCE, c == u)  # [n, m]
    out = np.where((u >= 0) & (c >= 0), agree, np.nan).astype(np.float32)  # [n, m]
    return {f"same_{a}": out[:, j] for j, a in enumerate(HOMOPHILY_ATTRIBUTES)}


def group_sizes(query: np.ndarray) -> np.ndarray:
    """Sizes of consecutive runs of equal query ids (rows of one group must be contiguous)."""
    query = np.asarray(query)
    if query.size == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate([[True], query[1:] != query[:-1]]))
    sizes = np.diff(np.concatenate([starts, [query.size]]))
    if np.unique(query[starts]).size != starts.size:
        raise RankerError("rows of a query group must be contiguous (sort by query first)")
    return sizes


@dataclass
class RankerConfig:
    num_leaves: int = 31
    learning_rate: float = 0.05
    n_estimators: int = 400
    min_data_in_leaf: int = 20
    feature_fraction: float = 0.9
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 1.0
    truncation_level: int = 20  # LambdaMART: pairs considered below this rank
    label_gain: list[float] = field(default_factory=lambda: [0.0, 1.0, 3.0])  # pass, like, superlike
    early_stopping_rounds: int = 30
    eval_at: int = 10
    seed: int = 0
    threads: int = 1


class Ranker:
    """LightGBM LambdaMART over :data:`RANKER_FEATURES`."""

    def __init__(self, config: RankerConfig | None = None) -> None:
        self.config = config or RankerConfig()
        self.booster: Any = None
        self.features: tuple[str, ...] = RANKER_FEATURES
        self.metrics: dict[str, Any] = {}
        # Platt scaling of the scores to P(like) (like or superlike against the rest), fitted on
        # the early-stopping groups: lets the feed fuse the ranker's one-way estimate with the
        # candidate's side. None for rankers saved before it existed.
        self.calibration: tuple[float, float] | None = None

    def _params(self) -> dict[str, Any]:
        c = self.config
        return {
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": [c.eval_at],
            "num_leaves": c.num_leaves,
            "learning_rate": c.learning_rate,
            "min_data_in_leaf": c.min_data_in_leaf,
            "feature_fraction": c.feature_fraction,
            "bagging_fraction": c.bagging_fraction,
            "bagging_freq": c.bagging_freq,
            "lambda_l2": c.lambda_l2,
            "lambdarank_truncation_level": c.truncation_level,
            "label_gain": list(c.label_gain),
            "seed": c.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": c.threads,
            "verbosity": -1,
        }

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        groups: np.ndarray,
        *,
        validation: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
        calibration: tuple[np.ndarray, np.ndarray] | None = None,
        progress: bool = False,
    ) -> Ranker:
        """Train on [n, F] features, [n] integer labels (0 pass / no swipe, 1 like, 2 superlike)
        and group sizes (consecutive rows per query); early stopping on ``validation`` NDCG.
        ``calibration`` ([m, F] rows, [m] labels): the rows the Platt scaling to P(like) is fitted
        on (default: the validation rows, else the training rows). Groups labelled by what was
        liked *later* pass the rows that were actually shown and swiped, so the probability stays
        P(like | shown), the scale the feed's fusion expects."""
        import lightgbm as lgb

        # Training only, like lightgbm: recommender.ml.collab imports torch, which serving a ranker
        # (and every process importing the feed at start-up) must not pay for.
        from recommender.ml.collab.base import platt_fit

        x, y, groups = self._check(x), np.asarray(y, dtype=np.int32), np.asarray(groups, dtype=np.int64)
        if groups.sum() != x.shape[0] or y.shape != (x.shape[0],):
            raise RankerError("labels and group sizes must cover every row of x")
        train = lgb.Dataset(x, y, group=groups, feature_name=list(self.features), free_raw_data=False)
        sets, names = [train], ["train"]
        callbacks: list[Callable[..., Any]] = []
        if validation is not None:
            vx, vy, vg = validation
            sets.append(lgb.Dataset(self._check(vx), np.asarray(vy, dtype=np.int32), group=vg, reference=train))
            names.append("validation")
            callbacks.append(lgb.early_stopping(self.config.early_stopping_rounds, verbose=False))
        record: dict[str, Any] = {}
        callbacks.append(lgb.record_evaluation(record))
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=self.config.n_estimators, desc="train ranker", unit="tree", leave=False)
            callbacks.append(lambda env: bar.update(1))
        self.booster = lgb.train(
            self._params(), train, num_boost_round=self.config.n_estimators, valid_sets=sets, valid_names=names,
            callbacks=callbacks,
        )  # fmt: skip
        if progress:
            bar.close()
        key = f"ndcg@{self.config.eval_at}"
        self.metrics = {
            "best_iteration": int(self.booster.best_iteration or self.booster.current_iteration()),
            "train_rows": int(x.shape[0]),
            "train_groups": int(groups.size),
        }
        if "validation" in record:
            curve = record["validation"][key]
            self.metrics[f"val_{key}"] = float(max(curve))
            self.metrics["curve"] = [float(v) for v in curve]
        cx, cy = calibration or ((validation[0], validation[1]) if validation is not None else (x, y))
        self.calibration = platt_fit(self.predict(cx), (np.asarray(cy) > 0).astype(np.float64))
        return self

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != len(self.features):
            raise RankerError(f"ranker input must be [n, {len(self.features)}], got {x.shape}")
        return x

    def matrix(self, columns: Mapping[str, np.ndarray | float | int], n: int) -> np.ndarray:
        """[n, F] features in the order this ranker was trained on (see :func:`feature_matrix`)."""
        return feature_matrix(columns, n, self.features)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """[n] float64 ranking scores (higher first; comparable within a query)."""
        if self.booster is None:
            raise RankerError("the ranker is not trained")
        x = self._check(x)
        if x.shape[0] == 0:
            return np.zeros(0)
        # num_threads: one request is a few hundred rows; OpenMP threads cost more than they save
        # (and spin against the other workers of a busy server).
        return np.asarray(
            self.booster.predict(x, num_iteration=self.metrics.get("best_iteration"), num_threads=self.config.threads)
        )

    def like_probability(self, x: np.ndarray) -> np.ndarray | None:
        """[n] calibrated P(like) of the rows, or None when the ranker has no calibration."""
        if self.calibration is None:
            return None
        a, b = self.calibration
        return 1.0 / (1.0 + np.exp(-np.clip(a * self.predict(x) + b, -50.0, 50.0)))

    def feature_importance(self) -> dict[str, float]:
        gains = self.booster.feature_importance(importance_type="gain", iteration=self.metrics.get("best_iteration"))
        return {name: float(g) for name, g in zip(self.features, gains, strict=True)}

    # --- files ---------------------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        if self.booster is None:
            raise RankerError("the ranker is not trained")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(folder / MODEL_FILE), num_iteration=self.metrics.get("best_iteration"))
        meta = {
            "format": RANKER_FORMAT,
            "features": list(self.features),
            "config": asdict(self.config),
            "metrics": self.metrics,
            "calibration": list(self.calibration) if self.calibration is not None else None,
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Ranker:
        import lightgbm as lgb

        folder = Path(folder)
        meta = _read_meta(folder)
        known = {f.name for f in fields(RankerConfig)}
        ranker = cls(RankerConfig(**{k: v for k, v in meta["config"].items() if k in known}))
        ranker.features = tuple(meta["features"])
        ranker.metrics = {k: v for k, v in meta.get("metrics", {}).items() if k != "best_iteration"}
        calibration = meta.get("calibration")
        ranker.calibration = (float(calibration[0]), float(calibration[1])) if calibration else None
        ranker.booster = lgb.Booster(model_file=str(folder / MODEL_FILE))  # saved at its best iteration
        return ranker

    def export_onnx(self, path: str | Path) -> Path:
        """Write the model as ONNX (input ``features`` [n, F] float32, output ``scores`` [n, 1])."""
        import onnxmltools
        from onnxmltools.convert.common.data_types import FloatTensorType

        if self.booster is None:
            raise RankerError("the ranker is not trained")
        booster = self.booster
        if self.metrics.get("best_iteration"):
            import lightgbm as lgb

            booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=self.metrics["best_iteration"]))
        model = onnxmltools.convert_lightgbm(
            booster,
            name="patra_ranker",
            initial_types=[("features", FloatTensorType([None, len(self.features)]))],
            target_opset=15,
            zipmap=False,
        )
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(model.SerializeToString())
        return path


def _read_meta(folder: Path) -> dict[str, Any]:
    try:
        meta = json.loads((folder / META_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RankerError(f"{folder} holds no readable {META_FILE}: {exc}") from exc
    if meta.get("format") != RANKER_FORMAT:
        raise RankerError(f"{folder / META_FILE} is not a {RANKER_FORMAT} file")
    return meta


class OnnxRanker:
    """The exported ranker scored with onnxruntime (what a non-Python service does)."""

    def __init__(self, path: str | Path, features: Sequence[str] = RANKER_FEATURES) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.features = tuple(features)

    @classmethod
    def load(cls, folder: str | Path) -> OnnxRanker:
        folder = Path(folder)
        return cls(folder / ONNX_FILE, _read_meta(folder)["features"])

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != len(self.features):
            raise RankerError(f"ranker input must be [n, {len(self.features)}], got {x.shape}")
        out = self.session.run(None, {self.input: x})[0]
        return np.asarray(out, dtype=np.float64).reshape(-1)


# --- building features for (user, candidates) pairs ------------------------------------------------


@dataclass
class RankerContext:
    """What feature building needs besides the pair: profiles, history and models.

    Rows are dense profile indices 0..n-1 (the same for every array here).
    profiles: the :class:`ProfileFeatures` of each row and their ``batch`` (struct-of-arrays);
    bio: [n, d] unit bio embeddings (zero rows = none) or None;
    elo, swipes_given, likes_given, likes_received: [n] history up to the ranking time;
    likes: CSR [n, n], non-zero where row liked (or superliked) column;
    models: collaborative models by name (a key of SOURCE_MODELS) and, for each, ``model_rows``
    [n] the model's row of each profile (-1: the model does not know the profile -> NaN).
    """

    profiles: Sequence[ProfileFeatures]
    batch: CandidateBatch
    bio: np.ndarray | None
    elo: np.ndarray
    swipes_given: np.ndarray
    likes_given: np.ndarray
    likes_received: np.ndarray
    likes: Any  # scipy.sparse.csr_matrix
    models: Mapping[str, Any] = field(default_factory=dict)
    model_rows: Mapping[str, np.ndarray] = field(default_factory=dict)


def history_arrays(
    n: int, users: np.ndarray, items: np.ndarray, actions: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Any]:
    """(elo, swipes_given, likes_given, likes_received, likes CSR) from time-ordered swipes of
    dense indices: Elo replays them in order (:func:`recommender.ml.elo.rebuild_ratings`)."""
    import scipy.sparse as sp

    from recommender.ml.elo import EloConfig, rebuild_ratings

    users, items, actions = np.asarray(users, np.int64), np.asarray(items, np.int64), np.asarray(actions)
    liked = actions != "pass"
    ratings = rebuild_ratings(zip(users.tolist(), items.tolist(), actions.tolist(), strict=True))
    elo = np.full(n, EloConfig().initial, dtype=np.float64)
    if ratings:
        keys = np.fromiter(ratings.keys(), dtype=np.int64)
        elo[keys] = np.fromiter(ratings.values(), dtype=np.float64)
    likes = sp.csr_matrix((np.ones(int(liked.sum()), np.float32), (users[liked], items[liked])), shape=(n, n))
    likes.sum_duplicates()
    return (
        elo,
        np.bincount(users, minlength=n).astype(np.float64),
        np.bincount(users[liked], minlength=n).astype(np.float64),
        np.bincount(items[liked], minlength=n).astype(np.float64),
        likes,
    )


def smoothed_rate(likes: np.ndarray | float, swipes: np.ndarray | float) -> np.ndarray:
    """Share of likes among the swipes given, smoothed towards 1/3 (training and feed alike)."""
    return (np.asarray(likes, dtype=np.float64) + 1.0) / (np.asarray(swipes, dtype=np.float64) + 3.0)


def context_features(ctx: RankerContext, user: int, cands: np.ndarray) -> np.ndarray:
    """[len(cands), F] ranker features of ``user`` with each candidate (dense indices)."""
    cands = np.asarray(cands, dtype=np.int64)
    m = cands.size
    cols: dict[str, Any] = dict(pair_features(ctx.profiles[user], ctx.batch.take(cands)))
    for name, model in ctx.models.items():
        rows = ctx.model_rows.get(name)
        u_row = int(rows[user]) if rows is not None else user
        c_rows = rows[cands] if rows is not None else cands
        p_uv = np.full(m, np.nan)
        p_vu = np.full(m, np.nan)
        ok = c_rows >= 0
        if u_row >= 0 and ok.any():
            u_rep = np.full(int(ok.sum()), u_row)
            p_uv[ok] = model.like_probability(u_rep, c_rows[ok])
            p_vu[ok] = model.like_probability(c_rows[ok], u_rep)
        cols[f"p_uv_{name}"] = p_uv
        cols[f"p_vu_{name}"] = p_vu
    if ctx.bio is not None:
        has = np.abs(ctx.bio[cands]).sum(axis=1) > 0
        sim = ctx.bio[cands] @ ctx.bio[user]
        cols["bio_similarity"] = np.where(has & (np.abs(ctx.bio[user]).sum() > 0), sim, np.nan)
    given = ctx.swipes_given
    cols.update(
        elo_user=float(ctx.elo[user]),
        elo_candidate=ctx.elo[cands],
        cand_swipes_given=given[cands],
        cand_like_rate=smoothed_rate(ctx.likes_given[cands], given[cands]),
        user_swipes_given=float(given[user]),
        user_like_rate=float(smoothed_rate(ctx.likes_given[user], given[user])),
        liked_you=np.asarray(ctx.likes[cands, user].todense()).reshape(-1) > 0,
    )
    return feature_matrix(cols, m)


@dataclass
class PoolGroups:
    """Query groups built from candidate pools (:func:`pool_groups`); a group's rows are
    contiguous, groups in ``users`` order.

    x [rows, F] features; y [rows] labels; sizes [groups]; users [groups] the user of each group;
    shown [rows] whether the user swiped the candidate in the label period (the rows that tell
    P(like | shown) apart from "will be shown and liked").
    """

    x: np.ndarray
    y: np.ndarray
    sizes: np.ndarray
    users: np.ndarray
    shown: np.ndarray

    @staticmethod
    def concat(parts: Sequence[PoolGroups]) -> PoolGroups:
        """The groups of ``parts`` one after the other (``parts`` non-empty)."""
        return PoolGroups(*(np.concatenate([getattr(g, f.name) for g in parts]) for f in fields(PoolGroups)))


def pool_groups(
    ctx: RankerContext, users: Iterable[int], pools: Sequence[np.ndarray], labels: Any, swiped: Any = None
) -> PoolGroups:
    """One query group per user whose pool holds something they liked in the label period.

    ``pools[i]``: the dense indices proposed to the i-th user from what was known at the cut
    (``users`` may be a progress bar over them); ``labels``: CSR [n, n] of the period's first
    action per pair (superlike 2, like 1, else 0), or None to rank (every non-empty pool is a
    group, labels 0); ``swiped``: CSR [n, n], non-zero where the user swiped the candidate in the
    period (None: nothing shown). A pool with no like teaches LambdaMART nothing and gives no group.
    """
    xs, ys, shown, sizes, kept = [], [], [], [], []
    for u, pool in zip(users, pools, strict=True):
        pool = np.asarray(pool, dtype=np.int64)
        if pool.size == 0:
            continue
        y = np.zeros(pool.size, dtype=np.int32)
        if labels is not None:
            y = np.rint(np.asarray(labels[u, pool].todense()).reshape(-1)).astype(np.int32)  # [pool]
            if not y.any():
                continue
        xs.append(context_features(ctx, int(u), pool))
        ys.append(y)
        swiped_row = np.zeros(pool.size) if swiped is None else np.asarray(swiped[u, pool].todense()).reshape(-1)
        shown.append(swiped_row > 0)
        sizes.append(pool.size)
        kept.append(int(u))
    if not xs:
        return PoolGroups(np.zeros((0, len(RANKER_FEATURES)), np.float32), np.zeros(0, np.int32),
                          np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool))  # fmt: skip
    return PoolGroups(np.concatenate(xs), np.concatenate(ys), np.asarray(sizes, dtype=np.int64),
                      np.asarray(kept, dtype=np.int64), np.concatenate(shown))  # fmt: skip
