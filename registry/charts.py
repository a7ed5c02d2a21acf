"""Small server-side SVG charts for the admin pages: no JavaScript, readable markup.

Every label is escaped; the numbers are formatted by us. Two kinds: line charts (metrics across
versions, a run's per-epoch curves) and point-with-interval charts (experiment rates with CIs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
WIDTH, HEIGHT = 560, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 130, 28, 40


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        return [low]
    step = (high - low) / (count - 1)
    return [low + i * step for i in range(count)]


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000 or magnitude < 0.001:
        return f"{value:.2g}"
    return f"{value:.3g}"


def _frame(title: str, x_label: str, y_label: str, y_low: float, y_high: float) -> list[str]:
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" class="registry-chart" '
        'font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<text x="{LEFT}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>',
        f'<text x="{(WIDTH - RIGHT + LEFT) / 2:.0f}" y="{HEIGHT - 6}" text-anchor="middle">{escape(x_label)}</text>',
        f'<text x="12" y="{TOP + plot_h / 2:.0f}" text-anchor="middle" '
        f'transform="rotate(-90 12 {TOP + plot_h / 2:.0f})">{escape(y_label)}</text>',
    ]
    for tick in _ticks(y_low, y_high):
        y = _y(tick, y_low, y_high)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        parts.append(f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{_fmt(tick)}</text>')
    parts.append(
        f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" height="{plot_h}" fill="none" stroke="#999"/>'
    )
    return parts


def _y(value: float, low: float, high: float) -> float:
    plot_h = HEIGHT - TOP - BOTTOM
    span = (high - low) or 1.0
    return TOP + plot_h - (value - low) / span * plot_h


def _padded(values: Sequence[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    if math.isclose(low, high):
        pad = abs(low) * 0.1 or 1.0
        return low - pad, high + pad
    pad = (high - low) * 0.08
    return low - pad, high + pad


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]], *, title: str, x_label: str, y_label: str
) -> SafeString:
    """One line per series of (x, y) points, with a legend on the right."""
    points = [(x, y) for values in series.values() for x, y in values if y is not None and math.isfinite(y)]
    if not points:
        return mark_safe(f'<p class="registry-chart-empty">{escape(title)}: no data.</p>')
    xs = [p[0] for p in points]
    y_low, y_high = _padded([p[1] for p in points])
    x_low, x_high = min(xs), max(xs)
    x_span = (x_high - x_low) or 1.0
    plot_w = WIDTH - LEFT - RIGHT

    def x_of(x: float) -> float:
        return LEFT + (x - x_low) / x_span * plot_w if x_high > x_low else LEFT + plot_w / 2

    parts = _frame(title, x_label, y_label, y_low, y_high)
    for tick in sorted(set(xs)) if len(set(xs)) <= 12 else _ticks(x_low, x_high, 6):
        parts.append(f'<text x="{x_of(tick):.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle">{_fmt(tick)}</text>')
    for i, (name, values) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        clean = [(x, y) for x, y in values if y is not None and math.isfinite(y)]
        coords = " ".join(f"{x_of(x):.1f},{_y(y, y_low, y_high):.1f}" for x, y in clean)
        if len(clean) > 1:
            parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y in clean:
            parts.append(
                f'<circle cx="{x_of(x):.1f}" cy="{_y(y, y_low, y_high):.1f}" r="3" fill="{colour}">'
                f"<title>{escape(name)}: {_fmt(x)} → {y:.4g}</title></circle>"
            )
        legend_y = TOP + 12 + i * 16
        parts.append(f'<rect x="{WIDTH - RIGHT + 10}" y="{legend_y - 8}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{WIDTH - RIGHT + 24}" y="{legend_y + 1}">{escape(name)}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every label above is escaped


def interval_chart(items: Sequence[tuple[str, float, float, float]], *, title: str, y_label: str) -> SafeString:
    """One point per (label, value, low, high) with its interval as an error bar."""
    if not items:
        return mark_safe(f'<p class="registry-chart-empty">{escape(title)}: no data.</p>')
    y_low, y_high = _padded([v for _, value, low, high in items for v in (value, low, high)])
    y_low = max(0.0, y_low)
    parts = _frame(title, "arm", y_label, y_low, y_high)
    slot = (WIDTH - LEFT - RIGHT) / len(items)
    for i, (label, value, low, high) in enumerate(items):
        colour = COLOURS[i % len(COLOURS)]
        x = LEFT + slot * (i + 0.5)
        y_lo, y_hi, y_v = _y(low, y_low, y_high), _y(high, y_low, y_high), _y(value, y_low, y_high)
        stroke = f'stroke="{colour}" stroke-width="2"'
        parts += [
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y_lo:.1f}" y2="{y_hi:.1f}" {stroke}/>',
            f'<line x1="{x - 8:.1f}" x2="{x + 8:.1f}" y1="{y_lo:.1f}" y2="{y_lo:.1f}" {stroke}/>',
            f'<line x1="{x - 8:.1f}" x2="{x + 8:.1f}" y1="{y_hi:.1f}" y2="{y_hi:.1f}" {stroke}/>',
            f'<circle cx="{x:.1f}" cy="{y_v:.1f}" r="4" fill="{colour}">'
            f"<title>{escape(label)}: {value:.4f} [{low:.4f}, {high:.4f}]</title></circle>",
            f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle">{escape(label)}</text>',
        ]
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every label above is escaped
