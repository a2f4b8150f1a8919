"""The latency-against-load chart as a self-contained SVG (GitHub shows it inline).

x: offered readings/s; y: produce → webhook latency on a log scale (a cliff spans
orders of magnitude); p50 and p99 lines, the measured capacity, 80 % of it, and the
250 ms goal."""

from __future__ import annotations

import math
from typing import Any
from xml.sax.saxutils import escape

W, H = 720, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 50, 60


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def latency_svg(r: dict[str, Any], goal_ms: float = 250.0) -> str:
    loads = [x for x in r["latency"] if _finite(x["p50_ms"]) and _finite(x["p99_ms"])]
    cap = r.get("capacity_readings_per_second")
    xmax = max([x["offered_per_second"] for x in loads] + [cap or 0, 1]) * 1.08
    lo = 10.0
    hi = max([goal_ms * 2, *(x["p99_ms"] for x in loads)]) * 1.3
    lo = min(lo, *(max(1.0, x["p50_ms"]) for x in loads)) if loads else lo
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def px(v: float) -> float:
        return float(LEFT + pw * v / xmax)

    def py(ms: float) -> float:
        ms = max(ms, lo)
        return TOP + ph * (
            1 - (math.log10(ms) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
        )

    m = r.get("machine", {})
    where = f"{r.get('broker', '?')}, {m.get('cpus', '?')} CPUs, {r.get('when', '')[:10]}"
    title = f"canhbao bench — produce → webhook latency against offered load ({where})"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="13">{escape(title)}</text>',
        f'<line x1="{LEFT}" y1="{TOP + ph}" x2="{LEFT + pw}" y2="{TOP + ph}" stroke="black"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + ph}" stroke="black"/>',
    ]
    # y ticks: powers of ten and their halves' neighbours (10, 20, 50, 100, ...)
    decade = 10 ** math.floor(math.log10(lo))
    while decade <= hi:
        for k in (1, 2, 5):
            v = decade * k
            if lo <= v <= hi:
                y = py(v)
                out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + pw}" y2="{y:.1f}" '
                           'stroke="#ddd"/>')  # fmt: skip
                out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{v:g}</text>')
        decade *= 10
    step = 10 ** math.floor(math.log10(xmax / 2)) if xmax > 2 else 1
    if xmax / step > 10:
        step *= 2
    v = 0.0
    while v <= xmax:
        x = px(v)
        out.append(f'<line x1="{x:.1f}" y1="{TOP + ph}" x2="{x:.1f}" y2="{TOP + ph + 5}" '
                   'stroke="black"/>')  # fmt: skip
        out.append(f'<text x="{x:.1f}" y="{TOP + ph + 18}" text-anchor="middle">{v:,.0f}</text>')
        v += step
    out.append(f'<text x="{LEFT + pw / 2}" y="{H - 18}" text-anchor="middle">'
               "offered readings/s</text>")  # fmt: skip
    out.append(f'<text x="16" y="{TOP + ph / 2}" text-anchor="middle" '
               f'transform="rotate(-90 16 {TOP + ph / 2})">latency, ms (log)</text>')  # fmt: skip
    gy = py(goal_ms)
    out.append(f'<line x1="{LEFT}" y1="{gy:.1f}" x2="{LEFT + pw}" y2="{gy:.1f}" '
               'stroke="#2a2" stroke-dasharray="6 4"/>')  # fmt: skip
    out.append(f'<text x="{LEFT + pw - 4}" y="{gy - 5:.1f}" text-anchor="end" fill="#2a2">'
               f"goal: p99 ≤ {goal_ms:g} ms</text>")  # fmt: skip
    if cap:
        for value, label, dy in ((cap, "capacity", 12), (0.8 * cap, "80 %", 28)):
            x = px(value)
            out.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + ph}" '
                       'stroke="#888" stroke-dasharray="4 4"/>')  # fmt: skip
            out.append(f'<text x="{x + 4:.1f}" y="{TOP + dy}" fill="#555">{label} '
                       f"{value:,.0f}/s</text>")  # fmt: skip
    for key, colour, name in (("p50_ms", "#1f5fbf", "p50"), ("p99_ms", "#c0392b", "p99")):
        points = " ".join(f"{px(x['offered_per_second']):.1f},{py(x[key]):.1f}" for x in loads)
        if points:
            out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" '
                       'stroke-width="2"/>')  # fmt: skip
        for x in loads:
            out.append(f'<circle cx="{px(x["offered_per_second"]):.1f}" cy="{py(x[key]):.1f}" '
                       f'r="3" fill="{colour}"><title>{name} {x[key]:g} ms at '
                       f'{x["offered_per_second"]:,}/s</title></circle>')  # fmt: skip
    out.append(f'<text x="{LEFT + 10}" y="{TOP + ph - 24}" fill="#c0392b">— p99</text>')
    out.append(f'<text x="{LEFT + 10}" y="{TOP + ph - 8}" fill="#1f5fbf">— p50</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
