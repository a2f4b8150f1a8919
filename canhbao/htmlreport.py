"""A self-contained HTML backtest report: per station and metric, the series with
axis ticks and units, the levels of the rules that watch it, the readings the
quality gate set aside (marked, and kept out of the axis range so that one absurd
value cannot flatten the curve), and the warning periods of each rule set as bands
under the chart (two bands with ``--compare``)."""

from __future__ import annotations

import itertools
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

from alerting import palette
from pipeline.backtest import BacktestResult, Flapping
from pipeline.quality import Check
from pipeline.rules.loader import RuleSet
from topics.ids import warning_id
from topics.models import Reading, Warning

W = 960
LEFT, RIGHT, TOP = 70, 120, 16
PLOT_H = 230
BAND_H, BAND_GAP = 16, 6
AXIS_H = 34
COLOURS = {1: "#f6d55c", 2: "#ed9a3c", 3: "#d9412f", 4: "#8e1b4f", 5: "#4a0f2b"}
NOTICE = "#8a8a8a"
SERIES = "#1f5fa8"
REJECTED = "#c0392b"
NOTICE_HAZARDS = {"sensor_fault", "data_gap"}
# Readings carry their unit when the feed sent one; history files often do not, so
# fall back on the metric's name (the project names metrics by their unit).
SUFFIX_UNITS = (
    ("_ugm3", "µg/m³"),
    ("_mm", "mm"),
    ("_m", "m"),
    ("_hz", "Hz"),
    ("_pct", "%"),
    ("_days", "days"),
    ("_weekly", "cases/week"),
    ("_daily", "visits/day"),
)
TIME_STEPS = [
    timedelta(minutes=m) for m in (1, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080)
]


@dataclass(frozen=True)
class RuleSetRun:
    """One rule set's backtest, as the report shows it."""

    label: str  # "a", "b": short, for the bands and tables
    name: str  # where the rules came from
    rules: RuleSet
    result: BacktestResult


def unit_of(metric: str, readings: list[Reading]) -> str:
    units = {r.unit for r in readings if r.unit}
    if len(units) == 1:
        return units.pop()
    if metric == "vn_aqi":
        return "VN_AQI"
    for suffix, unit in SUFFIX_UNITS:
        if metric.endswith(suffix):
            return unit
    return ""


def nice_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten) covering ``lo``..``hi``."""
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    v = first
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 10))
        v += step
    return ticks


def time_ticks(t0: datetime, t1: datetime, count: int = 10) -> tuple[list[datetime], str]:
    """Tick instants at a round step in the data's own time zone, and their format."""
    span = (t1 - t0).total_seconds()
    step = next((s for s in TIME_STEPS if span / s.total_seconds() <= count), TIME_STEPS[-1])
    seconds = int(step.total_seconds())
    local = t0
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    offset = (local - midnight).total_seconds()
    first = midnight + timedelta(seconds=math.ceil(offset / seconds) * seconds)
    ticks = []
    t = first
    while t <= t1:
        ticks.append(t)
        t += step
    fmt = "%d/%m" if seconds >= 86400 else "%d/%m %H:%M"
    return ticks, fmt


def _zone(t: datetime) -> str:
    offset = t.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _fmt(v: float) -> str:
    return f"{v:.10g}"


def _spread(ys: list[float], minimum: float = 13.0) -> list[float]:
    """Label positions at least ``minimum`` px apart, as close to ``ys`` as possible."""
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    placed = [0.0] * len(ys)
    last = -math.inf
    for i in order:
        placed[i] = max(ys[i], last + minimum)
        last = placed[i]
    return placed


def _periods(warnings: list[Warning], end: datetime) -> list[tuple[datetime, datetime, Warning]]:
    out = []
    for cur, nxt in zip(warnings, [*warnings[1:], None], strict=True):
        if cur.level > 0:
            out.append((cur.updated_at, nxt.updated_at if nxt else end, cur))
    return out


def _chart_rules(rules: RuleSet, station: str, metric: str) -> list[str]:
    return [
        r.id
        for r in rules.rules
        if r.levelled
        and r.condition.kind == "threshold"
        and r.selector.metric == metric
        and r.selector.station in (None, station)
        and (r.selector.stations is None or station in r.selector.stations)
    ]


def _levels(rules: RuleSet, ids: list[str]) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    for rule_id in ids[:1]:
        rule = rules.get(rule_id)
        if rule is not None:
            out += [(lv.name, lv.value) for lv in rule.levels]
    return out


