"""Mark the text that raised each label, for the item view (rule spans and model tokens)."""

from __future__ import annotations

import re
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from safety.ml.rules import find_rules


def highlight(text: str, evidence: dict[str, Any]) -> SafeString:
    """``text`` as HTML with ``<mark data-label=...>`` around every rule match and every model
    token named in ``evidence`` ({label: {"tokens": [...]}}); everything else escaped."""
    spans: list[tuple[int, int, str, str]] = []  # (start, end, label, why)
    for hit in find_rules(text):
        for s, e, _ in hit.spans:
            spans.append((s, e, hit.label, f"rule {hit.rule}"))
    for label, ev in (evidence or {}).items():
        for token in ev.get("tokens", []) if isinstance(ev, dict) else []:
            for m in re.finditer(rf"(?<![\w]){re.escape(token)}(?![\w])", text, re.IGNORECASE):
                spans.append((m.start(), m.end(), label, "model token"))
    spans.sort(key=lambda s: (s[0], -s[1]))
    out: list[str] = []
    pos = 0
    for s, e, label, why in spans:
        if s < pos:  # overlapping a span already marked
            continue
        out.append(escape(text[pos:s]))
        out.append(
            f'<mark class="hl hl-{escape(label)}" data-label="{escape(label)}" title="{escape(label)}: {escape(why)}">'
            f"{escape(text[s:e])}</mark>"
        )
        pos = e
    out.append(escape(text[pos:]))
    return mark_safe("".join(out))  # every piece of text above is escaped
