"""The safety classifier: text heads + rules for the text labels, behaviour rules for fakes.

Output per text, for every label in LABELS: ``{"probability": p, "model_score": p_model | None,
"rules": [...], "tokens": [...]}``. Without trained heads (no checkpoint yet) the text labels are
rules-only (``model_score`` None), which the evidence shows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from safety.ml import LABELS, TEXT_LABELS
from safety.ml.fake import BehaviourSignals, fake_profile_score
from safety.ml.heads import TextHeads
from safety.ml.rules import find_rules, noisy_or

Encode = Callable[[Sequence[str]], np.ndarray]


@dataclass
class SafetyResult:
    labels: dict[str, float]
    evidence: dict[str, dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {"labels": self.labels, "evidence": self.evidence}


class SafetyClassifier:
    def __init__(self, heads: TextHeads | None, version: str) -> None:
        self.heads = heads
        self.version = version

    def classify(
        self,
        texts: Sequence[str],
        *,
        encode: Encode | None = None,
        embeddings: np.ndarray | None = None,
        behaviour: Sequence[BehaviourSignals | None] | None = None,
    ) -> list[SafetyResult]:
        texts = [str(t) for t in texts]
        model_p: dict[str, np.ndarray] = {}
        if self.heads is not None and texts:
            if embeddings is None:
                if encode is None:
                    raise ValueError("trained heads need embeddings or an encoder")
                embeddings = encode(texts)
            model_p = self.heads.predict_proba(texts, embeddings)
        results: list[SafetyResult] = []
        for i, text in enumerate(texts):
            hits = find_rules(text)
            labels: dict[str, float] = {}
            evidence: dict[str, dict[str, Any]] = {}
            for label in TEXT_LABELS:
                mine = [h for h in hits if h.label == label]
                score = float(model_p[label][i]) if label in model_p else None
                # With a trained head the rules were among its inputs; their fixed weights are scaled
                # by what out-of-fold data showed they add on top (heads.Head.rule_scale).
                scale = self.heads.heads[label].rule_scale if (self.heads and label in self.heads.heads) else 1.0
                labels[label] = round(noisy_or(score, [scale * h.weight for h in mine]), 6)
                tokens = self.heads.top_tokens(label, text) if (self.heads and score and score >= 0.5) else []
                evidence[label] = {
                    "model_score": None if score is None else round(score, 6),
                    "rules": [h.as_dict() for h in mine],
                    "tokens": tokens,
                }
            signals = behaviour[i] if behaviour is not None else None
            if signals is None:
                signals = BehaviourSignals(has_text=bool(text.strip()))
                scope = "text only: no behaviour signals for free text"
            else:
                scope = "behaviour and profile signals"
            p_fake, fake_rules = fake_profile_score(signals)
            labels["fake_profile"] = round(p_fake, 6)
            evidence["fake_profile"] = {"model_score": None, "rules": fake_rules, "tokens": [], "scope": scope}
            assert tuple(labels) == LABELS or set(labels) == set(LABELS)
            results.append(SafetyResult(labels={k: labels[k] for k in LABELS}, evidence=evidence))
        return results