def _chart(
    station: str,
    metric: str,
    accepted: list[Reading],
    set_aside: list[tuple[Reading, Check]],
    runs: list[RuleSetRun],
    t0: datetime,
    t1: datetime,
) -> str:
    """One chart over ``t0``..``t1`` (the whole backtest, so that charts line up and a
    station that stopped early shows its silence)."""
    readings = accepted + [r for r, _ in set_aside]
    unit = unit_of(metric, readings)
    unit_text = f" {unit}" if unit else ""
    span = max((t1 - t0).total_seconds(), 1.0)
    chart_ids = [_chart_rules(run.rules, station, metric) for run in runs]
    levels = [_levels(run.rules, ids) for run, ids in zip(runs, chart_ids, strict=True)]
    # The axis: accepted readings and the levels, never a reading the gate set aside.
    values = [r.value for r in accepted] + [v for lv in levels for _, v in lv]
    if not values:
        values = [r.value for r in readings]
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.06 or max(abs(hi) * 0.05, 1.0)
    lo, hi = lo - pad, hi + pad
    bands_h = len(runs) * (BAND_H + BAND_GAP)
    h = TOP + PLOT_H + AXIS_H + bands_h + 8
    x0, x1 = LEFT, W - RIGHT
    y_top, y_bottom = TOP, TOP + PLOT_H

    def x(t: datetime) -> float:
        return x0 + (t.timestamp() - t0.timestamp()) / span * (x1 - x0)

    def y(v: float) -> float:
        return y_bottom - (v - lo) / (hi - lo) * (y_bottom - y_top)

    p = [
        f'<svg viewBox="0 0 {W} {h}" width="{W}" height="{h}" role="img" '
        f'aria-label="{escape(station)} {escape(metric)}" font-size="11">'
    ]
    # Axes, ticks and grid.
    for v in nice_ticks(lo, hi, 8):
        yy = y(v)
        p.append(
            f'<line x1="{x0}" x2="{x1}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#e3e3e3"/>'
            f'<text x="{x0 - 6}" y="{yy + 4:.1f}" text-anchor="end">{_fmt(v)}</text>'
        )
    ticks, fmt = time_ticks(t0, t1)
    for t in ticks:
        xx = x(t)
        p.append(
            f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{y_top}" y2="{y_bottom + 4}" stroke="#eeeeee"/>'
            f'<text x="{xx:.1f}" y="{y_bottom + 16}" text-anchor="middle">{t:{fmt}}</text>'
        )
    p.append(
        f'<rect x="{x0}" y="{y_top}" width="{x1 - x0}" height="{PLOT_H}" fill="none" '
        f'stroke="#999"/>'
        f'<text x="14" y="{(y_top + y_bottom) / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {(y_top + y_bottom) / 2:.1f})">'
        f"{escape(metric)}{escape(f' ({unit})' if unit else '')}</text>"
        f'<text x="{x1}" y="{y_bottom + 30}" text-anchor="end" fill="#555">'
        f"time ({_zone(t0)})</text>"
    )
    # Levels: set a dashed, set b dotted; labels spread so that they never overlap.
    marks: list[tuple[float, str, str]] = []
    for i, (run, lv) in enumerate(zip(runs, levels, strict=True)):
        dash = "6 4" if i == 0 else "2 3"
        for name, value in lv:
            if i > 0 and (name, value) in levels[0]:
                continue  # the same level in both sets: one line
            p.append(
                f'<line x1="{x0}" x2="{x1}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
                f'stroke="#555" stroke-dasharray="{dash}"/>'
            )
            shared = all((name, value) in other for other in levels)
            tag = "" if shared else f"{run.label}: "
            marks.append((y(value), f"{tag}{name} {_fmt(value)}{unit_text}", dash))
    for pos, (_, text, _) in zip(_spread([m[0] for m in marks]), marks, strict=True):
        p.append(f'<text x="{x1 + 6}" y="{pos + 4:.1f}">{escape(text)}</text>')
    # The series, broken where the station was silent (a gap of more than three of
    # its usual intervals), so a data gap shows as one.
    if accepted:
        stamps = [r.observed_at.timestamp() for r in accepted]
        gaps = [b - a for a, b in itertools.pairwise(stamps) if b > a]
        limit = 3 * statistics.median(gaps) if gaps else math.inf
        segments: list[list[Reading]] = [[accepted[0]]]
        for prev, cur in itertools.pairwise(accepted):
            if (cur.observed_at - prev.observed_at).total_seconds() > limit:
                segments.append([])
            segments[-1].append(cur)
        for seg in segments:
            pts = " ".join(f"{x(r.observed_at):.1f},{y(r.value):.1f}" for r in seg)
            if len(seg) == 1:
                r = seg[0]
                p.append(f'<circle cx="{x(r.observed_at):.1f}" cy="{y(r.value):.1f}" r="2" '
                         f'fill="{SERIES}"/>')  # fmt: skip
            else:
                p.append(
                    f'<polyline fill="none" stroke="{SERIES}" stroke-width="1.6" points="{pts}"/>'
                )
    # Readings set aside: a cross where they are, or an arrow at the edge (with the
    # value) when they lie outside the axis.
    for r, check in set_aside:
        xx = x(r.observed_at)
        tip = (
            f"set aside ({check.value}): {_fmt(r.value)}{unit_text} at {r.observed_at:%d/%m %H:%M}"
        )
        if lo <= r.value <= hi:
            yy = y(r.value)
            p.append(
                f'<g stroke="{REJECTED}" stroke-width="1.6"><title>{escape(tip)}</title>'
                f'<line x1="{xx - 4:.1f}" y1="{yy - 4:.1f}" x2="{xx + 4:.1f}" y2="{yy + 4:.1f}"/>'
                f'<line x1="{xx - 4:.1f}" y1="{yy + 4:.1f}" x2="{xx + 4:.1f}" y2="{yy - 4:.1f}"/>'
                "</g>"
            )
        else:
            above = r.value > hi
            edge = y_top if above else y_bottom
            tip_y, base_y = (edge + 1, edge + 9) if above else (edge - 1, edge - 9)
            label_y = edge + 20 if above else edge - 12
            p.append(
                f'<g fill="{REJECTED}"><title>{escape(tip)}</title>'
                f'<polygon points="{xx:.1f},{tip_y} {xx - 5:.1f},{base_y} {xx + 5:.1f},{base_y}"/>'
                f'<text x="{xx + 7:.1f}" y="{label_y}">{escape(_fmt(r.value) + unit_text)} '
                f"({escape(check.value)})</text></g>"
            )
    # One band per rule set: the chart rules' level periods above, notices
    # (data gap, sensor fault) for this station in grey below.
    band_y = y_bottom + AXIS_H
    for run, ids in zip(runs, chart_ids, strict=True):
        end = run.result.end or t1
        by_warning: dict[str, list[Warning]] = defaultdict(list)
        for w in run.result.warnings:
            if w.subject == station and (w.rule_id in ids or w.hazard in NOTICE_HAZARDS):
                by_warning[w.warning_id].append(w)
        p.append(
            f'<rect x="{x0}" y="{band_y}" width="{x1 - x0}" height="{BAND_H}" fill="#f4f4f4"/>'
            f'<text x="{x0 - 6}" y="{band_y + 12}" text-anchor="end">{escape(run.label)}</text>'
        )
        for states in by_warning.values():
            notice = states[0].hazard in NOTICE_HAZARDS
            for start, stop, w in _periods(states, end):
                start, stop = max(start, t0), min(stop, t1)
                if stop < start:
                    continue
                colour = NOTICE if notice else COLOURS.get(w.level, "#999")
                top, height = (band_y + BAND_H - 5, 5) if notice else (band_y, BAND_H - 6)
                what = w.level_name or str(w.level)
                width = max(x(stop) - x(start), 1.5)
                p.append(
                    f'<rect x="{x(start):.1f}" y="{top}" width="{width:.1f}" '
                    f'height="{height}" fill="{colour}"><title>{escape(run.label)}: '
                    f"{escape(w.rule_id)} {escape(what)}: {start:%d/%m %H:%M} → "
                    f"{stop:%d/%m %H:%M}</title></rect>"
                )
        band_y += BAND_H + BAND_GAP
    p.append("</svg>")

    captions = []
    for run, ids in zip(runs, chart_ids, strict=True):
        shown = ids + sorted(
            {w.rule_id for w in run.result.warnings if w.hazard in NOTICE_HAZARDS}
            & {w.rule_id for w in run.result.warnings if w.subject == station}
        )
        parts = []
        for rule_id in shown:
            raised = sum(
                1
                for w in run.result.warnings
                if w.rule_id == rule_id and w.subject == station and w.transition.value == "raised"
            )
            flapping = [
                f for f in run.result.flapping if f.rule == rule_id and f.subject == station
            ]
            tag = " <strong>flapping</strong>" if flapping else ""
            parts.append(f"{escape(rule_id)}: raised {raised}{tag}")
        if parts:
            prefix = f"{escape(run.label)} — " if len(runs) > 1 else ""
            captions.append(f"<li>{prefix}{'; '.join(parts)}</li>")
    aside = f"; {len(set_aside)} set aside by the quality gate (✕)" if set_aside else ""
    caption = f"<p class='meta'>{len(accepted)} readings{aside}</p>" + (
        f"<ul class='rules'>{''.join(captions)}</ul>" if captions else ""
    )
    return f"<h2>{escape(station)} — {escape(metric)}</h2>{caption}{''.join(p)}"


