"""Reciprocal scoring of generated candidates (framework-free: numpy and ``recommender.ml`` only).

Each candidate v of user u gets two one-way estimates in [0, 1], each a weighted mean of the
signals available for that pair (weights of missing signals drop out, the rest are normalised):

``P(u likes v)``
    bio similarity ``(cos(u, v) + 1) / 2``; the structured score (age fit, distance, shared
    interests, lifestyle); v's desirability ``elo_to_unit(R_v)``; and the interaction signal
    ``(interaction_adjustment + 1) / 2`` (does v look like the profiles u liked rather than those
    u passed?), present only when u has a swipe history and v has a vector.
``P(v likes u)``
    the same similarity and structured score (both symmetric in u and v) and u's desirability
    ``elo_to_unit(R_u)`` (the same for every v), times v's **selectivity**: v's smoothed like
    rate relative to the tenant's median, raised to ``ML_SELECTIVITY_WEIGHT`` (0 turns it off).
    This is the part that differs by candidate: someone who likes one profile in ten is far
    less likely to like u back than someone who likes every other one, however similar the two
    look. When v already liked or superliked u, ``liked_you_boost`` adds ``LIKED_YOU_BOOST``
    (then clipped), because a like already given is the best evidence there is. When v already
    passed on u (``PairSignals.passed_user``, optional), P(v likes u) is multiplied by
    ``PASSED_YOU_FACTOR``: a decision already made is the best evidence the other way too (apps
    rarely show the same profile twice, and a second look rarely turns a pass into a like).

With an active collaborative model (``recommender.serving.collaborative``), each direction
also gets the model's calibrated log-odds ``L`` (P(u likes v) from u's taste and selectivity and
v's appeal; P(v likes u) the other way round). The model and the signals above are then pooled
in log-odds (a logarithmic opinion pool, Genest & Zidek 1986)::

    logit P = (w_c * L + W * logit(P_signals)) / (w_c + W)

with ``w_c = ML_COLLABORATIVE_WEIGHT`` and ``W`` the sum of the signal weights. Log-odds rather
than an average of probabilities because the model's strongest evidence is multiplicative: a
candidate who likes one profile in ten is ten times less likely to like u back than one who
likes every other profile, and an arithmetic mean with the near-constant signals would squash
that ratio. The liked-you boost applies after pooling.

**Learned fusion.** When the active collaborative version carries a learned fusion
(``recommender.ml.learned_fusion``, fitted per tenant on held-out swipes with the model), both
directions come from it instead of the pool above: P(u likes v) from the model's log-odds, u's
like rate, v's Elo, similarity, the structured components and the ages; P(v likes u) from the
same function of the reversed pair. The hand-set weights then only serve tenants without a
collaborative version (the cold-start prior). The liked-you boost and the passed-you factor
apply after either.

The feed score is ``fuse(P(u likes v), P(v likes u), method)``, the harmonic mean by default,
so a one-sided crush ranks low.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recommender.ml.elo import elo_to_unit
from recommender.ml.fusion import fuse
from recommender.ml.interaction import liked_you_boost
from recommender.ml.learned_fusion import LearnedFusion, PairInputs, design_matrix
from recommender.ml.structured import CandidateBatch, ProfileFeatures, StructuredResult, structured_scores

# A like already given makes P(v likes u) ~ 1: the boost saturates it after clipping.
LIKED_YOU_BOOST = 1.0
# A pass already given leaves a small chance of a like on a second look, not none.
PASSED_YOU_FACTOR = 0.1
SIGNALS: tuple[str, ...] = ("similarity", "structured", "elo", "interaction")


@dataclass(frozen=True)
class SignalWeights:
    similarity: float
    structured: float
    elo: float
    interaction: float
    selectivity: float = 1.0  # exponent on the candidate's relative like rate in P(v likes u)
    collaborative: float = 0.0  # the collaborative model's log-odds in the pool (0 turns it off)

    def __post_init__(self) -> None:
        values = (self.similarity, self.structured, self.elo, self.interaction, self.selectivity, self.collaborative)
        if min(values) < 0:
            raise ValueError(f"signal weights must be >= 0, got {self}")


@dataclass(frozen=True)
class PairSignals:
    """Per-candidate inputs; NaN marks a signal unavailable for that candidate."""

    similarity: np.ndarray  # (n,) cosine in [-1, 1] or NaN (no vector on either side)
    interaction: np.ndarray  # (n,) adjustment in [-1, 1] or NaN (no history or no vector)
    elo_candidate: np.ndarray  # (n,) Elo ratings of the candidates
    elo_user: float  # the user's own Elo rating
    liked_user: np.ndarray  # (n,) bool, the candidate already liked the user
    selectivity: np.ndarray | None = None  # (n,) candidate's like rate / the tenant's median, > 0
    collab_uv: np.ndarray | None = None  # (n,) model log-odds that u likes v, NaN where unknown
    collab_vu: np.ndarray | None = None  # (n,) model log-odds that v likes u, NaN where unknown
    passed_user: np.ndarray | None = None  # (n,) bool, the candidate already passed on the user
    like_rate_user: float | None = None  # the user's smoothed like rate (the learned fusion reads it)
    like_rate_candidate: np.ndarray | None = None  # (n,) the candidates' smoothed like rates


@dataclass(frozen=True)
class Scored:
    score_uv: np.ndarray  # (n,) P(u likes v)
    score_vu: np.ndarray  # (n,) P(v likes u)
    reciprocal: np.ndarray  # (n,) fused
    components: dict[str, np.ndarray]  # name -> (n,) float (NaN = unavailable) or bool


def _weighted_mean(values: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """(n,) mean of the available (non-NaN) values with their weights renormalised."""
    stack = np.stack(values)  # (s, n)
    w = np.asarray(weights, dtype=np.float64)[:, None] * ~np.isnan(stack)  # (s, n)
    total = w.sum(axis=0)
    summed = (np.nan_to_num(stack) * w).sum(axis=0)
    return np.clip(np.divide(summed, total, out=np.full(stack.shape[1], 0.5), where=total > 0), 0.0, 1.0)


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(q / (1 - q))


def _pool(p_signals: np.ndarray, model_logits: np.ndarray | None, w_model: float, w_signals: float) -> np.ndarray:
    """(n,) log-odds pool of the signals' estimate and the model's, where the model has one."""
    if model_logits is None or w_model <= 0:
        return p_signals
    have = ~np.isnan(model_logits)
    if not have.any():
        return p_signals
    pooled = p_signals.copy()
    z = (w_model * model_logits[have] + w_signals * _logit(p_signals[have])) / (w_model + w_signals)
    pooled[have] = 1.0 / (1.0 + np.exp(-z))
    return pooled


def _model_unit(logits: np.ndarray | None, n: int) -> np.ndarray:
    if logits is None:
        return np.full(n, np.nan)
    return 1.0 / (1.0 + np.exp(-logits))  # NaN stays NaN


def learned_directions(
    user: ProfileFeatures,
    cands: CandidateBatch,
    signals: PairSignals,
    structured: StructuredResult,
    model: LearnedFusion,
) -> tuple[np.ndarray, np.ndarray]:
    """(P(u likes v), P(v likes u)), each (n,), from the learned fusion: the same function of
    the pair and of the reversed pair (the structured components and similarity are symmetric)."""
    n = len(cands)
    missing = np.full(n, np.nan)
    comps = structured.components
    shared = {name: comps[name].astype(np.float64) for name in ("age_fit", "distance", "interests", "lifestyle")}
    user_rate = signals.like_rate_user if signals.like_rate_user is not None else np.nan
    cand_rates = signals.like_rate_candidate if signals.like_rate_candidate is not None else missing
    cand_age = cands.age.astype(np.float64)
    uv = PairInputs(
        collab_logit=signals.collab_uv if signals.collab_uv is not None else missing,
        swiper_like_rate=np.full(n, user_rate),
        candidate_elo=signals.elo_candidate,
        similarity=signals.similarity,
        swiper_age=np.full(n, float(user.age)),
        candidate_age=cand_age,
        **shared,
    )
    vu = PairInputs(
        collab_logit=signals.collab_vu if signals.collab_vu is not None else missing,
        swiper_like_rate=cand_rates,
        candidate_elo=np.full(n, float(signals.elo_user)),
        similarity=signals.similarity,
        swiper_age=cand_age,
        candidate_age=np.full(n, float(user.age)),
        **shared,
    )
    return model.probability(design_matrix(uv)), model.probability(design_matrix(vu))


def prior_user_likes(
    similarity_unit: np.ndarray,
    structured_score: np.ndarray,
    elo_v: np.ndarray,
    interaction_unit: np.ndarray,
    collab_uv: np.ndarray | None,
    weights: SignalWeights,
) -> np.ndarray:
    """(n,) the hand-weighted P(u likes v): the signals' weighted mean pooled with the model."""
    p_uv = _weighted_mean(
        [similarity_unit, structured_score, elo_v, interaction_unit],
        [weights.similarity, weights.structured, weights.elo, weights.interaction],
    )
    w_signals = weights.similarity + weights.structured + weights.elo + weights.interaction
    return _pool(p_uv, collab_uv, weights.collaborative, w_signals)


