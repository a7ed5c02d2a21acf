"""Framework-free simulation of a dating-app population and its swipes (no Django imports).

* :mod:`.okcupid` reads the OkCupid profiles (full release or the vendored demo sample).
* :mod:`.population` turns rows into :class:`SimProfile` objects shaped like the Profile API.
* :mod:`.simulator` holds :class:`SwipeSimulator`, the seeded ground-truth preference model used
  for demo data, benchmarks and online evaluation of the feed.
"""

from recommender.simulation.okcupid import OkcRow, load_sample, read_okcupid, sample_path
from recommender.simulation.population import (
    BAY_AREA_BOX,
    BAY_AREA_CITIES,
    GENDERS,
    HOBBIES,
    SimProfile,
    build_population,
    synthetic_rows,
)
from recommender.simulation.simulator import (
    ACTIONS,
    SessionBatch,
    SimConfig,
    SwipeSimulator,
    mutual_likes,
)

__all__ = [
    "ACTIONS",
    "BAY_AREA_BOX",
    "BAY_AREA_CITIES",
    "GENDERS",
    "HOBBIES",
    "OkcRow",
    "SessionBatch",
    "SimConfig",
    "SimProfile",
    "SwipeSimulator",
    "build_population",
    "load_sample",
    "mutual_likes",
    "read_okcupid",
    "sample_path",
    "synthetic_rows",
]