def _summary(runs: list[RuleSetRun]) -> str:
    rules = sorted({s for run in runs for s in run.result.summaries})
    head = "".join(
        f"<th>raised{escape(' (' + r.label + ')' if len(runs) > 1 else '')}</th>"
        f"<th>flaps{escape(' (' + r.label + ')' if len(runs) > 1 else '')}</th>"
        f"<th>raises a day{escape(' (' + r.label + ')' if len(runs) > 1 else '')}</th>"
        f"<th>time at level{escape(' (' + r.label + ')' if len(runs) > 1 else '')}</th>"
        for r in runs
    )
    rows = []
    for rule_id in rules:
        cells = []
        for run in runs:
            s = run.result.summaries.get(rule_id)
            flapping = {f.rule for f in run.result.flapping}
            if s is None:
                cells.append("<td>0</td><td>0</td><td>0</td><td>-</td>")
                continue
            rate = s.raised / run.result.days
            cls = " class='flap'" if rule_id in flapping else ""
            cells.append(
                f"<td>{s.raised}</td><td>{s.flaps}</td><td{cls}>{rate:.1f}</td><td>"
                + ", ".join(f"{escape(k)}: {v:.1f} h" for k, v in sorted(s.time_at_level.items()))
                + "</td>"
            )
        rows.append(f"<tr><td>{escape(rule_id)}</td>{''.join(cells)}</tr>")
    return f"<table><tr><th>rule</th>{head}</tr>{''.join(rows)}</table>"


