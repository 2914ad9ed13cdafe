"""Server-rendered SVG charts for the admin (no script, nothing loaded from elsewhere)."""

from __future__ import annotations

from django.utils.html import escape

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]


def _scale(values: list[float], lo_px: float, hi_px: float):
    lo, hi = min(values), max(values)
    if hi == lo:
        hi, lo = hi + 1, lo - 1
    return lambda v: lo_px + (v - lo) / (hi - lo) * (hi_px - lo_px), lo, hi


def line_chart(
    series: dict[str, list[tuple[float, float, float | None, float | None]]],
    *,
    width: int = 720,
    height: int = 260,
    y_label: str = "",
    x_label: str = "",
    percent: bool = True,
    zero_line: bool = True,
) -> str:
    """Lines (x, y) per series, each with an optional band (low, high) drawn under it."""
    points = [p for rows in series.values() for p in rows]
    if not points:
        return '<p class="help">No data yet.</p>'
    left, right, top, bottom = 60, width - 10, 10, height - 30
    xs = [p[0] for p in points]
    ys = [v for p in points for v in (p[1], p[2], p[3]) if v is not None] + ([0.0] if zero_line else [])
    fx, _, _ = _scale(xs, left, right)
    fy, y0, y1 = _scale(ys, bottom, top)
    sign = "+" if zero_line else ""  # a lift has a sign; a share does not
    fmt = (lambda v: f"{v:{sign}.1%}") if percent else (lambda v: f"{v:.2f}")
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(y_label)}" style="font:11px sans-serif;background:#fff">',
        f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#999"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#999"/>',
        f'<text x="4" y="{top + 10}">{escape(fmt(y1))}</text>',
        f'<text x="4" y="{bottom}">{escape(fmt(y0))}</text>',
        f'<text x="{left}" y="{height - 8}">{escape(x_label)}</text>',
    ]
    if zero_line and y0 < 0 < y1:
        parts.append(
            f'<line x1="{left}" y1="{fy(0):.1f}" x2="{right}" y2="{fy(0):.1f}" stroke="#555" stroke-dasharray="4 3"/>'
        )
    for n, (name, rows) in enumerate(series.items()):
        colour = COLOURS[n % len(COLOURS)]
        rows = sorted(rows)
        band = [(x, lo, hi) for x, _, lo, hi in rows if lo is not None and hi is not None]
        if band:
            upper = " ".join(f"{fx(x):.1f},{fy(hi):.1f}" for x, _, hi in band)
            lower = " ".join(f"{fx(x):.1f},{fy(lo):.1f}" for x, lo, _ in reversed(band))
            parts.append(f'<polygon points="{upper} {lower}" fill="{colour}" fill-opacity="0.15" stroke="none"/>')
        line = " ".join(f"{fx(x):.1f},{fy(y):.1f}" for x, y, _, _ in rows)
        parts.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y, _, _ in rows:
            parts.append(f'<circle cx="{fx(x):.1f}" cy="{fy(y):.1f}" r="2.5" fill="{colour}"/>')
        parts.append(f'<text x="{left + 8 + 140 * n}" y="{top + 12}" fill="{colour}">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def split_bar(allocation: list[tuple[str, int]], *, width: int = 600, height: int = 28) -> str:
    """A bar of the 10,000 buckets: each variant's share (and what is outside the experiment)."""
    total = sum(n for _, n in allocation) or 1
    x = 0.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" style="font:11px sans-serif">']
    for n, (name, count) in enumerate(allocation):
        w = width * count / total
        colour = "#ddd" if name == "" else COLOURS[n % len(COLOURS)]
        parts.append(f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="{height}" fill="{colour}"/>')
        if w > 40:
            label = escape(f"{name or 'not in experiment'} {count / total:.0%}")
            parts.append(f'<text x="{x + 4:.1f}" y="{height / 2 + 4}" fill="#fff">{label}</text>')
        x += w
    parts.append("</svg>")
    return "".join(parts)
