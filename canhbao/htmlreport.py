"""A self-contained HTML backtest report: per station and metric, the series, the
rule's levels as dashed lines, and the warning periods shaded by level."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from html import escape

from alerting import palette
from pipeline.backtest import BacktestResult
from pipeline.rules.loader import RuleSet
from topics.models import Reading, Warning

W, H, PAD = 900, 260, 48
COLOURS = {1: "#f6d55c", 2: "#ed9a3c", 3: "#d9412f", 4: "#8e1b4f", 5: "#4a0f2b"}


def _chart(
    title: str,
    points: list[tuple[datetime, float]],
    levels: list[tuple[str, float]],
    periods: list[tuple[datetime, datetime, int]],
) -> str:
    t0, t1 = points[0][0].timestamp(), points[-1][0].timestamp()
    span = max(t1 - t0, 1.0)
    values = [v for _, v in points] + [v for _, v in levels]
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 or 1.0
    lo, hi = lo - pad, hi + pad

    def x(t: datetime) -> float:
        return PAD + (t.timestamp() - t0) / span * (W - 2 * PAD)

    def y(v: float) -> float:
        return H - PAD + 0 - (v - lo) / (hi - lo) * (H - 2 * PAD)

    parts = [f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img">']
    for start, end, level in periods:
        parts.append(
            f'<rect x="{x(start):.1f}" y="{PAD}" width="{max(x(end) - x(start), 1):.1f}" '
            f'height="{H - 2 * PAD}" fill="{COLOURS.get(level, "#999")}" opacity="0.35">'
            f"<title>level {level}: {start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M}</title></rect>"
        )
    for name, value in levels:
        parts.append(
            f'<line x1="{PAD}" x2="{W - PAD}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            f'stroke="#555" stroke-dasharray="6 4"/>'
            f'<text x="{W - PAD + 4}" y="{y(value) + 4:.1f}" font-size="11">{escape(name)} '
            f"{value:g}</text>"
        )
    path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
    parts.append(f'<polyline fill="none" stroke="#1f5fa8" stroke-width="1.5" points="{path}"/>')
    parts.append(
        f'<text x="{PAD}" y="{H - 12}" font-size="11">{points[0][0]:%Y-%m-%d %H:%M}</text>'
        f'<text x="{W - PAD}" y="{H - 12}" font-size="11" text-anchor="end">'
        f"{points[-1][0]:%Y-%m-%d %H:%M}</text>"
        f'<text x="{PAD - 6}" y="{y(hi - pad):.1f}" font-size="11" text-anchor="end">'
        f"{hi - pad:.4g}</text>"
        f'<text x="{PAD - 6}" y="{y(lo + pad):.1f}" font-size="11" text-anchor="end">'
        f"{lo + pad:.4g}</text>"
    )
    parts.append("</svg>")
    return f"<h2>{escape(title)}</h2>" + "".join(parts)


def _periods(warnings: list[Warning], end: datetime) -> list[tuple[datetime, datetime, int]]:
    out = []
    for cur, nxt in zip(warnings, [*warnings[1:], None], strict=False):
        if cur.level > 0:
            out.append((cur.updated_at, nxt.updated_at if nxt else end, cur.level))
    return out


def _risk_row(warnings: list[Warning], start: datetime, end: datetime) -> str:
    """The official disaster risk level over time, below a chart on the same time axis:
    each period in its Appendix XII colour with its number written on it, and a legend
    naming every level (alerting/palette.py). Empty when no state has a risk level."""
    periods = [
        (cur.updated_at, nxt.updated_at if nxt else end, cur.risk_level)
        for cur, nxt in zip(warnings, [*warnings[1:], None], strict=False)
        if cur.risk_level is not None
    ]
    if not periods:
        return ""
    span = max((end - start).total_seconds(), 1.0)

    def x(t: datetime) -> float:
        return PAD + max(0.0, min(1.0, (t - start).total_seconds() / span)) * (W - 2 * PAD)

    height = 22
    parts = [f'<svg viewBox="0 0 {W} {height}" width="{W}" height="{height}" role="img">']
    for t0, t1, level in periods:
        c = palette.of(level)
        x0, width = x(t0), max(x(t1) - x(t0), 1.0)
        parts.append(
            f'<rect x="{x0:.1f}" y="2" width="{width:.1f}" height="{height - 4}" fill="{c.hex}">'
            f"<title>{escape(palette.label(level, 'en'))}: {t0:%Y-%m-%d %H:%M} → "
            f"{t1:%Y-%m-%d %H:%M}</title></rect>"
        )
        if width > 14:
            parts.append(
                f'<text x="{x0 + width / 2:.1f}" y="{height - 7}" font-size="11" '
                f'text-anchor="middle" fill="{c.text}">{level}</text>'
            )
    parts.append(
        f'<text x="{PAD - 6}" y="{height - 7}" font-size="11" text-anchor="end">risk</text></svg>'
    )
    return (
        "".join(parts)
        + "<p style='font-size:12px'>Disaster risk level (Decision 18/2021/QĐ-TTg): "
        + str(palette.legend_html("en"))
        + "</p>"
    )


def render(readings: list[Reading], rules: RuleSet, result: BacktestResult) -> str:
    series: dict[tuple[str, str], list[tuple[datetime, float]]] = defaultdict(list)
    for rd in sorted(readings, key=lambda x: x.observed_at):
        series[(rd.station_id, rd.metric)].append((rd.observed_at, rd.value))
    by_subject: dict[str, list[Warning]] = defaultdict(list)
    for w in result.warnings:
        by_subject[w.warning_id].append(w)
    sections = []
    for (station, metric), points in sorted(series.items()):
        if len(points) < 2:
            continue
        chart_rules = [
            r
            for r in rules.rules
            if r.selector.metric == metric
            and r.condition.kind == "threshold"
            and (r.selector.station in (None, station))
        ]
        levels = [(f"{lv.name}", lv.value) for r in chart_rules[:1] for lv in r.levels]
        periods = []
        for r in chart_rules:
            periods += _periods(by_subject.get(f"{r.id}:{station}", []), points[-1][0])
        sections.append(_chart(f"{station} — {metric}", points, levels, periods))
        for r in chart_rules:
            states = by_subject.get(f"{r.id}:{station}", [])
            sections.append(_risk_row(states, points[0][0], points[-1][0]))
    rows = "".join(
        f"<tr><td>{escape(t['at'])}</td><td>{escape(t['rule'])}</td><td>{escape(t['subject'])}"
        f"</td><td>{escape(t['transition'])}</td><td>{t['level']}</td>"
        f"<td>{t['risk_level'] or ''}</td></tr>"
        for t in sorted(result.transitions(), key=lambda t: t["at"])
    )
    summary = "".join(
        f"<tr><td>{escape(s.rule)}</td><td>{s.raised}</td><td>{s.flaps}</td><td>"
        + ", ".join(f"{escape(k)}: {v:.1f} h" for k, v in sorted(s.time_at_level.items()))
        + "</td></tr>"
        for s in result.summaries.values()
    )
    return (
        "<!doctype html><html lang='en'><meta charset='utf-8'>"
        f"<title>canhbao backtest {escape(result.version)}</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1000px}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}</style>"
        f"<h1>Backtest of rule set {escape(result.version)}</h1>"
        f"<p>{len(readings)} readings from {result.start} to {result.end}; "
        f"rejected by the quality gate: "
        + (", ".join(f"{k.value} {v}" for k, v in result.rejected.items()) or "none")
        + "</p><table><tr><th>rule</th><th>raised</th><th>flaps</th><th>time at level</th></tr>"
        + summary
        + "</table>"
        + "".join(sections)
        + "<h2>Transitions</h2><table><tr><th>at</th><th>rule</th><th>subject</th>"
        "<th>transition</th><th>level</th><th>risk level</th></tr>" + rows + "</table></html>"
    )
