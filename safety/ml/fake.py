"""``fake_profile`` from behaviour and profile signals: rules first.

There is no public labelled set of fake dating profiles, so this label is a documented noisy-OR
of rules whose weights are priors (how often, in moderation practice, the signal alone means a
fake), not fitted probabilities; moderator decisions are recorded with the signals so the weights
can be fitted once enough decisions exist.

| rule | weight | fires when |
|---|---|---|
| empty_profile | 0.25 | no bio and no prompt answers |
| copied_bio | 0.70 | the bio (normalised, >= 20 chars) equals another profile's bio |
| near_copied_bio | 0.50 | the bio embedding has cosine >= 0.97 with another profile's |
| like_everyone | 0.50 | >= 40 swipes, >= 95 % of them likes |
| fast_swiping | 0.50 | >= 30 swipes with a median decision time under 500 ms |
| swipe_burst | 0.40 | >= 150 swipes within the last hour |
| new_account | 0.15 | account younger than 24 h (only ever adds to other signals) |
| reported | 0.30 each | per distinct reporter who chose reason fake_profile (0.15 for other reasons) |
"""

from __future__ import annotations

from dataclasses import dataclass

from safety.ml.rules import noisy_or


@dataclass(frozen=True)
class BehaviourSignals:
    has_text: bool
    copied_bio_count: int = 0  # other profiles with the same normalised bio
    near_copy_similarity: float = 0.0  # max cosine with another profile's bio embedding
    swipes_total: int = 0
    like_share: float = 0.0
    median_duration_ms: float | None = None
    swipes_last_hour: int = 0
    account_age_hours: float = 1e9
    fake_reporters: int = 0
    other_reporters: int = 0


def fake_profile_score(s: BehaviourSignals) -> tuple[float, list[dict[str, object]]]:
    fired: list[tuple[str, float, str]] = []
    if not s.has_text:
        fired.append(("empty_profile", 0.25, "no bio and no prompt answers"))
    if s.copied_bio_count > 0:
        fired.append(("copied_bio", 0.70, f"same bio as {s.copied_bio_count} other profile(s)"))
    elif s.near_copy_similarity >= 0.97:
        fired.append(("near_copied_bio", 0.50, f"bio cosine {s.near_copy_similarity:.3f} with another profile"))
    if s.swipes_total >= 40 and s.like_share >= 0.95:
        fired.append(("like_everyone", 0.50, f"{s.like_share:.0%} likes over {s.swipes_total} swipes"))
    if s.swipes_total >= 30 and s.median_duration_ms is not None and s.median_duration_ms < 500:
        fired.append(("fast_swiping", 0.50, f"median {s.median_duration_ms:.0f} ms per swipe"))
    if s.swipes_last_hour >= 150:
        fired.append(("swipe_burst", 0.40, f"{s.swipes_last_hour} swipes in the last hour"))
    if s.account_age_hours < 24 and fired:
        fired.append(("new_account", 0.15, f"account {s.account_age_hours:.1f} h old"))
    for _ in range(s.fake_reporters):
        fired.append(("reported", 0.30, "reported as fake"))
    for _ in range(s.other_reporters):
        fired.append(("reported", 0.15, "reported for another reason"))
    p = noisy_or(None, [w for _, w, _ in fired])
    merged: dict[str, dict[str, object]] = {}
    for name, w, detail in fired:
        entry = merged.setdefault(name, {"rule": name, "weight": 0.0, "detail": detail, "count": 0})
        entry["count"] = int(entry["count"]) + 1  # type: ignore[call-overload]
        entry["weight"] = 1 - (1 - float(entry["weight"])) * (1 - w)  # type: ignore[arg-type]
    return p, list(merged.values())
