"""What the training commands, jobs and tasks accept: the names, without the training code.

Every process imports ``recommender.jobs`` at start-up (the app registry registers ML admins'
jobs, whose declared parameters are these names), while the training modules import numpy,
pyarrow, scipy and torch (seconds). So the names live here, importing nothing heavy, and the
training modules (``train``, ``ranker``, ``tasks``) import them from here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from django.utils.dateparse import parse_date, parse_datetime

# The collaborative models ``train --model`` and the ``train_collaborative`` job take.
TRAINABLE: tuple[str, ...] = ("als", "bpr", "lmf", "popularity", "two_tower", "graphsage")
# The ranker's query groups (``train_ranker --groups``; recommender/training/ranker.py explains both).
GROUP_KINDS: tuple[str, ...] = ("impressions", "pools")
GroupKind = Literal["pools", "impressions"]


def parse_start(value: str) -> datetime:
    """A date (midnight) or an ISO datetime."""
    parsed = parse_datetime(value)
    if parsed is None:
        day = parse_date(value)
        if day is None:
            raise ValueError(f"not a date or datetime: {value!r}")
        parsed = datetime(day.year, day.month, day.day)
    return parsed
