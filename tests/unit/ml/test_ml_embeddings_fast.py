"""Tests of the fast backends of recommender.ml.embeddings (ONNX, bf16), against our fp32 torch encoder.

Real MiniLM weights; the texts are 50 real bios of the vendored OkCupid demo sample plus edge
cases. The ONNX files are built once per test session into a temporary folder (a few seconds).
The ``torch-bf16`` cases are skipped on a CPU without native bf16 (AMX or AVX512-BF16); its
refusal there, the setting and the system check are tested everywhere (the CPU probe is faked).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest
import torch
from django.core.checks import run_checks
from django.test import override_settings

import recommender.ml.embeddings as emb
from recommender import checks
from recommender.ml.embeddings import (
    BACKENDS,
    BioEncoder,
    bf16_supported,
    get_encoder,
    onnx_model_file,
    resolve_model_path,
)
from recommender.simulation import load_sample

pytestmark = pytest.mark.slow  # loads the real MiniLM model and exports it to ONNX

LONG_BIO = " ".join(
    f"Paragraph {i}: hiking, ramen from scratch, indie films and arguing about books." for i in range(60)
)


def demo_bios(n: int = 50) -> list[str]:
    bios = [" ".join(row.essay0.split()) for row in load_sample() if row.essay0]
    return list(dict.fromkeys(bios))[:n]


BIOS = demo_bios()
ROOT = Path(__file__).resolve().parents[3]
NO_BF16 = "this CPU has neither AMX nor AVX512-BF16: the torch-bf16 backend is refused here"


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def fp32() -> BioEncoder:
    return BioEncoder(device="cpu", batch_size=16)


@pytest.fixture(scope="module")
def fp32_vectors(fp32: BioEncoder) -> np.ndarray:
    return fp32.encode(BIOS)  # (50, 384)


@pytest.fixture(scope="module", params=["onnx", "onnx-int8", "torch-bf16"])
def fast(request: pytest.FixtureRequest, onnx_dir: Path) -> BioEncoder:
    if request.param == "torch-bf16" and not bf16_supported("cpu"):
        pytest.skip(NO_BF16)
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
    if fast.backend == "torch-bf16":  # bf16 rounding only: within the feed's 0.999 bar
        assert cos.min() >= 0.999, BIOS[int(np.argmin(cos))]


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
    floor = {"onnx-int8": 0.99, "torch-bf16": 0.999}.get(fast.backend, 0.9999)
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


def test_bf16_really_runs_in_bf16() -> None:
    if not bf16_supported("cpu"):
        pytest.skip(NO_BF16)
    enc = BioEncoder(device="cpu", backend="torch-bf16")
    assert enc._model.dtype == torch.bfloat16  # not fp32 under another name
    assert enc.device == "cpu"
    assert BioEncoder(device="cpu")._model.dtype == torch.float32  # the default backend is untouched


def test_bf16_is_refused_without_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(emb, "_cpu_has_bf16", lambda: False)
    assert not bf16_supported("cpu")
    with pytest.raises(ValueError, match="AMX or AVX512-BF16"):
        BioEncoder(device="cpu", backend="torch-bf16")
    assert not bf16_supported("mps")  # not measured, not offered
    monkeypatch.setattr(emb, "_cpu_has_bf16", lambda: True)
    assert bf16_supported("cpu")


def ml_check_ids(**overrides: object) -> list[str]:
    with override_settings(**overrides):
        return [m.id for m in run_checks(tags=[checks.TAG])]


def test_system_check_rejects_bf16_on_a_cpu_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(emb, "_cpu_has_bf16", lambda: False)
    with override_settings(EMBEDDING_BACKEND="torch-bf16", EMBEDDING_DEVICE="cpu"):
        (message,) = [m for m in run_checks(tags=[checks.TAG]) if m.id == "patra.E019"]
    assert "torch-bf16" in message.msg and "AMX" in message.msg
    assert "EMBEDDING_BACKEND=torch" in message.hint
    assert ml_check_ids(EMBEDDING_BACKEND="torch", EMBEDDING_DEVICE="cpu") == []  # fp32 runs anywhere
    monkeypatch.setattr(emb, "_cpu_has_bf16", lambda: True)
    assert ml_check_ids(EMBEDDING_BACKEND="torch-bf16", EMBEDDING_DEVICE="cpu") == []
    assert ml_check_ids(EMBEDDING_BACKEND="torch-bf16", EMBEDDING_DEVICE="auto", ML_ENABLED=False) == ["patra.W002"]


def django_setup(backend: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "patra.settings", "EMBEDDING_BACKEND": backend},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_setting_accepts_torch_bf16_and_rejects_unknown_backends() -> None:
    ok = django_setup("torch-bf16")
    assert ok.returncode == 0, ok.stderr
    bad = django_setup("bf16")
    assert bad.returncode != 0
    assert "ImproperlyConfigured" in bad.stderr and "torch-bf16" in bad.stderr


def test_backend_validation(onnx_dir: Path) -> None:
    assert BACKENDS == ("torch", "torch-bf16", "onnx", "onnx-int8")
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
