"""recommender.ml must stay framework-free: no Django (or DRF) imports anywhere."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import recommender.ml

ML_DIR = Path(recommender.ml.__file__).parent
FORBIDDEN = ("django", "rest_framework", "celery")


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", sorted(ML_DIR.glob("*.py")), ids=lambda p: p.name)
def test_no_framework_imports(path: Path) -> None:
    bad = imported_roots(path) & set(FORBIDDEN)
    assert not bad, f"{path.name} imports {sorted(bad)}"
