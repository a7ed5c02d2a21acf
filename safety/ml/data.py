"""The public training sets and their fixed split.

Every fifth row in file order (row index mod 5 == 0) is the test split of each set, for the
benchmark only: training and tuning (C, Platt calibration, decision thresholds) never see it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The shared/ folder beside the checkout (read-only public data sets; see its README).
DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[3] / "shared" / "datasets"
SMS_PATH = Path("sms_spam_collection/SMSSpamCollection")
DAVIDSON_PATH = Path("davidson_hate_speech/labeled_data.csv")


@dataclass(frozen=True)
class Dataset:
    name: str
    texts: list[str]
    # Per-row class in the source coding (SMS: 1 spam / 0 ham; Davidson: 0 hate, 1 offensive, 2 neither).
    classes: np.ndarray  # (n,) int64
    source: Path

    @property
    def test_mask(self) -> np.ndarray:
        return np.arange(len(self.texts)) % 5 == 0

    @property
    def train_mask(self) -> np.ndarray:
        return ~self.test_mask


def load_sms(root: Path = DEFAULT_DATA_ROOT) -> Dataset:
    path = root / SMS_PATH
    texts: list[str] = []
    classes: list[int] = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line:
                continue
            label, _, text = line.partition("\t")
            if label not in ("ham", "spam"):
                raise ValueError(f"{path}: unexpected label {label!r}")
            texts.append(text)
            classes.append(1 if label == "spam" else 0)
    return Dataset("sms", texts, np.asarray(classes, dtype=np.int64), path)


def load_davidson(root: Path = DEFAULT_DATA_ROOT) -> Dataset:
    path = root / DAVIDSON_PATH
    texts: list[str] = []
    classes: list[int] = []
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):  # tweets hold quoted newlines: a CSV reader, never split lines
            texts.append(row["tweet"])
            classes.append(int(row["class"]))
    return Dataset("davidson", texts, np.asarray(classes, dtype=np.int64), path)


def binary_targets(dataset: Dataset, label: str) -> np.ndarray:
    """The 0/1 target of one text label on a data set (see docs in safety/ml/heads.py)."""
    if dataset.name == "sms":
        if label != "spam_scam":
            raise ValueError(f"the SMS set only labels spam_scam, not {label}")
        return dataset.classes.astype(np.int64)
    if dataset.name == "davidson":
        if label not in ("inappropriate", "harassment"):
            raise ValueError(f"the Davidson set labels inappropriate/harassment, not {label}")
        return (dataset.classes != 2).astype(np.int64)  # hate or offensive vs neither
    raise ValueError(f"unknown data set {dataset.name}")
