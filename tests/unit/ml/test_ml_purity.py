"""The framework-free ML code must stay framework-free: no Django, DRF or Celery anywhere under
``recommender/ml/`` and ``safety/ml/`` (sub-packages such as ``ml/collab`` included), and no
project module outside them but the plain vocabulary, which would bring Django in indirectly.
(``lint-imports`` checks the same transitively; this test says which file.)"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import recommender.ml
import safety.ml

ML_DIRS = (Path(recommender.ml.__file__).parent, Path(safety.ml.__file__).parent)
FORBIDDEN = ("django", "rest_framework", "celery")
PROJECT = ("recommender", "safety", "registry", "accounts", "core", "patra")
ALLOWED_PROJECT_MODULES = ("recommender.ml", "safety.ml", "recommender.vocabulary")


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


ML_FILES = sorted(path for folder in ML_DIRS for path in folder.rglob("*.py"))


def test_every_ml_file_is_checked() -> None:
    assert any(p.parent.name == "collab" for p in ML_FILES) and any("safety" in p.parts for p in ML_FILES)


@pytest.mark.parametrize("path", ML_FILES, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}/{p.name}")
def test_no_framework_imports(path: Path) -> None:
    modules = imported_modules(path)
    bad = {m.split(".")[0] for m in modules} & set(FORBIDDEN)
    assert not bad, f"{path} imports {sorted(bad)}"
    outside = {m for m in modules if m.split(".")[0] in PROJECT and not m.startswith(ALLOWED_PROJECT_MODULES)}
    assert not outside, f"{path} imports project modules outside the ML packages: {sorted(outside)}"
