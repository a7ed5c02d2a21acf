"""Documented rules for what the text models miss, and the hand-made text features.

Each rule is a regular expression tied to one label with a weight: the probability that the rule
firing on its own justifies the label. Rules and the model combine as a noisy-OR,
``p = 1 - (1 - p_model) * prod(1 - w_rule)``, so a rule can only raise a label, several rules
raise it further, and the model's calibrated score is kept as the floor.

Why rules at all: the public training sets are SMS spam and tweets, not dating profiles, so the
heads never saw the scams specific to dating apps (move the chat off the platform, then ask for
money or crypto). Those patterns are stable and cheap to match exactly.

| rule | label | weight | fires on |
|---|---|---|---|
| link | spam_scam | 0.60 | URLs, ``www.``, bare domains such as ``bit.ly/x`` or ``cash-now.xyz`` |
| phone_number | spam_scam | 0.60 | 8+ digits written as one number (spaces, dots, dashes, brackets) |
| payment_request | spam_scam | 0.85 | cashapp/$cashtags, venmo, paypal, zelle, gift cards, wires, "send me money" |
| crypto | spam_scam | 0.80 | bitcoin/btc, eth, usdt, crypto, forex, "investment opportunity", wallets |
| off_platform_contact | spam_scam | 0.70 | whatsapp, telegram, snap(chat), kik, wechat, "text/add/hit me up on" |
| explicit_solicitation | inappropriate | 0.80 | nudes, sexting, onlyfans/fansly, escort, "pay for sex" |
| threat | harassment | 0.85 | "kill yourself", "kys", "i will find you", "you deserve to die" |
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Rule:
    name: str
    label: str
    weight: float
    pattern: re.Pattern[str]
    description: str


_I = re.IGNORECASE

RULES: tuple[Rule, ...] = (
    Rule(
        "link",
        "spam_scam",
        0.60,
        re.compile(
            r"\b(?:https?://|www\.)\S+|\b[a-z0-9][a-z0-9-]{1,62}\.(?:com|net|org|ly|io|me|co|xyz|info|biz|link|click|"
            r"site|online|top|app|gg|to|cc|ru|tk)(?:/\S*)?\b",
            _I,
        ),
        "a link or a bare domain",
    ),
    Rule(
        "phone_number",
        "spam_scam",
        0.60,
        re.compile(r"(?<![\w])\+?\(?\d(?:[\s.\-()]{0,2}\d){7,14}(?![\w])"),
        "a phone number (8 or more digits)",
    ),
    Rule(
        "payment_request",
        "spam_scam",
        0.85,
        re.compile(
            r"\bcash\s?app\b|(?<![\w$])\$[a-z][a-z0-9_]{2,}\b|\bvenmo\b|\bpay\s?pal\b|\bzelle\b|\bwestern\s+union\b|"
            r"\bmoney\s?gram\b|\bgift\s?cards?\b|\bitunes\s+cards?\b|\bwire\s+(?:transfer|me)\b|"
            r"\bsend\s+(?:me\s+)?(?:some\s+)?(?:money|cash|funds)\b|\bbank\s+(?:details|account\s+number)\b|"
            r"\b(?:sugar\s+daddy|allowance)\b",
            _I,
        ),
        "a payment or money request",
    ),
    Rule(
        "crypto",
        "spam_scam",
        0.80,
        re.compile(
            r"\bbitcoins?\b|\bbtc\b|\bethereum\b|\beth\b|\busdt\b|\bcrypto(?:currency|currencies)?\b|\bforex\b|"
            r"\bbinary\s+options?\b|\binvestment\s+(?:opportunity|platform|plan)\b|\bwallet\s+address\b|"
            r"\b(?:bc1|[13])[a-km-zA-HJ-NP-Z1-9]{25,39}\b|\b0x[a-fA-F0-9]{40}\b",
            _I,
        ),
        "a crypto or investment pitch",
    ),
    Rule(
        "off_platform_contact",
        "spam_scam",
        0.70,
        re.compile(
            r"\b(?:whats\s?app|telegram|snap\s?chat|snap|kik|wechat|viber|signal\s+me|line\s+id|google\s+hangouts?)\b|"
            r"\b(?:text|message|msg|add|hit|dm|contact|find|reach|call)\s+me\s+(?:up\s+)?(?:on|at|via)\b|"
            r"\b(?:my\s+)?(?:snap|sc|ig|insta|kik)\s*(?:is|:)\s*@?\w+",
            _I,
        ),
        "a request to move the conversation off the app",
    ),
    Rule(
        "explicit_solicitation",
        "inappropriate",
        0.80,
        re.compile(
            r"\bnudes?\b|\bn00dz?\b|\bsexting\b|\bonly\s?fans\b|\bfansly\b|\bescorts?\b|\bpay\s+for\s+sex\b|"
            r"\bdick\s+pics?\b",
            _I,
        ),
        "explicit sexual solicitation",
    ),
    Rule(
        "threat",
        "harassment",
        0.85,
        re.compile(
            r"\bkill\s+yo(?:u|ur)sel(?:f|ves)\b|\bkys\b|\bi\s*(?:will|'ll)\s+find\s+you\b|"
            r"\byou\s+deserve\s+to\s+die\b|\bi\s*(?:will|'ll)\s+(?:kill|hurt)\s+you\b",
            _I,
        ),
        "a threat of violence or self-harm incitement",
    ),
)

RULES_BY_NAME: dict[str, Rule] = {r.name: r for r in RULES}


@dataclass(frozen=True)
class RuleHit:
    rule: str
    label: str
    weight: float
    spans: tuple[tuple[int, int, str], ...]  # (start, end, matched text), offsets into the input

    def as_dict(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "weight": self.weight,
            "description": RULES_BY_NAME[self.rule].description,
            "spans": [[s, e, t] for s, e, t in self.spans],
        }


def find_rules(text: str) -> list[RuleHit]:
    hits: list[RuleHit] = []
    for rule in RULES:
        spans = tuple((m.start(), m.end(), m.group(0)) for m in rule.pattern.finditer(text))
        if rule.name == "phone_number":
            # A year range or a price is not a phone number: keep runs with at least 8 digits.
            spans = tuple(s for s in spans if sum(c.isdigit() for c in s[2]) >= 8)
        if spans:
            hits.append(RuleHit(rule.name, rule.label, rule.weight, spans))
    return hits


def noisy_or(model_p: float | None, weights: list[float]) -> float:
    keep = 1.0 - (model_p or 0.0)
    for w in weights:
        keep *= 1.0 - w
    return 1.0 - keep


# --- Hand-made numeric features fed to the heads next to the embedding ---------------------------

FEATURE_NAMES: tuple[str, ...] = (
    *(f"rule_{r.name}" for r in RULES),
    "digit_ratio",
    "upper_ratio",
    "currency_symbols",
    "exclamations",
    "log_length",
)

_CURRENCY = re.compile(r"[$£€]")


def text_features(text: str) -> np.ndarray:
    """(len(FEATURE_NAMES),) float32: rule counts (log1p) and shape statistics of the text."""
    counts = {h.rule: len(h.spans) for h in find_rules(text)}
    n = max(len(text), 1)
    letters = [c for c in text if c.isalpha()]
    values = [math.log1p(counts.get(r.name, 0)) for r in RULES]
    values += [
        sum(c.isdigit() for c in text) / n,
        (sum(c.isupper() for c in letters) / len(letters)) if letters else 0.0,
        math.log1p(len(_CURRENCY.findall(text))),
        math.log1p(text.count("!")),
        math.log1p(len(text)),
    ]
    return np.asarray(values, dtype=np.float32)


def text_features_batch(texts: list[str]) -> np.ndarray:
    out = np.zeros((len(texts), len(FEATURE_NAMES)), dtype=np.float32)  # (n, k)
    for i, t in enumerate(texts):
        out[i] = text_features(t)
    return out
