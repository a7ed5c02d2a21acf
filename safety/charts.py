"""Tiny server-side SVG bar charts for the queue health page (no JS, no dependencies)."""

from __future__ import annotations

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe


def bar_chart(data: dict[str, float], *, title: str, width: int = 420, bar_h: int = 22, unit: str = "") -> SafeString:
    if not data:
        return format_html('<p class="muted">{}: no data yet</p>', title)
    top = max(max(data.values()), 1e-9)
    label_w = 150
    rows = []
    for i, (name, value) in enumerate(data.items()):
        y = 24 + i * (bar_h + 6)
        w = (width - label_w - 60) * (value / top)
        rows.append(
            f'<text x="0" y="{y + bar_h * 0.7:.0f}" font-size="12">{escape(name)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="#4a6fa5"></rect>'
            f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h * 0.7:.0f}" font-size="12">{value:g}{escape(unit)}</text>'
        )
    height = 30 + len(data) * (bar_h + 6)
    body = "".join(rows)
    return mark_safe(  # every interpolated string is escaped
        f'<svg role="img" aria-label="{escape(title)}" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg"><text x="0" y="14" font-size="13" font-weight="bold">'
        f"{escape(title)}</text>{body}</svg>"
    )


def stacked_days(per_day: dict[str, list[int]], *, title: str, width: int = 520, height: int = 160) -> SafeString:
    """Decisions per day: automated (orange) under human (blue)."""
    if not per_day:
        return format_html('<p class="muted">{}: no data yet</p>', title)
    top = max(sum(v) for v in per_day.values()) or 1
    n = len(per_day)
    bw = max(4.0, (width - 40) / n - 2)
    parts = []
    for i, (day, (auto, human)) in enumerate(per_day.items()):
        x = 30 + i * (bw + 2)
        ha = (height - 40) * auto / top
        hh = (height - 40) * human / top
        base = height - 20
        parts.append(
            f'<rect x="{x:.1f}" y="{base - ha:.1f}" width="{bw:.1f}" height="{ha:.1f}" fill="#e39b3b">'
            f"<title>{escape(day)}: {auto} automated</title></rect>"
            f'<rect x="{x:.1f}" y="{base - ha - hh:.1f}" width="{bw:.1f}" height="{hh:.1f}" fill="#4a6fa5">'
            f"<title>{escape(day)}: {human} human</title></rect>"
        )
    return mark_safe(  # only numbers and escaped days
        f'<svg role="img" aria-label="{escape(title)}" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg"><text x="0" y="14" font-size="13" font-weight="bold">'
        f"{escape(title)} (orange automated, blue human)</text>{''.join(parts)}</svg>"
    )