def score_pairs(
    user: ProfileFeatures,
    cands: CandidateBatch,
    signals: PairSignals,
    weights: SignalWeights,
    fusion_method: str = "harmonic",
    learned: LearnedFusion | None = None,
) -> Scored:
    structured = structured_scores(user, cands)
    similarity_unit = (np.clip(signals.similarity, -1.0, 1.0) + 1.0) / 2.0  # NaN stays NaN
    interaction_unit = (np.clip(signals.interaction, -1.0, 1.0) + 1.0) / 2.0
    elo_v = elo_to_unit(signals.elo_candidate)  # (n,)
    elo_u = np.full(len(cands), float(elo_to_unit(signals.elo_user)))
    structured_score = structured.score.astype(np.float64)
    if learned is not None:
        p_uv, p_vu = learned_directions(user, cands, signals, structured, learned)
    else:
        p_uv = prior_user_likes(similarity_unit, structured_score, elo_v, interaction_unit, signals.collab_uv, weights)
        p_vu = _weighted_mean(
            [similarity_unit, structured_score, elo_u], [weights.similarity, weights.structured, weights.elo]
        )
        if signals.selectivity is not None:
            p_vu = np.clip(p_vu * np.power(signals.selectivity, weights.selectivity), 0.0, 1.0)
        w_signals = weights.similarity + weights.structured + weights.elo + weights.interaction
        p_vu = _pool(p_vu, signals.collab_vu, weights.collaborative, w_signals)
    p_vu = np.clip(p_vu + liked_you_boost(signals.liked_user, LIKED_YOU_BOOST), 0.0, 1.0)
    if signals.passed_user is not None:
        p_vu = np.where(signals.passed_user, p_vu * PASSED_YOU_FACTOR, p_vu)
    reciprocal = fuse(p_uv, p_vu, fusion_method)
    components: dict[str, np.ndarray] = {
        "similarity": similarity_unit,
        "structured": structured_score,
        **{k: v.astype(np.float64) for k, v in structured.components.items()},
        "elo": elo_v,
        "interaction": signals.interaction.astype(np.float64),
        "liked_you": np.asarray(signals.liked_user, dtype=bool),
        "selectivity": (
            np.full(len(cands), np.nan) if signals.selectivity is None else signals.selectivity.astype(np.float64)
        ),
        "collaborative_user_likes": _model_unit(signals.collab_uv, len(cands)),
        "collaborative_candidate_likes": _model_unit(signals.collab_vu, len(cands)),
        "p_user_likes": p_uv,
        "p_candidate_likes": p_vu,
        "reciprocal": reciprocal,
    }
    return Scored(score_uv=p_uv, score_vu=p_vu, reciprocal=reciprocal, components=components)


def exploration_slots(count: int, share: float) -> int:
    """Slots of a ``count``-item feed given to exploration: ``floor(count * share)``, so a
    20-item feed at the default 0.1 explores 2 and a feed shorter than 10 items none."""
    return max(0, min(count, int(count * max(0.0, min(share, 1.0)))))


def pick_feed(
    order: np.ndarray, count: int, n_explore: int, rng: np.random.Generator, ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Split ranked positions into (top, explored).

    ``order`` (m,) ranks eligible candidates best first. The top ``count - n_explore`` are taken
    as ranked; ``n_explore`` more are drawn uniformly from the rest. The draw runs over the rest
    sorted by id, so a fixed seed picks the same profiles whatever the arrays' layout.
    """
    n_top = min(len(order), count - n_explore)
    top = order[:n_top]
    rest = order[n_top:]
    n_more = min(count - n_top, len(rest))
    if n_more <= 0:
        return top, np.empty(0, dtype=order.dtype)
    rest = rest[np.argsort(ids[rest], kind="stable")]
    explored = rng.choice(rest, size=n_more, replace=False) if n_more < len(rest) else rest
    return top, np.asarray(explored, dtype=order.dtype)
