"""The variables ``patra/settings.py`` reads from the environment, found by parsing it: the first
argument of every ``env.<type>(...)`` call. Shared by the tests that hold documents and manifests
to the settings (tests/test_configuration_doc.py, tests/test_kubernetes.py)."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

SETTINGS = Path(__file__).resolve().parent.parent / "patra" / "settings.py"


def settings_env_names(*, literal: Callable[[str], str], placeholder: str) -> set[str]:
    """Each variable's name, its literal parts passed through ``literal`` and each f-string
    placeholder (``SAFETY_REVIEW_{label.upper()}``) replaced by ``placeholder``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(SETTINGS.read_text())):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args):
            continue
        if not (isinstance(node.func.value, ast.Name) and node.func.value.id == "env"):
            continue
        first = node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            names.add(literal(first.value))
        elif isinstance(first, ast.JoinedStr):
            names.add(
                "".join(literal(str(v.value)) if isinstance(v, ast.Constant) else placeholder for v in first.values)
            )
    return names
