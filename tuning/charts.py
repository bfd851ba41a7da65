"""Small inline SVG charts for the adapter page (no JavaScript library, no build step)."""

from __future__ import annotations

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT, PAD = 420, 160, 28


def loss_svg(history: list) -> SafeString:
    """The training loss per step as a polyline (updated live by static/js/adapters.js)."""
    points = ""
    if history:
        steps = [s for s, _ in history]
        losses = [loss for _, loss in history]
        top, last = max(losses) or 1.0, max(steps[-1], 1)
        points = " ".join(
            f"{PAD + (WIDTH - 2 * PAD) * s / last:.1f},"
            f"{HEIGHT - PAD - (HEIGHT - 2 * PAD) * loss / top:.1f}"
            for s, loss in history
        )
    return format_html(
        '<svg class="chart loss" viewBox="0 0 {w} {h}" role="img" '
        'aria-label="Training loss by step">'
        '<line x1="{p}" y1="{b}" x2="{r}" y2="{b}" class="axis"/>'
        '<line x1="{p}" y1="{p}" x2="{p}" y2="{b}" class="axis"/>'
        '<polyline points="{pts}" class="line"/>'
        '<text x="{p}" y="{t}" class="label">loss</text>'
        '<text x="{r}" y="{u}" class="label" text-anchor="end">step</text></svg>',
        w=WIDTH,
        h=HEIGHT,
        p=PAD,
        b=HEIGHT - PAD,
        r=WIDTH - PAD,
        pts=points,
        t=PAD - 8,
        u=HEIGHT - 8,
    )


def accuracy_svg(heldout: dict) -> SafeString:
    """Held-out accuracy of the base model, the adapter and RAG, side by side as bars."""
    bars = [
        ("Base model", heldout.get("base")),
        ("Adapter", heldout.get("adapter")),
        ("RAG", heldout.get("rag")),
        ("Hybrid", heldout.get("hybrid")),
        ("Control", heldout.get("rag_short")),
    ]
    if all(v is None for _, v in bars):
        return mark_safe("")
    slot = (WIDTH - 2 * PAD) / len(bars)
    body = format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}" class="bar bar-{}"/>'
        '<text x="{}" y="{}" text-anchor="middle" class="value">{}</text>'
        '<text x="{}" y="{}" text-anchor="middle" class="label">{}</text>',
        (
            (
                f"{PAD + i * slot + slot * 0.2:.1f}",
                f"{HEIGHT - PAD - (HEIGHT - 2 * PAD) * (v or 0):.1f}",
                f"{slot * 0.6:.1f}",
                f"{(HEIGHT - 2 * PAD) * (v or 0):.1f}",
                i,
                f"{PAD + (i + 0.5) * slot:.1f}",
                f"{HEIGHT - PAD - (HEIGHT - 2 * PAD) * (v or 0) - 4:.1f}",
                "n/a" if v is None else f"{v:.0%}",
                f"{PAD + (i + 0.5) * slot:.1f}",
                f"{HEIGHT - 8}",
                name,
            )
            for i, (name, v) in enumerate(bars)
        ),
    )
    return format_html(
        '<svg class="chart accuracy" viewBox="0 0 {} {}" role="img" '
        'aria-label="Held-out accuracy: base model, adapter, RAG, hybrid and its control">{}'
        '<line x1="{}" y1="{}" x2="{}" y2="{}" class="axis"/></svg>',
        WIDTH,
        HEIGHT,
        body,
        PAD,
        HEIGHT - PAD,
        WIDTH - PAD,
        HEIGHT - PAD,
    )
