"""The tenant's active collaborative model, served to the feed as a signal and a candidate source.

A ``collaborative`` version (``python manage.py train``, the ``train_collaborative`` job) is a
checkpoint over *pseudonymous* profile ids: the training data are exports whose ids are keyed
hashes (:func:`recommender.pseudonyms.export_hash`). Serving maps the tenant's profile
primary keys to model rows by hashing their external ids: once for every profile when a version
loads (in the registry's loader thread; with SQLite, on the first request), then, during
requests, only for profiles created since (one query for the new primary keys; a profile the
model never saw maps to -1 and is cold).

Signals: :meth:`CollaborativeServing.pair_logits` gives calibrated log-odds of P(u likes v) for
aligned pairs, and so, with the pairs swapped, of P(v likes u). Models with a ``pair_logits``
method of their own (the logistic model ``lmf``) answer for cold profiles too (average
selectivity and appeal); for the others a pair with a swiper the model does not know is
unavailable (NaN), because their cold fallback (popularity) is not a probability. ALS fitted with
side features knows every profile it had attributes for, swipes or not.

Candidates: :meth:`CollaborativeServing.reciprocal_candidates` fuses both directions for the
user against every column (exact; the catalogue is at most ``CF_EXACT_MAX_ITEMS`` columns,
beyond which this source is skipped and the other sources fill the feed). A user the model
never saw still gets candidates when the model answers for cold profiles (``lmf``).

Learned fusion: a version trained with ``train`` carries ``fusion.json`` beside its checkpoint
(``recommender.ml.learned_fusion``): the tenant's learned P(a likes b) over the feed's signals,
which the feed and the ML API then use for both directions instead of the hand-set weights.
A version without one (trained before, or on too few held-out swipes) leaves the weights in
charge.

Serving follows the registry's active version through :class:`registry.serving.ActiveModel`
(hot swap, the old version kept if a new one fails to load), per tenant and process.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from django.db import DatabaseError, connection

from recommender.ml.fusion import fuse
from recommender.ml.learned_fusion import LearnedFusion
from recommender.models import Profile
from recommender.pseudonyms import export_hash
from registry.models import ModelType, ModelVersion
from registry.serving import TenantModels

if TYPE_CHECKING:
    from recommender.ml.collab import IdMap, Recommender

logger = logging.getLogger(__name__)

CF_EXACT_MAX_ITEMS = 200_000  # above this many columns the exact top-k would cost too much per request
CHECKPOINT_NAME = "model.pt"
FUSION_NAME = "fusion.json"


@dataclass
class CollaborativeServing:
    """A loaded collaborative version and its profile pk -> model row map."""

    version: str
    tenant_id: int
    model: Recommender
    ids: IdMap
    # model row of each profile pk (index = pk): -1 the model never saw it, -2 not looked up yet;
    # an array rather than a dict so that a feed maps its ~1,000 candidates in one gather
    row_of_pk: np.ndarray = field(default_factory=lambda: np.full(0, -2, dtype=np.int64))
    # (columns,) profile pk of each model column, -1: not mapped; replaced, never changed in
    # place, so that a feed's pre-filter can keep its lookup of this array (StoreSnapshot.memo)
    pk_of_row: np.ndarray = field(init=False)
    complete: bool = False  # every profile of the tenant has been mapped
    lock: threading.Lock = field(default_factory=threading.Lock)
    fusion: LearnedFusion | None = None  # the version's learned fusion (module docs), if it has one

    def __post_init__(self) -> None:
        self.pk_of_row = np.full(len(self.ids), -1, dtype=np.int64)

    @property
    def model_name(self) -> str:
        return self.model.name

    def _map(self, rows: list[tuple[int, Any]]) -> None:
        if not rows:
            return
        pks = np.fromiter((pk for pk, _ in rows), dtype=np.int64, count=len(rows))
        found = self.ids.index(np.asarray([export_hash(ext) for _, ext in rows]), missing=-1)
        with self.lock:
            self._grow(int(pks.max()))
            self.row_of_pk[pks] = found
            known = found >= 0
            if known.any():
                pk_of_row = self.pk_of_row.copy()
                pk_of_row[found[known]] = pks[known]
                self.pk_of_row = pk_of_row

    def map_tenant(self) -> None:
        """Map every profile of the tenant (called once, when the version loads)."""
        rows = list(Profile.objects.filter(tenant_id=self.tenant_id).values_list("pk", "external_id").iterator())
        self._map(rows)
        self.complete = True

    def _grow(self, max_pk: int) -> None:
        if max_pk >= len(self.row_of_pk):  # copy on grow: readers keep a consistent array
            grown = np.full(max(max_pk + 1, 2 * len(self.row_of_pk)), -2, dtype=np.int64)
            grown[: len(self.row_of_pk)] = self.row_of_pk
            self.row_of_pk = grown

    def rows(self, pks: np.ndarray) -> np.ndarray:
        """(n,) model rows of profile pks, -1 where the model never saw the profile."""
        pks = np.asarray(pks, dtype=np.int64)
        table = self.row_of_pk
        out = np.full(len(pks), -2, dtype=np.int64)
        inside = (pks >= 0) & (pks < len(table))
        out[inside] = table[pks[inside]]
        unknown = out == -2
        if unknown.any():
            # Profiles created since the version loaded: one query, then remembered.
            new = pks[unknown]
            try:
                self._map(list(Profile.objects.filter(pk__in=new.tolist()).values_list("pk", "external_id")))
            except DatabaseError as exc:
                logger.warning("collaborative: cannot map new profiles: %s", exc)
            with self.lock:
                self._grow(int(new.max()))
                looked_up = self.row_of_pk[new]
                self.row_of_pk[new] = np.where(looked_up == -2, -1, looked_up)  # not in the tenant: unseen
            out[unknown] = self.row_of_pk[new]
        return out

    def pair_logits(self, user_rows: np.ndarray, item_rows: np.ndarray) -> np.ndarray:
        """(n,) calibrated log-odds that ``user_rows[k]`` likes ``item_rows[k]``; NaN where the
        model cannot say (see the module docs)."""
        return self.model.pair_log_odds(user_rows, item_rows)

    def reciprocal_candidates(
        self,
        user_pk: int,
        k: int,
        fusion_method: str = "harmonic",
        eligible: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> np.ndarray:
        """Profile pks of the ``k`` columns with the best fused P(u likes v) and P(v likes u) by
        the model, best first (empty when the model cannot say for this user).

        Exact over the catalogue: two (n, f) products. A feed ranks only the candidates its
        sources propose, so this source is where the model's view of the *other* side (who is
        likely to like the user back) reaches the feed; proposals by one-way taste or by
        similarity rarely contain the pairs that match. ``eligible`` maps the columns' profile
        pks ([n], -1 where unmapped) to a [n] bool mask of those worth scoring (the feed's cheap
        pre-filter): the model then scores only those, and the ``k`` are all plausible.
        """
        if not self.complete:
            self.map_tenant()  # the loader thread could not read the profiles (see _load_version)
        n = self.model.n_items
        if n == 0 or n > CF_EXACT_MAX_ITEMS or k <= 0:
            return np.empty(0, dtype=np.int64)
        row = int(self.rows(np.asarray([user_pk], dtype=np.int64))[0])
        cols = np.arange(n, dtype=np.int64)
        if eligible is not None:
            pk_of_row = self.pk_of_row  # the same array on every call while the map is unchanged
            cols = cols[eligible(pk_of_row)[:n] & (cols != row)]
        against_all = getattr(self.model, "logits_for_user", None)
        if against_all is not None:
            uv, vu = against_all(row, cols if eligible is not None else None)  # two matrix-vector products
        else:
            user = np.full(len(cols), row, dtype=np.int64)
            uv, vu = self.pair_logits(user, cols), self.pair_logits(cols, user)
        score = fuse(_sigmoid(uv), _sigmoid(vu), fusion_method)  # (len(cols),)
        score[np.isnan(score)] = -np.inf
        score[cols == row] = -np.inf  # never the user themself
        k = min(k, int(np.isfinite(score).sum()))
        if k == 0:
            return np.empty(0, dtype=np.int64)
        top = np.argpartition(-score, k - 1)[:k]
        top = top[np.argsort(-score[top], kind="stable")]
        pks = self.pk_of_row[cols[top]]
        return pks[pks >= 0]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))  # NaN stays NaN


def _load_version(version: ModelVersion, path: Path) -> CollaborativeServing:
    # The models are torch modules: torch loads with the first version, not when the feed (and
    # with it every process's URLconf) imports this module.
    from recommender.ml.collab import IdMap, load_recommender

    checkpoint = path / CHECKPOINT_NAME if path.is_dir() else path
    model = load_recommender(checkpoint)
    extra: dict[str, Any] = getattr(model, "extra", {}) or {}
    if "ids" not in extra:
        raise ValueError(f"{version.label}: the checkpoint has no id map")
    serving = CollaborativeServing(
        version=version.label,
        tenant_id=version.tenant_id,
        model=model,
        ids=IdMap(np.asarray(extra["ids"])),
        fusion=_load_fusion(checkpoint.parent / FUSION_NAME),
    )
    if connection.vendor == "sqlite":
        # SQLite (the embedded mode) locks tables across threads: the first request maps the
        # tenant instead, which at embedded sizes costs milliseconds.
        return serving
    try:
        serving.map_tenant()
    except DatabaseError as exc:
        logger.warning("collaborative %s: mapping profiles at load failed: %s", version.label, exc)
    return serving


def _load_fusion(path: Path) -> LearnedFusion | None:
    if not path.exists():
        return None
    return LearnedFusion.from_dict(json.loads(path.read_text()))


FIRST_LOAD_WAIT_SECONDS = 30.0
_active: TenantModels[CollaborativeServing] = TenantModels(
    ModelType.COLLABORATIVE, _load_version, first_load_seconds=FIRST_LOAD_WAIT_SECONDS
)


def serving_collaborative(tenant_id: int) -> CollaborativeServing | None:
    """The tenant's loaded active collaborative version, or None (none active, or still loading).

    The first call of a process for a tenant waits for the first load (up to
    ``FIRST_LOAD_WAIT_SECONDS``), as the serving index does, so a fresh server or a one-shot
    command (``recommend``) does not answer its first feeds without the model; later calls
    never wait, and a new version is swapped in the background."""
    got = _active.serving(tenant_id)
    return got[1] if got is not None else None


def collaborative_wait(tenant_id: int, timeout: float = 60.0) -> CollaborativeServing | None:
    """Load the active version now and wait for it (start-up warm-up, commands, benchmarks)."""
    _active.holder(tenant_id).wait(timeout)
    return serving_collaborative(tenant_id)


def collaborative_reset_for_tests() -> None:
    _active.reset()
