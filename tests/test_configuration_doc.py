"""docs/configuration.md documents every variable patra/settings.py reads from the environment."""

from __future__ import annotations

from pathlib import Path

from tests.settings_env import settings_env_names

ROOT = Path(__file__).resolve().parent.parent


def test_every_environment_variable_is_documented() -> None:
    # an f-string's placeholders become <LABEL>: SAFETY_REVIEW_{label.upper()} -> SAFETY_REVIEW_<LABEL>
    names = settings_env_names(literal=str, placeholder="<LABEL>")
    assert len(names) > 50  # the parse found the settings' reads
    doc = (ROOT / "docs" / "configuration.md").read_text()
    missing = sorted(name for name in names if f"`{name}`" not in doc)
    assert not missing, f"document {missing} in docs/configuration.md"
