"""The popularity baseline: every user gets the items with the most (weighted) likes.

Through the same interface as the learnt models, so it runs through the same tests, training
command, evaluation and benchmark. Its score is log(1 + summed positive weight received);
Platt scaling turns it into a like probability, so even the reciprocal view works (a pair
scores high when both are popular, which is exactly the baseline a reciprocal model must beat).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recommender.ml.collab.base import Recommender, RecommenderConfig
from recommender.ml.collab.data import Interactions


@dataclass
class PopularityConfig(RecommenderConfig):
    epochs: int = 1  # nothing to iterate: one pass counts the likes


class Popularity(Recommender):
    name = "popularity"
    config_class = PopularityConfig
    config: PopularityConfig

    def _setup(self, data: Interactions) -> None:
        self.scores = torch.zeros(data.shape[1])  # [n_items]

    def _epoch(self, data: Interactions, epoch: int) -> float:
        self.scores = self._popularity_score().clone()
        return float("nan")

    def _state(self) -> dict[str, torch.Tensor]:
        return {"scores": self.scores}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.scores = state["scores"].float().clone()

    def _score_rows(self, users: torch.Tensor) -> torch.Tensor:
        # A copy, not an expanded view: recommend() writes -inf into the rows it gets.
        return self.scores.expand(users.numel(), -1).clone()  # [b, n_items]

    def _score_pairs(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.scores[items]