def _flapping(runs: list[RuleSetRun], limit: float) -> str:
    items: list[tuple[str, Flapping]] = [(r.label, f) for r in runs for f in r.result.flapping]
    if not items:
        return f"<p>No rule raised a warning more than {limit:g} times a day.</p>"
    lis = "".join(
        f"<li>{escape(label + ': ' if len(runs) > 1 else '')}{escape(f.message(limit))}</li>"
        for label, f in items
    )
    return f"<ul class='flapping'>{lis}</ul>"


def _risk_row(warnings: list[Warning], t0: datetime, t1: datetime) -> str:
    """The official disaster risk level over time, under a chart on its time axis: each
    period in its Appendix XII colour with its number on it (alerting/palette.py).
    Empty when no state has a risk level."""
    periods = [
        (cur.updated_at, nxt.updated_at if nxt else t1, cur.risk_level)
        for cur, nxt in zip(warnings, [*warnings[1:], None], strict=False)
        if cur.risk_level is not None
    ]
    if not periods:
        return ""
    span = max((t1 - t0).total_seconds(), 1.0)

    def x(t: datetime) -> float:
        return LEFT + max(0.0, min(1.0, (t - t0).total_seconds() / span)) * (W - LEFT - RIGHT)

    height = 22
    parts = [
        f'<svg viewBox="0 0 {W} {height}" width="{W}" height="{height}" role="img" class="risk">'
    ]
    for start, end, level in periods:
        c = palette.of(level)
        x0, width = x(start), max(x(end) - x(start), 1.0)
        parts.append(
            f'<rect x="{x0:.1f}" y="2" width="{width:.1f}" height="{height - 4}" fill="{c.hex}">'
            f"<title>{escape(palette.label(level, 'en'))}: {start:%Y-%m-%d %H:%M} → "
            f"{end:%Y-%m-%d %H:%M}</title></rect>"
        )
        if width > 14:
            parts.append(
                f'<text x="{x0 + width / 2:.1f}" y="{height - 7}" font-size="11" '
                f'text-anchor="middle" fill="{c.text}">{level}</text>'
            )
    parts.append(
        f'<text x="{LEFT - 6}" y="{height - 7}" font-size="11" text-anchor="end">risk</text></svg>'
    )
    return "".join(parts)


