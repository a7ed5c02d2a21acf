"""Approximate nearest-neighbour index (HNSW, via hnswlib) over unit vectors.

* Space: ``'cosine'`` (default) normalises vectors on insert, ``'ip'`` uses them
  as given; for unit vectors both rank identically. hnswlib returns a distance
  ``1 - dot``; :meth:`AnnIndex.query` returns the similarity ``dot`` instead.
* Labels: external ids (database primary keys, int64 >= 0) are used directly as
  hnswlib labels (uint64). Negative ids are rejected.
* Upsert: ``add`` with an id already present overwrites its vector in place
  (hnswlib updates an existing label, un-deleting it if needed). We do not use
  hnswlib's ``replace_deleted`` slot reuse: mixing it with label updates can leave
  two slots with one label. Deleted slots stay in the graph until
  :meth:`AnnIndex.compact` rebuilds without them.
* Capacity grows automatically (doubling) with ``resize_index``.
* Thread safety: one lock guards every call into hnswlib, because ``set_ef`` is
  index-global state and mutations must not race queries.
* Vector reads: hnswlib's ``get_items`` costs tens of microseconds per id (a feed reads
  thousands), so the index keeps a float16 mirror of every stored (unit) vector by slot and
  :meth:`AnnIndex.get_matrix` is a numpy gather. Half precision keeps the mirror at half of
  hnswlib's own float32 copy (768 MB at 1M x 384) and moves a cosine by at most ~1e-3;
  ``AnnConfig.mirror_vectors=False`` turns it off for processes that only query.

On disk (:meth:`AnnIndex.save`) a directory holds ``index.bin`` (hnswlib native
format), ``ids.npy`` (live ids, int64, saved without pickle) and ``meta.json``
(config, counts, created_at, format version, size and sha256 of index.bin so a
corrupt file is refused before hnswlib parses it), and ``vectors.npy``, the mirror's rows in
``ids.npy`` order (float16; rebuilt from hnswlib when absent, as in indexes saved before it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import hnswlib
import numpy as np

FORMAT_VERSION = 1
SPACES: tuple[str, ...] = ("cosine", "ip")
INDEX_FILE = "index.bin"
IDS_FILE = "ids.npy"
VECTORS_FILE = "vectors.npy"
META_FILE = "meta.json"
_MIN_CAPACITY = 1024
_META_KEYS = frozenset({"format_version", "config", "live_count", "total_count", "index_bytes", "index_sha256"})


class AnnIndexLoadError(Exception):
    """A saved index is missing, incomplete or corrupt."""


class AnnIndexNotFound(AnnIndexLoadError, FileNotFoundError):
    """The index directory or one of its files does not exist."""


@dataclass(frozen=True)
class AnnConfig:
    dim: int = 384
    M: int = 16  # graph degree: higher = better recall, more memory
    ef_construction: int = 200  # build-time beam width
    ef_search: int = 64  # query-time beam width (raised to k when k is larger)
    space: str = "cosine"
    mirror_vectors: bool = True  # keep a float16 copy for fast vector reads (module docs)

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {self.space!r}")


def _as_ids(ids: Iterable[int] | np.ndarray) -> np.ndarray:
    arr = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64).reshape(-1)
    if (arr < 0).any():
        raise ValueError("ids must be >= 0 (they become hnswlib uint64 labels)")
    return arr  # (n,)


def _as_matrix(vectors: np.ndarray, dim: int) -> np.ndarray:
    mat = np.ascontiguousarray(vectors, dtype=np.float32)
    if mat.ndim == 1:
        mat = mat[None, :]
    if mat.ndim != 2 or mat.shape[1] != dim:
        raise ValueError(f"vectors must have shape (n, {dim}), got {np.shape(vectors)}")
    return mat  # (n, dim)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class AnnIndex:
    """HNSW index keyed by int64 ids; see the module docstring for semantics."""

    def __init__(
        self,
        cfg: AnnConfig,
        index: hnswlib.Index,
        live: set[int],
    ) -> None:
        self.cfg = cfg
        self._index = index
        self._live = live  # ids not deleted; hnswlib cannot list them cheaply
        self._lock = threading.RLock()
        # float16 vectors by slot (rows >= _n_slots are spare capacity)
        self._mirror = np.zeros((0, cfg.dim), dtype=np.float16)
        self._n_slots = 0
        # Arrays indexed by id, so that a feed looks up its ~1,000 candidates with one gather
        # instead of a set or dict probe per id: live or not, and mirror slot (-1: none).
        self._is_live = np.zeros(0, dtype=bool)
        self._slot_of = np.full(0, -1, dtype=np.int64)
        live_ids = np.fromiter(live, dtype=np.int64, count=len(live))
        self._grow_tables(int(live_ids.max()) if len(live_ids) else 0)
        self._is_live[live_ids] = True

    # ----------------------------------------------------------------- building

    @classmethod
    def empty(cls, cfg: AnnConfig | None = None, capacity: int = _MIN_CAPACITY) -> AnnIndex:
        cfg = cfg or AnnConfig()
        index = hnswlib.Index(space=cfg.space, dim=cfg.dim)
        # fixed seed: the same inserts build the same graph
        index.init_index(max_elements=max(capacity, 1), M=cfg.M, ef_construction=cfg.ef_construction, random_seed=100)
        index.set_ef(cfg.ef_search)
        return cls(cfg, index, set())

    @classmethod
    def build(cls, ids: Sequence[int] | np.ndarray, vectors: np.ndarray, cfg: AnnConfig | None = None) -> AnnIndex:
        cfg = cfg or AnnConfig()
        ann = cls.empty(cfg, capacity=max(len(ids), _MIN_CAPACITY))
        ann.add(ids, vectors)
        return ann

    def add(self, ids: Sequence[int] | np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace (upsert) vectors; grows capacity as needed."""
        id_arr = _as_ids(ids)
        mat = _as_matrix(vectors, self.cfg.dim)
        if len(id_arr) != len(mat):
            raise ValueError(f"{len(id_arr)} ids for {len(mat)} vectors")
        if len(np.unique(id_arr)) != len(id_arr):
            raise ValueError("duplicate ids in one add() call")
        if len(id_arr) == 0:
            return
        with self._lock:
            self._ensure_capacity(self._index.get_current_count() + len(id_arr))
            self._index.add_items(mat, id_arr.astype(np.uint64))
            self._live.update(id_arr.tolist())
            self._grow_tables(int(id_arr.max()))
            self._is_live[id_arr] = True
            if self.cfg.mirror_vectors:
                self._mirror_put(id_arr, mat)

    def _mirror_put(self, ids: np.ndarray, mat: np.ndarray) -> None:
        if self.cfg.space == "cosine":  # what hnswlib stores (and get_items returns) in this space
            norms = np.linalg.norm(mat, axis=1, keepdims=True)
            mat = mat / np.where(norms > 0, norms, 1.0)
        self._grow_tables(int(ids.max()))
        slots = self._slot_of[ids]  # (n,) -1 for ids never stored: they get the next free slots
        new = slots < 0
        slots[new] = np.arange(self._n_slots, self._n_slots + int(new.sum()))
        self._slot_of[ids[new]] = slots[new]
        self._n_slots += int(new.sum())
        if self._n_slots > len(self._mirror):
            grown = np.zeros((max(self._n_slots, 2 * len(self._mirror), _MIN_CAPACITY), self.cfg.dim), np.float16)
            grown[: len(self._mirror)] = self._mirror
            self._mirror = grown
        self._mirror[slots] = mat.astype(np.float16)

    def _ensure_capacity(self, needed: int) -> None:
        capacity = self._index.get_max_elements()
        if needed > capacity:
            self._index.resize_index(max(needed, 2 * capacity))

    def mark_deleted(self, ids: Iterable[int]) -> None:
        """Hide ids from queries; unknown or already deleted ids are ignored."""
        with self._lock:
            for i in _as_ids(ids).tolist():
                if i in self._live:
                    self._index.mark_deleted(i)
                    self._live.discard(i)
                    self._is_live[i] = False

    def compact(self) -> AnnIndex:
        """A new index holding only the live items (deleted slots dropped)."""
        with self._lock:
            ids = np.array(sorted(self._live), dtype=np.int64)
            vectors = self._exact_vectors(ids)  # full precision: compaction must not round vectors
        return AnnIndex.build(ids, vectors, self.cfg)

    def _exact_vectors(self, ids: np.ndarray) -> np.ndarray:
        if len(ids) == 0:
            return np.empty((0, self.cfg.dim), dtype=np.float32)
        return np.asarray(self._index.get_items(ids.astype(np.uint64), return_type="numpy"), dtype=np.float32)

    def _vectors(self, ids: np.ndarray) -> np.ndarray:
        """(m, d) float32 vectors of live ``ids``."""
        if not self.cfg.mirror_vectors:
            return self._exact_vectors(ids)
        return self._mirror[self._slot_of[ids]].astype(np.float32)

    def _live_mask(self, ids: np.ndarray) -> np.ndarray:
        """(n,) bool: which ``ids`` are live."""
        inside = (ids >= 0) & (ids < len(self._is_live))
        out = np.zeros(len(ids), dtype=bool)
        out[inside] = self._is_live[ids[inside]]
        return out

    def _grow_tables(self, max_id: int) -> None:
        if max_id < len(self._is_live):
            return
        size = max(max_id + 1, 2 * len(self._is_live), _MIN_CAPACITY)
        is_live, slot_of = np.zeros(size, dtype=bool), np.full(size, -1, dtype=np.int64)
        is_live[: len(self._is_live)], slot_of[: len(self._slot_of)] = self._is_live, self._slot_of
        self._is_live, self._slot_of = is_live, slot_of

    def get_matrix(self, ids: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(vectors (n, d) float32 with zero rows where absent, present (n,) bool) for ``ids`` in
        order: the feed's read of its candidates' vectors, one gather."""
        id_arr = _as_ids(ids)
        with self._lock:
            present = self._live_mask(id_arr)  # (n,)
            matrix = np.zeros((len(id_arr), self.cfg.dim), dtype=np.float32)
            if present.any():
                matrix[present] = self._vectors(id_arr[present])
        return matrix, present

    def get_vectors(self, ids: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found ids (m,), their stored vectors (m, d)) for the live ``ids``; others are skipped.

        Lets a serving process read candidate vectors from memory instead of a cache round trip.
        """
        with self._lock:
            id_arr = _as_ids(ids)
            found = id_arr[self._live_mask(id_arr)]
            return found, self._vectors(found)

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, item: int) -> bool:
        return item in self._live

    @property
    def ids(self) -> np.ndarray:
        """(n,) sorted live ids."""
        return np.array(sorted(self._live), dtype=np.int64)

    # ----------------------------------------------------------------- querying

    def query(self, vector: np.ndarray, k: int, exclude: set[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Nearest live, non-excluded ids: ``(ids (q, k') int64, sims (q, k') float32)``.

        ``k' = min(k, live items not excluded)``; rows are sorted by decreasing
        similarity. We over-fetch by the number of excluded live ids and drop them
        afterwards, which is faster than hnswlib's per-node Python filter.
        """
        queries = _as_matrix(vector, self.cfg.dim)  # (q, d)
        with self._lock:
            n_excluded = sum(1 for i in exclude if i in self._live) if exclude else 0
            k_out = max(0, min(k, len(self._live) - n_excluded))
            if k_out == 0:
                return np.empty((len(queries), 0), np.int64), np.empty((len(queries), 0), np.float32)
            k_fetch = min(len(self._live), k_out + n_excluded)
            labels, dists = self._knn(queries, k_fetch)
        return _drop_excluded(labels.astype(np.int64), 1.0 - dists, exclude, k_out)

    def _knn(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._index.set_ef(max(self.cfg.ef_search, k))
        try:
            return self._index.knn_query(queries, k=k)
        except RuntimeError:
            # many deleted nodes can cut the graph so the beam finds < k live
            # items; a beam as wide as the index always finds them
            self._index.set_ef(self._index.get_current_count())
            return self._index.knn_query(queries, k=k)

    # ----------------------------------------------------------------- persistence

    def save(self, directory: Path | str) -> None:
        """Write the index atomically: readers see the old or the new one, never half.

        Files go to a temporary sibling directory that is renamed into place. An
        existing index is first renamed aside, so for a moment ``directory`` does
        not exist (a reader gets :class:`AnnIndexNotFound` and should retry).
        """
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
        try:
            self._write_files(tmp)
            _swap_into_place(tmp, directory)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _write_files(self, tmp: Path) -> None:
        with self._lock:
            self._index.save_index(str(tmp / INDEX_FILE))
            live = self.ids
            total = self._index.get_current_count()
        np.save(tmp / IDS_FILE, live, allow_pickle=False)
        names = [INDEX_FILE, IDS_FILE, META_FILE]
        if self.cfg.mirror_vectors:
            with self._lock:
                np.save(tmp / VECTORS_FILE, self._mirror[self._slot_of[live]], allow_pickle=False)
            names.append(VECTORS_FILE)
        meta = {
            "format_version": FORMAT_VERSION,
            "config": asdict(self.cfg),
            "live_count": len(live),
            "total_count": int(total),
            "created_at": datetime.now(UTC).isoformat(),
            "index_bytes": (tmp / INDEX_FILE).stat().st_size,
            "index_sha256": _sha256(tmp / INDEX_FILE),
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        for name in names:
            _fsync(tmp / name)

    @classmethod
    def load(cls, directory: Path | str) -> AnnIndex:
        """Read an index written by :meth:`save`; raise AnnIndexLoadError if unusable."""
        directory = Path(directory)
        meta = _read_meta(directory)
        try:
            cfg = AnnConfig(**meta["config"])
        except (TypeError, ValueError) as exc:
            raise AnnIndexLoadError(f"{directory / META_FILE} has an invalid config: {exc}") from exc
        live = _read_ids(directory / IDS_FILE, meta["live_count"])
        index_path = directory / INDEX_FILE
        _check_index_file(index_path, meta)
        index = hnswlib.Index(space=cfg.space, dim=cfg.dim)
        try:
            index.load_index(str(index_path))
        except RuntimeError as exc:
            raise AnnIndexLoadError(f"hnswlib could not read {index_path}: {exc}") from exc
        if index.get_current_count() != meta["total_count"]:
            raise AnnIndexLoadError(f"{index_path} holds {index.get_current_count()} items, meta.json says otherwise")
        index.set_ef(cfg.ef_search)
        ann = cls(cfg, index, set(live.tolist()))
        if cfg.mirror_vectors:
            ann._load_mirror(directory / VECTORS_FILE, live)
        return ann

    def _load_mirror(self, path: Path, live: np.ndarray) -> None:
        """The saved mirror, or (an index saved without one) a copy read from hnswlib."""
        mirror: np.ndarray | None = None
        if path.exists():
            try:
                mirror = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise AnnIndexLoadError(f"{path} is unreadable: {exc}") from exc
            if mirror.shape != (len(live), self.cfg.dim) or mirror.dtype != np.float16:
                raise AnnIndexLoadError(f"{path} has shape {mirror.shape} {mirror.dtype}, expected ({len(live)}, "
                                        f"{self.cfg.dim}) float16")  # fmt: skip
        if mirror is None:
            mirror = np.zeros((len(live), self.cfg.dim), dtype=np.float16)
            for start in range(0, len(live), 10_000):
                mirror[start : start + 10_000] = self._exact_vectors(live[start : start + 10_000])
        self._mirror = mirror
        self._slot_of[live] = np.arange(len(live))
        self._n_slots = len(live)


def _drop_excluded(
    labels: np.ndarray, sims: np.ndarray, exclude: set[int] | None, k_out: int
) -> tuple[np.ndarray, np.ndarray]:
    # labels, sims: (q, k_fetch); hnswlib sorts each row by increasing distance
    if exclude:
        keep = ~np.isin(labels, np.fromiter(exclude, dtype=np.int64, count=len(exclude)))  # (q, k_fetch)
        # stable argsort moves kept columns first, in their original order
        order = np.argsort(~keep, axis=1, kind="stable")[:, :k_out]  # (q, k_out)
        labels = np.take_along_axis(labels, order, axis=1)
        sims = np.take_along_axis(sims, order, axis=1)
    return labels[:, :k_out].astype(np.int64), sims[:, :k_out].astype(np.float32)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap_into_place(tmp: Path, directory: Path) -> None:
    if not directory.exists():
        os.replace(tmp, directory)  # atomic on POSIX
        return
    # rename(2) cannot replace a non-empty directory: move the old one aside first
    old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
    os.replace(directory, old / "index")
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def _read_meta(directory: Path) -> dict:
    if not directory.is_dir():
        raise AnnIndexNotFound(f"no ANN index directory at {directory}")
    for name in (INDEX_FILE, IDS_FILE, META_FILE):
        if not (directory / name).is_file():
            raise AnnIndexNotFound(f"ANN index at {directory} is incomplete: {name} is missing")
    try:
        meta = json.loads((directory / META_FILE).read_text())
        missing = _META_KEYS - meta.keys()
    except (ValueError, AttributeError) as exc:
        raise AnnIndexLoadError(f"{directory / META_FILE} is not valid JSON metadata: {exc}") from exc
    if missing:
        raise AnnIndexLoadError(f"{directory / META_FILE} lacks {sorted(missing)}")
    version = meta["format_version"]
    if version != FORMAT_VERSION:
        raise AnnIndexLoadError(f"ANN index format {version} is not supported (expected {FORMAT_VERSION})")
    return meta


def _read_ids(path: Path, expected: int) -> np.ndarray:
    try:
        ids = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise AnnIndexLoadError(f"{path} is not a valid .npy id array: {exc}") from exc
    if ids.dtype != np.int64 or ids.ndim != 1 or len(ids) != expected:
        raise AnnIndexLoadError(f"{path} should hold {expected} int64 ids, found {ids.dtype} {ids.shape}")
    return ids


def _check_index_file(path: Path, meta: dict) -> None:
    # hnswlib trusts the bytes it reads; a checksum keeps corrupt files out of C++
    if path.stat().st_size != meta["index_bytes"] or _sha256(path) != meta["index_sha256"]:
        raise AnnIndexLoadError(f"{path} does not match the checksum in meta.json: the file is corrupt")


def exact_search(vectors: np.ndarray, ids: Sequence[int] | np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    """(q, min(k, n)) ids of the highest dot products, brute force (ground truth)."""
    vecs = np.asarray(vectors, dtype=np.float32)  # (n, d)
    queries = np.atleast_2d(np.asarray(query, dtype=np.float32))  # (q, d)
    id_arr = np.asarray(ids, dtype=np.int64)  # (n,)
    k = min(k, len(id_arr))
    if k <= 0:
        return np.empty((len(queries), 0), dtype=np.int64)
    sims = queries @ vecs.T  # (q, n)
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < len(id_arr) else np.argsort(-sims, axis=1)
    order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
    return id_arr[np.take_along_axis(top, order, axis=1)]


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Share of the exact top-k ids found in the approximate top-k, averaged over queries."""
    approx = np.atleast_2d(approx_ids)
    exact = np.atleast_2d(exact_ids)
    if exact.size == 0:
        return 1.0
    hits = sum(len(np.intersect1d(a, e)) for a, e in zip(approx, exact, strict=True))
    return hits / exact.size
