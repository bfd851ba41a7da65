"""Server-rendered SVG charts for the compliance dashboard: no JavaScript, no build step.

Each chart is an <svg role="img"> with a <title> and a <desc> that states the figures in words,
and every bar or point carries its own <title> (a tooltip, and what a screen reader reads).
The dashboard also shows the same numbers as tables.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

PALETTE = ("#2563eb", "#059669", "#d97706", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#65a30d")
W, H = 460, 220
LEFT, RIGHT, TOP, BOTTOM = 40, 8, 16, 26  # LEFT: the least room for the value axis's labels
CHAR_W, TICK_GAP = 7.5, 6  # a 12px tick's widest character (a digit); label to plot gap
_ids = itertools.count(1)


def _nice_max(value: float) -> float:
    """The axis top: four ticks of a round step (1, 2, 2.5 or 5 times a power of ten)."""
    if value <= 0:
        return 4
    raw = value / 4
    exp = 10 ** math.floor(math.log10(raw))
    for step in (1, 2, 2.5, 5, 10):
        if raw <= step * exp:
            return 4 * step * exp
    return 40 * exp  # not reached


def _fmt(value: float, digits: int | None = None) -> str:
    if digits is not None:
        return f"{value:,.{digits}f}"
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:,.1f}"


def _frame(title: str, desc: str, body: list[str], legend: list[tuple[str, str]]) -> SafeString:
    n = next(_ids)
    legend_html = "".join(
        # An SVG fill, not a style attribute: the Content Security Policy allows no inline style.
        f'<li><svg class="swatch" viewBox="0 0 1 1" aria-hidden="true">'
        f'<rect width="1" height="1" fill="{color}"/></svg>{escape(label)}</li>'
        for label, color in legend
    )
    svg = (
        f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" '
        f'aria-labelledby="chart{n}-title chart{n}-desc" preserveAspectRatio="xMidYMid meet">'
        f'<title id="chart{n}-title">{escape(title)}</title>'
        f'<desc id="chart{n}-desc">{escape(desc)}</desc>{"".join(body)}</svg>'
    )
    legend_list = f'<ul class="legend">{legend_html}</ul>' if legend else ""
    return mark_safe(svg + legend_list)  # noqa: S308 - every text inside is escaped above


def _ticks(top: float) -> list[str]:
    """The value axis's five labels, bottom to top."""
    return [_fmt(top * i / 4) for i in range(5)]


def _left(top: float) -> float:
    """Where the plot starts: room for the longest value label ("10,000" needs more than "40")."""
    longest = max(len(label) for label in _ticks(top))
    return max(LEFT, math.ceil(longest * CHAR_W + TICK_GAP + 2))


def _axes(top: float, days: list[dt.date], unit: str, left: float = LEFT) -> list[str]:
    body = []
    plot_h = H - TOP - BOTTOM
    for i, label in enumerate(_ticks(top)):
        y = TOP + plot_h - plot_h * i / 4
        body.append(
            f'<line x1="{left}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{left - TICK_GAP}" y="{y + 4:.1f}" text-anchor="end" class="tick">'
            f"{escape(label)}</text>"
        )
    if unit:
        body.append(f'<text x="{left + 4}" y="{TOP - 5}" class="tick">{escape(unit)}</text>')
    step = max(1, math.ceil(len(days) / 10))
    slot = (W - left - RIGHT) / max(len(days), 1)
    for i, day in enumerate(days):
        if i % step == 0:
            # Centred under its day, but never past the right edge (the last of 28 days).
            x = min(left + slot * (i + 0.5), W - 2.5 * CHAR_W)
            body.append(
                f'<text x="{x:.1f}" y="{H - 8}" text-anchor="middle" class="tick">'
                f"{day:%m-%d}</text>"
            )
    return body


def stacked_bars(
    title: str,
    days: list[dt.date],
    series: dict[str, dict[dt.date, float]],
    unit: str = "",
    colors: dict[str, str] | None = None,
) -> SafeString:
    """Bars per day, stacked by series (roles, routes)."""
    totals = [sum(s.get(d, 0) for s in series.values()) for d in days]
    top = _nice_max(max(totals, default=0))
    left = _left(top)
    plot_h = H - TOP - BOTTOM
    slot = (W - left - RIGHT) / max(len(days), 1)
    body = _axes(top, days, unit, left)
    legend = []
    colors = dict(zip(series, itertools.cycle(PALETTE), strict=False)) | (colors or {})
    base = [0.0] * len(days)
    for name, values in series.items():
        legend.append((name, colors[name]))
        for i, day in enumerate(days):
            value = values.get(day, 0)
            if not value:
                continue
            h = plot_h * value / top
            y = TOP + plot_h - plot_h * base[i] / top - h
            body.append(
                f'<rect x="{left + slot * i + slot * 0.15:.1f}" y="{y:.1f}" '
                f'width="{slot * 0.7:.1f}" height="{h:.1f}" fill="{colors[name]}">'
                f"<title>{day:%Y-%m-%d} {escape(name)}: {escape(_fmt(value))}</title></rect>"
            )
            base[i] += value
    desc = ", ".join(
        f"{escape(name)} {escape(_fmt(sum(values.values())))}" for name, values in series.items()
    )
    desc = f"Totals over {len(days)} days: {desc or 'nothing recorded'}."
    return _frame(title, desc, body, legend)


