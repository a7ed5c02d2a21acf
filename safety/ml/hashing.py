"""Lexical features by the hashing trick: words, word bigrams and character 3-4-grams.

Sentence embeddings smooth over the exact word, and on abuse the exact word (a slur, a vulgar
term, an obfuscated spelling) is most of the signal; the heads therefore see hashed n-grams next
to the embedding. Hashing needs no vocabulary file and is stable across processes (crc32, never
Python's salted ``hash``), so a checkpoint is just a weight vector.
"""

from __future__ import annotations

import itertools
import re
import zlib
from collections import Counter

import numpy as np
import scipy.sparse as sp

N_BUCKETS = 1 << 18
_WORD = re.compile(r"[a-z0-9']+|[$£€!?]")
# Twitter handles and links carry no meaning for the label and would only memorise users.
_NOISE = re.compile(r"@\w+|https?://\S+|&amp;|&lt;|&gt;|&#\d+;")


def tokens(text: str) -> list[str]:
    return _WORD.findall(_NOISE.sub(" ", text.lower()))


def ngrams(text: str) -> list[str]:
    words = tokens(text)
    grams = [f"w:{w}" for w in words]
    grams += [f"b:{a} {b}" for a, b in itertools.pairwise(words)]
    for w in words:
        padded = f"<{w}>"
        for n in (3, 4):
            grams += [f"c:{padded[i : i + n]}" for i in range(len(padded) - n + 1)]
    return grams


def bucket(gram: str) -> int:
    return zlib.crc32(gram.encode("utf-8")) & (N_BUCKETS - 1)


def hashed_matrix(texts: list[str]) -> sp.csr_matrix:
    """(n, N_BUCKETS) sublinear term frequencies, each row L2-normalised (like TF-IDF's norm)."""
    indptr = [0]
    indices: list[int] = []
    data: list[float] = []
    for text in texts:
        counts = Counter(bucket(g) for g in ngrams(text))
        if counts:
            cols = np.fromiter(counts.keys(), dtype=np.int64)
            vals = 1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64))
            vals /= np.linalg.norm(vals)
            indices.extend(cols.tolist())
            data.extend(vals.tolist())
        indptr.append(len(indices))
    return sp.csr_matrix(
        (np.asarray(data, dtype=np.float32), np.asarray(indices, dtype=np.int64), np.asarray(indptr)),
        shape=(len(texts), N_BUCKETS),
    )
