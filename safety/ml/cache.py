"""On-disk cache of the public sets' embeddings: 30k texts take minutes on 2 CPU cores, a
retrain with the cache takes seconds. Plain ``.npy`` (loaded with allow_pickle=False)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

CHUNK = 1024
Encode = Callable[..., np.ndarray]  # encode(texts, progress=callable) -> (n, dim)


def cache_key(model_name: str, texts: Sequence[str]) -> str:
    digest = hashlib.sha256(model_name.encode())
    for t in texts:
        digest.update(b"\x00" + t.encode("utf-8"))
    return digest.hexdigest()[:24]


def embed_cached(
    *, name: str, texts: Sequence[str], model_name: str, encode: Encode, cache_dir: Path, progress: bool = True
) -> np.ndarray:
    """(n, dim) float32 embeddings of ``texts``, read from ``cache_dir`` when the same model
    already embedded exactly these texts, else computed (with a progress bar) and stored."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{name}-{cache_key(model_name, texts)}.npy"
    if path.exists():
        return np.load(path, allow_pickle=False)
    # Cached in chunks: an interrupted run keeps what it finished, and a subset that shares
    # chunks with an earlier run reuses them.
    parts: list[np.ndarray] = []
    todo = [
        (i, cache_dir / f"{name}-chunk-{cache_key(model_name, texts[i : i + CHUNK])}.npy")
        for i in range(0, len(texts), CHUNK)
    ]
    missing = sum(min(CHUNK, len(texts) - i) for i, p in todo if not p.exists())
    bar = tqdm(total=missing, desc=f"embedding {name}", unit="text", disable=not progress or not missing)
    for i, chunk_path in todo:
        if chunk_path.exists():
            parts.append(np.load(chunk_path, allow_pickle=False))
            continue
        base = bar.n

        def tick(done: int, base: int = base) -> None:
            bar.update(base + done - bar.n)

        vectors = encode(list(texts[i : i + CHUNK]), progress=tick).astype(np.float32)
        tmp = chunk_path.with_suffix(".tmp.npy")
        np.save(tmp, vectors, allow_pickle=False)
        tmp.replace(chunk_path)  # atomic: a crash never leaves a truncated cache file
        parts.append(vectors)
    bar.close()
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)
