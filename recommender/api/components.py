"""The score components the feed and the rank API answer per candidate, documented in one place.

``GET /api/v1/feed``, ``POST /internal/ml/recommendations`` and ``POST
/api/v1/ml/profiles/rank/batch`` answer ``components`` for every candidate: why it scored what it
did. Each name they can answer is described here with its JSON type and range, and the OpenAPI
schema's component objects are built from these mappings (:func:`components_serializer`), so the
schema cannot drift from this list; tests/test_components.py checks that every component of real
feed and rank answers is here (a new component without an entry fails it) and that docs/api.md
lists them.

To add one: a signal that ``recommender.feed.scoring.score_pairs`` returns goes in ``SIGNALS``
(both the feed and the rank API answer it); one only the feed adds (``recommender/feed/pipeline.py``:
``ranker``, ``explore``) goes in ``FEED_ONLY``. Give its range (``minimum``/``maximum`` where it
is bounded), ``nullable=True`` if it can be null (unavailable for the pair) and ``required=False``
if some answers leave it out. Values are full-precision floats (never rounded) or booleans.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from rest_framework import serializers


@dataclass(frozen=True)
class Component:
    description: str
    type: Literal["number", "boolean"] = "number"
    minimum: float | None = None  # inclusive bounds, written into the schema
    maximum: float | None = None
    nullable: bool = False  # null: unavailable for this pair (no vector, no model, no history)
    required: bool = True  # in every answer (False: only in some, see the description)

    def field(self) -> serializers.Field:
        if self.type == "boolean":
            return serializers.BooleanField(help_text=self.description, required=self.required)
        return serializers.FloatField(
            help_text=self.description,
            allow_null=self.nullable,
            required=self.required,
            min_value=self.minimum,
            max_value=self.maximum,
        )


def _unit(description: str, *, nullable: bool = False) -> Component:
    """A score or probability in [0, 1]."""
    return Component(description, minimum=0.0, maximum=1.0, nullable=nullable)


# Every signal of score_pairs, in the order it answers them: the feed's and the rank API's.
SIGNALS: dict[str, Component] = {
    "similarity": _unit(
        "Bio similarity: (cos + 1) / 2 of the user's and the candidate's bio embeddings, in [0, 1] (0.5: "
        "unrelated). null when either has no embedding, or ML is off.",
        nullable=True,
    ),
    "structured": _unit(
        "The structured match: the weighted mean of age_fit, distance, interests and lifestyle (age_fit "
        "left out when null), in [0, 1]."
    ),
    "age_fit": _unit(
        "Each age in the other's preferred range: the geometric mean of both directions' fit, 1 at the "
        "judge's own age, 0.5 at the far edge of the range, 0 outside; in [0, 1]. A side that states no "
        "preference (18 to 120, the default) counts the other side alone; null when neither states one.",
        nullable=True,
    ),
    "distance": _unit("1 at 0 km, falling linearly to 0 at the smaller of the two maximum distances; in [0, 1]."),
    "interests": _unit("Jaccard overlap of the two interest lists, in [0, 1] (0 when both are empty)."),
    "lifestyle": _unit(
        "Share of the lifestyle attributes both filled in that are compatible (equal, or one step apart on "
        "ordinal scales such as drinks), in [0, 1]; 0.5 when they have none in common."
    ),
    "elo": _unit(
        "The candidate's desirability: their Elo rating (from the swipes they received) mapped to [0, 1]; "
        "0.5 is a new profile's rating."
    ),
    "interaction": Component(
        "How much the candidate looks like the profiles the user liked (+) or passed on (-), from bio "
        "embeddings, in [-1, 1]. null without swipe history or embeddings.",
        minimum=-1.0,
        maximum=1.0,
        nullable=True,
    ),
    "liked_you": Component("The candidate already liked (or superliked) the user.", type="boolean"),
    "selectivity": Component(
        "How readily the candidate likes: their like rate divided by the tenant's median like rate, a ratio "
        "> 0 (1: typical, 2: likes twice as often). Scales P(candidate likes user) (ML_SELECTIVITY_WEIGHT is "
        "its exponent). null when the like rates are unavailable.",
        minimum=0.0,
        nullable=True,
    ),
    "collaborative_user_likes": _unit(
        "The active collaborative model's calibrated P(user likes candidate), in [0, 1]. null without an "
        "active collaborative version, or when the model cannot place the user (a profile it never saw, "
        "for models other than lmf).",
        nullable=True,
    ),
    "collaborative_candidate_likes": _unit(
        "The same model's calibrated P(candidate likes user), in [0, 1]; null as collaborative_user_likes.",
        nullable=True,
    ),
    "p_user_likes": _unit(
        "P(user likes candidate), in [0, 1]. With a collaborative version that carries a learned fusion (what "
        "train fits per tenant): that model's estimate from the collaborative log-odds, the user's like rate, "
        "the candidate's Elo, similarity, the structured components and the ages. Otherwise (cold start) the "
        "signals' weighted estimate (similarity, structured, elo, interaction; ML_*_WEIGHT), pooled in "
        "log-odds with collaborative_user_likes when there is one."
    ),
    "p_candidate_likes": _unit(
        "P(candidate likes user), in [0, 1]: the learned fusion applied to the reversed pair when there is "
        "one, else the signals' estimate scaled by selectivity and pooled with collaborative_candidate_likes; "
        "then raised to 1 when the candidate already liked the user (liked_you) and cut to a tenth when they "
        "passed on the user."
    ),
    "reciprocal": _unit(
        "p_user_likes and p_candidate_likes fused by ML_FUSION_METHOD (harmonic by default): high only when "
        "both are; in [0, 1]. The rank API's score, and the feed's unless a ranker served it."
    ),
}

# What the feed adds (recommender/feed/pipeline.py): the ranker's score and the exploration flag.
FEED_ONLY: dict[str, Component] = {
    "ranker": Component(
        "The active ranker version's (or its experiment arm's) calibrated P(user likes candidate), in [0, 1], "
        "which took p_user_likes' place in the reciprocal fusion that gave score. Present only when a ranker "
        "served the feed. A ranker saved without calibration gives its raw LightGBM score instead (any real "
        "number, comparable within one feed only).",
        required=False,
    ),
    "explore": Component(
        "Drawn at random from the rest of the eligible pool (an exploration slot, ML_EXPLORATION_SHARE), "
        "not placed by its score.",
        type="boolean",
    ),
}

FEED_COMPONENTS: dict[str, Component] = {**SIGNALS, **FEED_ONLY}
RANK_COMPONENTS: dict[str, Component] = dict(SIGNALS)


def components_serializer(name: str, components: Mapping[str, Component], doc: str) -> type[serializers.Serializer]:
    """A serializer class (its name is the schema component's, minus "Serializer") with one field
    per component, typed, bounded and described from ``components``."""
    attrs: dict[str, object] = {"__doc__": doc, "__module__": __name__}
    attrs.update({key: component.field() for key, component in components.items()})
    return type(name, (serializers.Serializer,), attrs)
