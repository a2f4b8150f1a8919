"""Charts over time as inline SVG, drawn on the server (pure: no JavaScript, no CDN,
readable without colour: every bar has its number written on it or in its title)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

from markupsafe import Markup

#: Distinct for the common colour-blindnesses (Okabe–Ito), each series also named in
#: the legend and in every bar's title.
SERIES_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000")


@dataclass(frozen=True)
class Bucket:
    label: str
    start: datetime
    end: datetime  # exclusive


def buckets(start: datetime, end: datetime, most: int = 16) -> list[Bucket]:
    """``[start, end)`` cut into at most ``most`` equal steps of whole days (a day, a
    week, or as many days as needed), the last one shortened to end at ``end``."""
    days = max(1, (end - start).days)
    step = 1 if days <= most else 7 if days <= 7 * most else -(-days // most)
    out: list[Bucket] = []
    at = start
    while at < end:
        nxt = min(end, at + timedelta(days=step))
        last = nxt - timedelta(days=1)
        label = at.strftime("%d/%m") if step == 1 else f"{at:%d/%m}–{last:%d/%m}"
        out.append(Bucket(label, at, nxt))
        at = nxt
    return out


def bar_chart(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    unit: str = "",
    width: int = 640,
    height: int = 220,
    colours: Sequence[str] | None = None,
) -> Markup:
    """Stacked bars, one per label, one colour per series (``colours``, or distinct
    ones; legend below; each bar's title says series, label and value; the total is
    written over each bar)."""
    palette = list(colours or SERIES_COLOURS)
    n = max(1, len(labels))
    totals = [sum(values[i] for values in series.values()) for i in range(len(labels))]
    top = max([*totals, 1.0])
    left, bottom, pad = 36, 40, 18
    plot_h = height - bottom - pad
    slot = (width - left - 8) / n
    bar = max(4.0, slot * 0.7)
    parts = [
        f'<svg class="series-chart" role="img" viewBox="0 0 {width} {height + 18 * len(series)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
        f'<line x1="{left}" y1="{pad + plot_h}" x2="{width - 4}" y2="{pad + plot_h}" '
        'stroke="#333"/>',
        f'<text x="{left - 4}" y="{pad + 4}" text-anchor="end" font-size="11">'
        f"{_num(top)}{escape(unit)}</text>",
        f'<text x="{left - 4}" y="{pad + plot_h}" text-anchor="end" font-size="11">0</text>',
    ]
    for i, label in enumerate(labels):
        x = left + i * slot + (slot - bar) / 2
        y: float = pad + plot_h
        for k, (name, values) in enumerate(series.items()):
            v = values[i]
            if v <= 0:
                continue
            h = plot_h * v / top
            y -= h
            colour = palette[k % len(palette)]
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{colour}" stroke="#333" stroke-width="0.5">'
                f"<title>{escape(name)} · {escape(label)}: {_num(v)}{escape(unit)}</title></rect>"
            )
        if totals[i] > 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle" '
                f'font-size="11">{_num(totals[i])}</text>'
            )
        if n <= 16:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{pad + plot_h + 14}" text-anchor="middle" '
                f'font-size="10">{escape(label)}</text>'
            )
    for k, name in enumerate(series):
        y = height + 18 * k
        colour = palette[k % len(palette)]
        parts.append(
            f'<rect x="{left}" y="{y - 10}" width="12" height="12" fill="{colour}" stroke="#333"/>'
        )
        parts.append(f'<text x="{left + 18}" y="{y}" font-size="12">{escape(name)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _num(v: float) -> str:
    return f"{v:.0f}" if v == int(v) or v >= 100 else f"{v:.1f}"