def lines(
    title: str, days: list[dt.date], series: dict[str, dict[dt.date, float]], unit: str = ""
) -> SafeString:
    """One line per series, with a dot per day that has a value."""
    top = _nice_max(max((v for s in series.values() for v in s.values()), default=0))
    left = _left(top)
    plot_h = H - TOP - BOTTOM
    slot = (W - left - RIGHT) / max(len(days), 1)
    body = _axes(top, days, unit, left)
    legend = []
    for (name, values), color in zip(series.items(), itertools.cycle(PALETTE), strict=False):
        legend.append((name, color))
        points = []
        for i, day in enumerate(days):
            if day not in values:
                continue
            x, y = left + slot * (i + 0.5), TOP + plot_h - plot_h * values[day] / top
            points.append(f"{x:.1f},{y:.1f}")
            body.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}">'
                f"<title>{day:%Y-%m-%d} {escape(name)}: {escape(_fmt(values[day]))} "
                f"{escape(unit)}</title></circle>"
            )
        if len(points) > 1:
            body.insert(
                len(body) - len(points),
                f'<polyline fill="none" stroke="{color}" stroke-width="2" '
                f'points="{" ".join(points)}"/>',
            )
    summary = ", ".join(
        f"{escape(name)} median of days {escape(_fmt(sorted(v.values())[len(v) // 2]))}"
        for name, v in series.items()
        if v
    )
    return _frame(title, f"{summary or 'Nothing recorded'}.", body, legend)


def share(
    title: str,
    days: list[dt.date],
    counts: dict[dt.date, tuple[int, int]],
    label: str,
    color: str = PALETTE[1],
) -> SafeString:
    """One line of a daily share in percent, on a fixed 0-100 % axis.

    `counts` maps a day to (of how many, how many): the dot's tooltip says both; a day with none
    has no dot.
    """
    top = 100.0
    left = _left(top)
    plot_h = H - TOP - BOTTOM
    slot = (W - left - RIGHT) / max(len(days), 1)
    body = _axes(top, days, "%", left)
    points, dots = [], []
    for i, day in enumerate(days):
        total, part = counts.get(day, (0, 0))
        if not total:
            continue
        percent = 100 * part / total
        x, y = left + slot * (i + 0.5), TOP + plot_h - plot_h * percent / top
        points.append(f"{x:.1f},{y:.1f}")
        dots.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}">'
            f"<title>{day:%Y-%m-%d} {escape(label)}: {percent:.1f} % "
            f"({part:,} of {total:,})</title></circle>"
        )
    if len(points) > 1:
        body.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{" ".join(points)}"/>'
        )
    body += dots
    total = sum(t for t, _ in counts.values())
    part = sum(p for _, p in counts.values())
    desc = (
        f"Over {len(days)} days: {label} {100 * part / total:.1f} % ({part:,} of {total:,})."
        if total
        else "Nothing recorded."
    )
    return _frame(title, desc, body, [(label, color)])


def hbars(
    title: str, items: list[tuple[str, float]], unit: str = "", digits: int | None = None
) -> SafeString:
    """Horizontal bars, one per labelled item (usage per role and route)."""
    row_h = 26
    height = TOP + row_h * max(len(items), 1) + 10
    top = _nice_max(max((v for _, v in items), default=0))
    label_w = 170
    body = []
    for i, ((label, value), color) in enumerate(zip(items, itertools.cycle(PALETTE), strict=False)):
        y = TOP + row_h * i
        w = (W - label_w - 100) * value / top
        body.append(
            f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end" class="tick">'
            f"{escape(label)}</text>"
            f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" fill="{color}">'
            f"<title>{escape(label)}: {escape(_fmt(value, digits))} {escape(unit)}</title></rect>"
            f'<text x="{label_w + w + 6:.1f}" y="{y + 16}" class="tick">'
            f"{escape(_fmt(value, digits))} {escape(unit)}</text>"
        )
    n = next(_ids)
    desc = "; ".join(f"{label}: {_fmt(value, digits)} {unit}" for label, value in items)
    desc = desc or "Nothing recorded."
    svg = (
        f'<svg class="chart" viewBox="0 0 {W} {height}" role="img" '
        f'aria-labelledby="chart{n}-title chart{n}-desc">'
        f'<title id="chart{n}-title">{escape(title)}</title>'
        f'<desc id="chart{n}-desc">{escape(desc)}</desc>{"".join(body)}</svg>'
    )
    return mark_safe(svg)  # noqa: S308 - every text inside is escaped above