def render(
    readings: list[Reading],
    rules: RuleSet,
    result: BacktestResult,
    *,
    name: str = "rules",
    compare: RuleSetRun | None = None,
    max_raises_per_day: float = 3.0,
    read: int | None = None,
) -> str:
    """``readings``: what the charts draw (a long history's sample); ``read``: how many
    readings the backtest replayed, when ``readings`` is a sample."""
    label = "a" if compare else "warnings"
    replayed = len(readings) if read is None else read
    runs = [RuleSetRun(label, name, rules, result)] + ([compare] if compare else [])
    aside_ids = {id(r) for r, _ in result.set_aside}
    series: dict[tuple[str, str], list[Reading]] = defaultdict(list)
    for rd in sorted(readings, key=lambda x: x.observed_at):
        series[(rd.station_id, rd.metric)].append(rd)
    set_aside: dict[tuple[str, str], list[tuple[Reading, Check]]] = defaultdict(list)
    for rd, check in result.set_aside:
        set_aside[(rd.station_id, rd.metric)].append((rd, check))
    sections = []
    for (station, metric), points in sorted(series.items()):
        accepted = [r for r in points if id(r) not in aside_ids]
        if len(points) < 2:
            continue
        t0 = min(points[0].observed_at, result.start or points[0].observed_at)
        t1 = max(points[-1].observed_at, result.end or points[-1].observed_at)
        sections.append(
            _chart(station, metric, accepted, set_aside[(station, metric)], runs, t0, t1)
        )
        # The disaster risk level of the warnings this chart's rules raised.
        for run in runs:
            for rule_id in _chart_rules(run.rules, station, metric):
                wid = warning_id(rule_id, station)
                states = [w for w in run.result.warnings if w.warning_id == wid]
                sections.append(_risk_row(states, t0, t1))
    rows = "".join(
        f"<tr><td>{escape(run.label)}</td><td>{escape(t['at'])}</td><td>{escape(t['rule'])}</td>"
        f"<td>{escape(t['subject'])}</td><td>{escape(t['transition'])}</td><td>{t['level']}</td>"
        f"<td>{t['risk_level'] or ''}</td></tr>"
        for run in runs
        for t in sorted(run.result.transitions(), key=lambda t: t["at"])
    )
    sets = "".join(
        f"<li><b>{escape(run.label)}</b>: {escape(run.name)}, rule set "
        f"{escape(run.result.version)}</li>"
        for run in runs
    )
    legend = (
        "<p class='meta'>Line: readings the quality gate accepted (broken where a station "
        "was silent for more than three of its usual intervals). ✕ or ▲: a reading it set "
        "aside, which does not set the axis. Dashed lines: the levels"
        + (" (dotted: the compared set)" if compare else "")
        + ". Bands under each chart: warning periods by level; grey: data-gap and "
        "sensor-fault notices.</p>"
    )
    swatches = "".join(
        f"<span class='sw' style='background:{c}'></span>level {lv} " for lv, c in COLOURS.items()
    )
    return (
        "<!doctype html><html lang='en'><meta charset='utf-8'>"
        f"<title>canhbao backtest {escape(result.version)}</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1000px}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}"
        ".meta{color:#444;font-size:90%}.flap{background:#fbe3e0;font-weight:bold}"
        ".rules{margin:0 0 4px;font-size:90%}.flapping li{margin-bottom:4px}"
        ".sw{display:inline-block;width:12px;height:10px;margin:0 3px 0 8px}</style>"
        f"<h1>Backtest of rule set {escape(result.version)}</h1><ul>{sets}</ul>"
        f"<p>{replayed} readings from {result.start} to {result.end}; "
        f"set aside by the quality gate: "
        + (", ".join(f"{k.value} {v}" for k, v in result.rejected.items()) or "none")
        + "</p>"
        + _summary(runs)
        + f"<h2>Flapping (more than {max_raises_per_day:g} raises a day)</h2>"
        + _flapping(runs, max_raises_per_day)
        + legend
        + f"<p class='meta'>{swatches}</p>"
        + "<p class='meta'>Disaster risk level (Decision 18/2021/QĐ-TTg), in the band "
        "under a chart: "
        + str(palette.legend_html("en"))
        + "</p>"
        + "".join(sections)
        + "<h2>Transitions</h2><table><tr><th>set</th><th>at</th><th>rule</th><th>subject</th>"
        "<th>transition</th><th>level</th><th>risk level</th></tr>" + rows + "</table></html>"
    )
