"""Shared, session-scoped fixtures for the simulation tests (no Django needed).

Building the simulator and a 100,000-swipe history takes a few seconds, so both are made once.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

# Make the repo importable when pytest runs without pytest-django (which would add it itself).
REPO_ROOT = Path(__file__).resolve().parents[3]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from recommender.simulation import (  # noqa: E402
    OkcRow,
    SessionBatch,
    SimProfile,
    SwipeSimulator,
    build_population,
    load_sample,
)

SEED = 7
HISTORY_SWIPES = 100_000
HISTORY_START = datetime(2024, 3, 1, tzinfo=UTC)
HISTORY_DAYS = 30


@dataclass
class TimedHistory:
    """A simulated history and how it was made (tests read the parameters from here)."""

    batches: list[SessionBatch]
    seconds: float
    seed: int = SEED
    swipes: int = HISTORY_SWIPES
    start: datetime = HISTORY_START
    days: int = HISTORY_DAYS


@pytest.fixture(scope="session")
def sample_rows() -> list[OkcRow]:
    return load_sample()


@pytest.fixture(scope="session")
def population(sample_rows: list[OkcRow]) -> list[SimProfile]:
    return build_population(sample_rows, seed=SEED)


@pytest.fixture(scope="session")
def simulator(population: list[SimProfile]) -> SwipeSimulator:
    return SwipeSimulator(population, seed=SEED)


@pytest.fixture(scope="session")
def history(population: list[SimProfile]) -> TimedHistory:
    """100k swipes over the 3,000-profile sample, timed including the simulator's setup."""
    started = time.perf_counter()
    sim = SwipeSimulator(population, seed=SEED)
    batches = list(sim.simulate_history(HISTORY_SWIPES, HISTORY_START, HISTORY_DAYS))
    return TimedHistory(batches=batches, seconds=time.perf_counter() - started)
