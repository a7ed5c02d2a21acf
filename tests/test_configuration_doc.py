"""docs/configuration.md documents every variable patra/settings.py reads from the environment."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _env_names(source: str) -> set[str]:
    """The first argument of every ``env.<type>(...)`` call; an f-string's placeholders become
    ``<LABEL>`` (``SAFETY_REVIEW_{label.upper()}`` -> ``SAFETY_REVIEW_<LABEL>``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args):
            continue
        if not (isinstance(node.func.value, ast.Name) and node.func.value.id == "env"):
            continue
        first = node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            names.add(first.value)
        elif isinstance(first, ast.JoinedStr):
            names.add("".join(v.value if isinstance(v, ast.Constant) else "<LABEL>" for v in first.values))
    return names


def test_every_environment_variable_is_documented() -> None:
    names = _env_names((ROOT / "patra" / "settings.py").read_text())
    assert len(names) > 50  # the parse found the settings' reads
    doc = (ROOT / "docs" / "configuration.md").read_text()
    missing = sorted(name for name in names if f"`{name}`" not in doc)
    assert not missing, f"document {missing} in docs/configuration.md"
