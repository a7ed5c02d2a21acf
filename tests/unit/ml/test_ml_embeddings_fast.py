"""Tests of the ONNX backends of recommender.ml.embeddings, against our fp32 torch encoder.

Real MiniLM weights; the texts are 50 real bios of the vendored OkCupid demo sample plus edge
cases. The ONNX files are built once per test session into a temporary folder (a few seconds).
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest

from recommender.ml.embeddings import BACKENDS, BioEncoder, get_encoder, onnx_model_file, resolve_model_path
from recommender.simulation import load_sample

pytestmark = pytest.mark.slow  # loads the real MiniLM model and exports it to ONNX

LONG_BIO = " ".join(
    f"Paragraph {i}: hiking, ramen from scratch, indie films and arguing about books." for i in range(60)
)


def demo_bios(n: int = 50) -> list[str]:
    bios = [" ".join(row.essay0.split()) for row in load_sample() if row.essay0]
    return list(dict.fromkeys(bios))[:n]


BIOS = demo_bios()


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def fp32() -> BioEncoder:
    return BioEncoder(device="cpu", batch_size=16)


@pytest.fixture(scope="module")
def fp32_vectors(fp32: BioEncoder) -> np.ndarray:
    return fp32.encode(BIOS)  # (50, 384)


@pytest.fixture(scope="module", params=["onnx", "onnx-int8"])
def fast(request: pytest.FixtureRequest, onnx_dir: Path) -> BioEncoder:
    return BioEncoder(device="cpu", batch_size=16, backend=request.param, artifact_dir=onnx_dir, threads=2)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_the_sample_gives_50_real_bios() -> None:
    assert len(BIOS) == 50
    assert all(len(b) > 10 for b in BIOS)


def test_close_to_fp32(fast: BioEncoder, fp32_vectors: np.ndarray) -> None:
    vecs = fast.encode(BIOS)
    cos = cosines(vecs, fp32_vectors)
    print(f"\n{fast.backend}: cosine to fp32 over {len(BIOS)} bios min {cos.min():.5f} mean {cos.mean():.5f}")
    assert cos.min() >= 0.99, BIOS[int(np.argmin(cos))]
    if fast.backend == "onnx":  # the same fp32 weights: the same vectors up to rounding
        assert cos.min() >= 0.9999


def test_shapes_dtype_and_norms(fast: BioEncoder) -> None:
    vecs = fast.encode(BIOS[:5])
    assert vecs.shape == (5, 384)
    assert vecs.dtype == np.float32
    assert fast.dim == 384
    assert fast.device == "cpu"
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert fast.encode([]).shape == (0, 384)


def test_deterministic_and_independent_of_batching(fast: BioEncoder) -> None:
    texts = BIOS[:20]
    first = fast.encode(texts)
    np.testing.assert_array_equal(fast.encode(texts), first)
    # Other batch compositions and padding: int8 activations are quantised with one scale per
    # batch, so a text's vector depends slightly on its batch mates (fp32: rounding only).
    floor = 0.99 if fast.backend == "onnx-int8" else 0.9999
    one_by_one = np.stack([fast.encode([t])[0] for t in texts])
    assert cosines(one_by_one, first).min() >= floor
    reversed_vecs = fast.encode(texts[::-1])[::-1]
    assert cosines(reversed_vecs, first).min() >= floor


def test_empty_text(fast: BioEncoder, fp32: BioEncoder) -> None:
    vecs = fast.encode(["", "hello"])
    assert np.isfinite(vecs).all()
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert cosines(vecs[:1], fp32.encode([""]))[0] >= 0.99


def test_long_text_is_truncated_at_256_tokens(fast: BioEncoder, fp32: BioEncoder) -> None:
    tokens = fast._tokenizer(LONG_BIO)["input_ids"]
    assert len(tokens) > 400
    # everything after the first 256 tokens is ignored
    head = fast._tokenizer.decode(tokens[1:200])
    vecs = fast.encode([LONG_BIO, LONG_BIO + " Tail words that come far beyond the limit."])
    np.testing.assert_allclose(vecs[0], vecs[1], atol=1e-6)
    assert cosines(vecs[:1], fp32.encode([LONG_BIO]))[0] >= 0.99
    assert cosines(fast.encode([head]), vecs[:1])[0] < 0.9999  # the truncation is at 256, not earlier


def test_onnx_file_is_cached_and_reused(onnx_dir: Path) -> None:
    model_dir = resolve_model_path("all-MiniLM-L6-v2")
    first = onnx_model_file(model_dir, onnx_dir, quantize=True)
    stamp = first.stat().st_mtime_ns
    again = onnx_model_file(model_dir, onnx_dir, quantize=True)
    assert again == first and again.stat().st_mtime_ns == stamp  # not rebuilt
    assert first.parent == onnx_dir
    assert not [p for p in onnx_dir.iterdir() if p.name.startswith(".onnx-build-")]  # no leftovers
    fp32_file = onnx_model_file(model_dir, onnx_dir, quantize=False)
    assert fp32_file != first
    assert first.stat().st_size < fp32_file.stat().st_size  # int8 weights


def test_backend_validation(onnx_dir: Path) -> None:
    assert BACKENDS == ("torch", "onnx", "onnx-int8")
    with pytest.raises(ValueError, match="unknown embedding backend"):
        BioEncoder(backend="tensorrt")
    with pytest.raises(ValueError, match="needs artifact_dir"):
        BioEncoder(backend="onnx-int8")
    with pytest.raises(ValueError, match="CPU only"):
        BioEncoder(device="cuda", backend="onnx", artifact_dir=onnx_dir)


def test_get_encoder_caches_per_backend(onnx_dir: Path) -> None:
    a = get_encoder("all-MiniLM-L6-v2", "cpu", backend="onnx-int8", artifact_dir=onnx_dir)
    b = get_encoder("sentence-transformers/all-MiniLM-L6-v2", "auto", backend="onnx-int8", artifact_dir=onnx_dir)
    assert a is b
    assert a.backend == "onnx-int8"
    assert get_encoder("all-MiniLM-L6-v2", "cpu").backend == "torch"
