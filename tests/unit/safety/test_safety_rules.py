"""The documented rules fire on their patterns and stay quiet on ordinary profile text."""

from __future__ import annotations

import pytest

from safety.ml.classifier import SafetyClassifier
from safety.ml.data import DEFAULT_DATA_ROOT, load_sms
from safety.ml.fake import BehaviourSignals, fake_profile_score
from safety.ml.rules import RULES, find_rules, noisy_or


def fired(text: str) -> set[str]:
    return {h.rule for h in find_rules(text)}


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("check out https://bit.ly/xyz for pics", "link"),
        ("visit www.cash-now.com today", "link"),
        ("my site cutegirl.xyz has more", "link"),
        ("call me +1 (415) 555-0199 anytime", "phone_number"),
        ("ring 07700 900123 tonight", "phone_number"),
        ("send it to my cashapp $lovely22", "payment_request"),
        ("can you buy me a gift card?", "payment_request"),
        ("venmo me for the ticket", "payment_request"),
        ("please send me money for the flight", "payment_request"),
        ("I trade bitcoin and forex, great investment opportunity", "crypto"),
        ("deposit USDT to my wallet address", "crypto"),
        ("text me on whatsapp instead", "off_platform_contact"),
        ("add me on telegram", "off_platform_contact"),
        ("my snap is @cutie99", "off_platform_contact"),
        ("hit me up on kik", "off_platform_contact"),
        ("subscribe to my onlyfans", "explicit_solicitation"),
        ("send nudes", "explicit_solicitation"),
        ("go kill yourself", "threat"),
    ],
)
def test_rule_fires_on_documented_pattern(text: str, rule: str) -> None:
    assert rule in fired(text)


@pytest.mark.parametrize(
    "text",
    [
        "I love hiking and coffee. Born in 1990, moved here in 2015.",
        "Looking for someone to share tacos with, 5'9\", dog person.",
        "Snapping photos of birds is my hobby; I work in finance.",
        "",
    ],
)
def test_rules_quiet_on_ordinary_text(text: str) -> None:
    assert fired(text) == set()


def test_spans_point_at_the_matched_text() -> None:
    text = "hey, text me on whatsapp 415 555 0199"
    for hit in find_rules(text):
        for start, end, matched in hit.spans:
            assert text[start:end] == matched


def test_noisy_or_only_raises() -> None:
    assert noisy_or(None, []) == 0.0
    assert noisy_or(0.3, []) == pytest.approx(0.3)
    assert noisy_or(0.3, [0.5]) == pytest.approx(1 - 0.7 * 0.5)
    assert noisy_or(0.9, [0.6, 0.85]) > noisy_or(0.9, [0.6]) > 0.9


def test_every_rule_is_documented_in_the_module() -> None:
    import safety.ml.rules as module

    for rule in RULES:
        assert f"| {rule.name} |" in (module.__doc__ or "")


def test_rules_only_classifier_output_shape_and_evidence() -> None:
    clf = SafetyClassifier(None, "rules")
    ok, scam = clf.classify(["I like board games", "add me on telegram and send me money via cashapp"])
    assert set(ok.labels) == {"inappropriate", "spam_scam", "harassment", "fake_profile"}
    assert ok.labels["spam_scam"] == 0.0
    assert scam.labels["spam_scam"] > 0.95
    rules = {r["rule"] for r in scam.evidence["spam_scam"]["rules"]}
    assert {"off_platform_contact", "payment_request"} <= rules
    assert scam.evidence["spam_scam"]["model_score"] is None


def test_fake_profile_rules() -> None:
    clean, ev = fake_profile_score(BehaviourSignals(has_text=True))
    assert clean == 0.0 and ev == []
    bot, ev = fake_profile_score(
        BehaviourSignals(
            has_text=True,
            copied_bio_count=2,
            swipes_total=300,
            like_share=1.0,
            median_duration_ms=150,
            swipes_last_hour=200,
            account_age_hours=2,
        )
    )
    names = {e["rule"] for e in ev}
    assert {"copied_bio", "like_everyone", "fast_swiping", "swipe_burst", "new_account"} <= names
    assert bot > 0.95
    reported, _ = fake_profile_score(BehaviourSignals(has_text=True, fake_reporters=2))
    assert reported == pytest.approx(1 - 0.7**2)


@pytest.mark.skipif(not (DEFAULT_DATA_ROOT / "sms_spam_collection").exists(), reason="public data not mounted")
def test_split_is_every_fifth_row_in_file_order() -> None:
    ds = load_sms()
    assert ds.test_mask[0] and ds.test_mask[5] and not ds.test_mask[1:5].any()
    assert ds.test_mask.sum() == (len(ds.texts) + 4) // 5
    assert not (ds.test_mask & ds.train_mask).any()
