"""Charts for the admin, drawn on the server as inline SVG (no JavaScript, nothing from a CDN).

Decision 0021: a few hundred bytes of SVG per chart, readable without scripts, testable as text,
accessible (``role="img"`` with a label and a ``<title>`` per mark for the exact figure).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.utils.html import escape

PALETTE = ["#417690", "#e08f24", "#5b9a44", "#b5485d", "#7c5ba6", "#3e9a9a", "#9a7b3e", "#666666"]


def _svg(width: int, height: int, label: str, body: str) -> str:
    return (
        f'<svg class="cdp-chart" viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMinYMin meet" '
        f'role="img" aria-label="{escape(label)}" style="max-width:{width}px">{body}</svg>'
    )


def stacked_bars(
    buckets: Sequence[datetime],
    series: dict[str, Sequence[float]],
    *,
    label: str,
    width: int = 560,
    height: int = 150,
    time_format: str = "%H:%M",
) -> str:
    """Stacked bars: one bar per bucket, one colour per series (a legend below names them)."""
    n = len(buckets)
    if not n:
        return '<p class="cdp-empty">No data.</p>'
    totals = [sum(values[i] for values in series.values()) for i in range(n)]
    top = max(totals) or 1
    pad_l, pad_b, pad_t = 34, 18, 6
    plot_w, plot_h = width - pad_l - 4, height - pad_b - pad_t
    bar_w = plot_w / n
    parts = [
        f'<line x1="{pad_l}" y1="{pad_t + plot_h}" x2="{width - 4}" y2="{pad_t + plot_h}" stroke="#ccc"/>',
        f'<text x="{pad_l - 4}" y="{pad_t + 9}" font-size="10" text-anchor="end">{_num(top)}</text>',
        f'<text x="{pad_l - 4}" y="{pad_t + plot_h}" font-size="10" text-anchor="end">0</text>',
    ]
    for i, at in enumerate(buckets):
        y = pad_t + plot_h
        for s, (name, values) in enumerate(series.items()):
            value = values[i]
            if not value:
                continue
            h = value / top * plot_h
            y -= h
            parts.append(
                f'<rect x="{pad_l + i * bar_w + 0.5:.1f}" y="{y:.1f}" width="{max(bar_w - 1, 0.8):.1f}" '
                f'height="{h:.1f}" fill="{PALETTE[s % len(PALETTE)]}"><title>{escape(name)} '
                f"{at.strftime(time_format)}: {_num(value)}</title></rect>"
            )
    for i in (0, n // 2, n - 1):
        anchor = "start" if i == 0 else ("end" if i == n - 1 else "middle")
        x = pad_l + (i + (1 if i == n - 1 else 0.5 if i else 0)) * bar_w
        parts.append(
            f'<text x="{x:.1f}" y="{height - 4}" font-size="10" text-anchor="{anchor}">'
            f"{buckets[i].strftime(time_format)}</text>"
        )
    return _svg(width, height, label, "".join(parts)) + legend(list(series))


def legend(names: Sequence[str]) -> str:
    if not names:
        return ""
    items = "".join(
        f'<span><i style="background:{PALETTE[i % len(PALETTE)]}"></i>{escape(name)}</span>'
        for i, name in enumerate(names)
    )
    return f'<div class="cdp-legend">{items}</div>'


def sparkline(values: Sequence[float], *, label: str, width: int = 120, height: int = 28) -> str:
    """A small trend line; a single value is drawn as a dot with a flat line, never an empty box."""
    if not values:
        return ""
    top, low = max(values), min(values)
    span = (top - low) or 1
    if len(values) == 1:
        y = height / 2
        body = (
            f'<line x1="2" y1="{y}" x2="{width - 2}" y2="{y}" stroke="#9bb7c6" stroke-dasharray="3 3"/>'
            f'<circle cx="{width / 2}" cy="{y}" r="3" fill="#417690"><title>{_num(values[0])}</title></circle>'
        )
        return _svg(width, height, label, body)
    step = (width - 4) / (len(values) - 1)
    points = " ".join(
        f"{2 + i * step:.1f},{height - 3 - (v - low) / span * (height - 6):.1f}" for i, v in enumerate(values)
    )
    last_x, last_y = 2 + (len(values) - 1) * step, height - 3 - (values[-1] - low) / span * (height - 6)
    body = (
        f'<polyline fill="none" stroke="#417690" stroke-width="1.5" points="{points}"/>'
        f'<circle cx="{last_x:.1f}" cy="{last_y:.1f}" r="2.5" fill="#417690"><title>{_num(values[-1])}</title></circle>'
    )
    return _svg(width, height, label, body)


def _num(value: float) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.2f}" if abs(value) < 1 else f"{value:,.1f}"
    return f"{int(value):,}"
