"""Speed-dating cohorts: small tenants where people meet in waves and every meeting is decided
both ways (framework-free: numpy and the simulator only).

Why this shape: a real small tenant looks nothing like a swipe app with a long feed. In the
speed-dating studies that gave the best public record of human dating decisions (Fisman,
Iyengar, Kamenica & Simonson, "Gender Differences in Mate Selection", QJE 2006), a few hundred
people came in *waves* of about ten to twenty per side; within a wave everyone met everyone of
the other side for a few minutes and then said yes or no. So each person has a short history
(one decision per partner in their wave) and everybody is new at some point in time: a global
time split puts whole waves in validation and test, which the models then never saw.

:func:`cohort_meetings` builds such a tenant on top of :class:`.simulator.SwipeSimulator`:

* people who seek the other binary gender are grouped into waves of similar age (graduate
  students in the study), ``per_side_min`` to ``per_side_max`` per side, each person in one
  wave only; waves are ``days_between_waves`` apart;
* within a wave, round ``r`` pairs man ``i`` with woman ``(i + r) mod n`` (a rotation, as at the
  events); every pair meets once, ``minutes_per_round`` apart;
* both decisions come from the simulator's hidden, fixed-per-pair decisions (``would_like``), so
  asking again gives the same answer;
* a share ``holdout_share`` of each wave's meetings (both decisions) is held out at random:
  what a model is judged on is meetings among people it saw decide elsewhere in their wave.

``COHORT_SIM_CONFIG`` sets the simulator's base like rates near those of the studies (men said
yes to roughly half of their partners, women to roughly a third); the rest of the preference
model (attractiveness, pickiness, chemistry, age, homophily) is the simulator's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from recommender.simulation.population import SimProfile
from recommender.simulation.simulator import SimConfig, SwipeSimulator

COHORT_SIM_CONFIG = SimConfig(base_like_rate={"man": 0.48, "woman": 0.34, "nonbinary": 0.4})


@dataclass(frozen=True)
class CohortConfig:
    waves: int = 20
    per_side_min: int = 8
    per_side_max: int = 18
    minutes_per_round: float = 4.0
    days_between_waves: float = 7.0
    holdout_share: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if not 2 <= self.per_side_min <= self.per_side_max:
            raise ValueError("need 2 <= per_side_min <= per_side_max")
        if not 0.0 <= self.holdout_share < 1.0:
            raise ValueError("holdout_share must be in [0, 1)")


@dataclass(frozen=True)
class Meeting:
    """One meeting of ``man`` and ``woman`` (population indices) and both decisions."""

    wave: int
    round: int
    timestamp: datetime
    man: int
    woman: int
    man_likes: bool
    woman_likes: bool
    held_out: bool

    @property
    def match(self) -> bool:
        return self.man_likes and self.woman_likes


def _side(population: Sequence[SimProfile], gender: str, seeks: str) -> np.ndarray:
    return np.array(
        [i for i, p in enumerate(population) if p.gender == gender and list(p.seeking) == [seeks]], dtype=np.int64
    )


def _take_closest(pool: np.ndarray, ages: np.ndarray, centre: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(the ``k`` members of ``pool`` closest in age to ``centre``, the rest of ``pool``)."""
    order = np.argsort(np.abs(ages[pool] - centre), kind="stable")
    return pool[order[:k]], pool[order[k:]]


def cohort_waves(population: Sequence[SimProfile], config: CohortConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """(men, women) population indices of each wave: similar ages, each person once."""
    rng = np.random.default_rng([config.seed, 11])
    men = rng.permutation(_side(population, "man", "woman"))
    women = rng.permutation(_side(population, "woman", "man"))
    ages = np.array([p.age for p in population], dtype=np.float64)
    waves: list[tuple[np.ndarray, np.ndarray]] = []
    for _ in range(config.waves):
        k = int(rng.integers(config.per_side_min, config.per_side_max + 1))
        if len(men) < k or len(women) < k:
            break
        centre = float(ages[men[0]])  # the next man in a random order sets the wave's age
        wave_men, men = _take_closest(men, ages, centre, k)
        wave_women, women = _take_closest(women, ages, centre, k)
        waves.append((wave_men, wave_women))
    return waves


def cohort_meetings(simulator: SwipeSimulator, config: CohortConfig, start: datetime) -> list[Meeting]:
    """Every meeting of every wave with both decisions, in time order (see the module docs)."""
    rng = np.random.default_rng([config.seed, 12])
    meetings: list[Meeting] = []
    for w, (men, women) in enumerate(cohort_waves(simulator.population, config)):
        wave_start = start + timedelta(days=w * config.days_between_waves)
        n = len(men)
        held = rng.random((n, n)) < config.holdout_share  # [round, man]
        for r in range(n):
            at = wave_start + timedelta(minutes=r * config.minutes_per_round)
            for i, man in enumerate(men.tolist()):
                woman = int(women[(i + r) % n])
                meetings.append(
                    Meeting(
                        wave=w,
                        round=r,
                        timestamp=at,
                        man=man,
                        woman=woman,
                        man_likes=simulator.would_like(man, woman),
                        woman_likes=simulator.would_like(woman, man),
                        held_out=bool(held[r, i]),
                    )
                )
    return meetings


def signup_profile(profile: SimProfile) -> dict[str, Any]:
    """The profile JSON an app knows at sign-up (what the integrators sent): no bio and no age
    preference; ethnicity left out (the service must not rank by it)."""
    return {
        "external_id": profile.external_id,
        "age": profile.age,
        "gender": profile.gender,
        "seeking": list(profile.seeking),
        "max_distance_km": 100,
        "lat": profile.lat,
        "lon": profile.lon,
        "interests": list(profile.interests),
        "attributes": {k: v for k, v in profile.attributes.items() if k != "ethnicity"},
    }


def baseline_scores(meetings: Sequence[Meeting]) -> dict[tuple[int, int], tuple[float, float]]:
    """The two-line baseline for every held-out meeting, both directions: (chooser, partner) ->
    (P(chooser says yes), match score). P is the partner's share of yes received times the
    chooser's share of yes given, over the training meetings (the overall yes rate for someone
    without any); the match score is the harmonic mean of both directions."""
    given: dict[int, list[bool]] = defaultdict(list)
    received: dict[int, list[bool]] = defaultdict(list)
    for m in meetings:
        if not m.held_out:
            for a, b, liked in ((m.man, m.woman, m.man_likes), (m.woman, m.man, m.woman_likes)):
                given[a].append(liked)
                received[b].append(liked)
    overall = float(np.mean([x for v in given.values() for x in v]))

    def p(a: int, b: int) -> float:
        pickiness = float(np.mean(given[a])) if given[a] else overall
        popularity = float(np.mean(received[b])) if received[b] else overall
        return pickiness * popularity

    out: dict[tuple[int, int], tuple[float, float]] = {}
    for m in meetings:
        if m.held_out:
            uv, vu = p(m.man, m.woman), p(m.woman, m.man)
            match = 2 * uv * vu / (uv + vu) if uv + vu > 0 else 0.0
            out[(m.man, m.woman)] = (uv, match)
            out[(m.woman, m.man)] = (vu, match)
    return out
