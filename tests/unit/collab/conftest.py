"""Fixtures of the collaborative-filtering unit tests (no Django needed: each test runs in well
under a second on the planted data)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from collab_planted import Planted, planted_dating  # noqa: E402


@pytest.fixture(scope="session")
def planted() -> Planted:
    return planted_dating()
