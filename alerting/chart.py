"""The readings chart of a warning, as inline SVG: the evidence readings of each station
and metric over time, the rule's levels as dashed threshold lines, and the warning's
periods shaded in the colour of its level, each with its level written on it (a colour
alone says nothing to a colour-blind reader, nor on a black and white printout).

One renderer for the after-action report (``recorder.report``) and the console's
warning page: SVG made on the server works offline, in print and without JavaScript.
Pure: plain values in, a string of SVG out."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from html import escape

from alerting.palette import PALETTE

LOCAL = timezone(timedelta(hours=7), "ICT")  # the province's clock, for people
# The levels' colours: the ones every page and message of canhbao uses (alerting.palette),
# so the band of level 3 on the chart is the colour of the "level 3" badge beside it.
LEVEL_COLOURS = {0: "#9bbf85", **{n: c.hex for n, c in PALETTE.items()}}
LINE = "#1f5fa8"
THRESHOLD = "#8e1b4f"


@dataclass(frozen=True)
class Point:
    """One evidence reading, with the threshold the rule compared it with."""

    station_id: str
    metric: str
    observed_at: datetime
    value: float
    threshold: float | None = None


@dataclass(frozen=True)
class Period:
    """One state of the warning, from ``start`` until the next state (or the chart's
    end): shaded in its level's colour."""

    start: datetime
    level: int
    level_name: str
    version: int
    transition: str


@dataclass(frozen=True)
class Threshold:
    """One of the rule's levels: the value from which it applies."""

    value: float
    label: str  # e.g. "báo động II" / "alarm level II"


# The chart's words: one language, or both for the bilingual after-action report.
_WORDS = {
    "vi": {"threshold": "ngưỡng", "time": "giờ Việt Nam", "none": "Không có số đo nào.",
           "aria": "Số liệu đo và ngưỡng", "level": "cấp"},
    "en": {"threshold": "threshold", "time": "Vietnam time", "none": "No reading recorded.",
           "aria": "Readings and thresholds", "level": "level"},
    "both": {"threshold": "ngưỡng/threshold", "time": "giờ Việt Nam / Vietnam time",
             "none": "Không có số đo / no reading recorded.",
             "aria": "Số liệu đo và ngưỡng / readings and thresholds", "level": "cấp/level"},
}  # fmt: skip


def number(v: float, lang: str = "vi") -> str:
    """A value as people of ``lang`` write it: 4,3 in Vietnamese, 4.3 in English."""
    text = f"{v:,.2f}".rstrip("0").rstrip(".")
    if lang == "en":
        return text
    return text.replace(",", " ").replace(".", ",")


def local_time(t: datetime, tz: tzinfo = LOCAL) -> str:
    return t.astimezone(tz).strftime("%d/%m/%Y %H:%M:%S")


def ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    step = (hi - lo) / n
    return [lo + i * step for i in range(n + 1)]


def readings_charts(
    periods: Sequence[Period],
    points: Sequence[Point],
    thresholds: Sequence[Threshold] = (),
    lang: str = "both",
    tz: tzinfo = LOCAL,
) -> str:
    """One chart per station and metric (a water level and a report's severity do not
    share an axis); a sentence saying so when there is no reading."""
    words = _WORDS.get(lang, _WORDS["both"])
    series: dict[tuple[str, str], list[Point]] = defaultdict(list)
    for p in points:
        series[(p.station_id, p.metric)].append(p)
    if not series:
        return f'<p class="readings-chart empty">{escape(words["none"])}</p>'
    return "".join(
        readings_chart(periods, sorted(ps, key=lambda p: p.observed_at), thresholds, lang, tz)
        for _, ps in sorted(series.items())
    )


def readings_chart(
    periods: Sequence[Period],
    points: Sequence[Point],
    thresholds: Sequence[Threshold] = (),
    lang: str = "both",
    tz: tzinfo = LOCAL,
) -> str:
    """SVG of one station and metric: its readings, each threshold as a dashed line
    (the rule's levels when given, else the thresholds the readings were compared
    with), and the warning's periods as bands coloured and labelled by level."""
    words = _WORDS.get(lang, _WORDS["both"])
    num_lang = "en" if lang == "en" else "vi"
    w, h, left, right, top, bottom = 900, 300, 70, 50, 20, 50
    periods = sorted(periods, key=lambda s: s.start)
    times = [p.observed_at for p in points] + [s.start for s in periods]
    t0, t1 = min(times), max(times)
    if t1 <= t0:
        t1 = t0 + timedelta(minutes=1)
    # A little room after the last reading or state: the last period stays visible.
    t1 += (t1 - t0) * 0.05
    lines = list(thresholds) or [
        Threshold(v, "") for v in sorted({p.threshold for p in points if p.threshold is not None})
    ]
    values = [p.value for p in points]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    # Show the levels near the readings; one far above (level III while the river is at
    # level I) would squash the readings into a flat line at the bottom.
    near = [t.value for t in lines if lo - (hi - lo + 1) <= t.value <= hi + (hi - lo + 1)]
    lo, hi = min([lo, *near]), max([hi, *near])
    pad = (hi - lo) * 0.1 or abs(hi) * 0.1 or 1.0
    lo, hi = lo - pad, hi + pad

    def x(t: datetime) -> float:
        return left + (t - t0) / (t1 - t0) * (w - left - right)

    def y(v: float) -> float:
        return top + (hi - v) / (hi - lo) * (h - top - bottom)

    out = [
        f'<svg class="readings-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" '
        f'role="img" aria-label="{escape(words["aria"])}">'
    ]
    for i, s in enumerate(periods):
        end = periods[i + 1].start if i + 1 < len(periods) else t1
        colour = LEVEL_COLOURS.get(s.level, "#cccccc")
        width = max(1.0, x(end) - x(s.start))
        name = s.level_name or str(s.level)
        out.append(
            f'<rect x="{x(s.start):.1f}" y="{top}" width="{width:.1f}" '
            f'height="{h - top - bottom}" fill="{colour}" opacity="0.25">'
            f"<title>v{s.version} {escape(s.transition)}: {escape(words['level'])} "
            f"{escape(name)}</title></rect>"
        )
        if s.level > 0 and width >= 28:
            out.append(
                f'<text x="{x(s.start) + width / 2:.1f}" y="{top + 14}" font-size="12" '
                f'text-anchor="middle" font-weight="bold" fill="#333">'
                f"{escape(words['level'])} {escape(name)}</text>"
            )
    for v in ticks(lo, hi):
        out.append(
            f'<line x1="{left}" x2="{w - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e0e0e0"/>'
            f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="11">'
            f"{number(v, num_lang)}</text>"
        )
    span = t1 - t0
    for i in range(6):
        t = t0 + span * i / 5
        out.append(
            f'<text x="{x(t):.1f}" y="{h - bottom + 16}" text-anchor="middle" font-size="11">'
            f"{t.astimezone(tz).strftime('%d/%m %H:%M')}</text>"
        )
    for line in sorted(lines, key=lambda t: t.value):
        if not lo <= line.value <= hi:
            continue
        label = line.label or words["threshold"]
        # The label goes at the end of the line where the readings are farthest from
        # it, on the side away from them: it never sits on the readings' line.
        first, last = (points[0].value, points[-1].value) if points else (lo, lo)
        at_left = abs(first - line.value) > abs(last - line.value)
        end_value = first if at_left else last
        ty = y(line.value) + 14 if end_value > line.value else y(line.value) - 4
        tx, anchor = (left + 4, "start") if at_left else (w - right - 4, "end")
        out.append(
            f'<line x1="{left}" x2="{w - right}" y1="{y(line.value):.1f}" '
            f'y2="{y(line.value):.1f}" stroke="{THRESHOLD}" stroke-dasharray="6 4"/>'
            f'<text x="{tx}" y="{ty:.1f}" text-anchor="{anchor}" font-size="12" '
            f'fill="{THRESHOLD}">{escape(label)} {number(line.value, num_lang)}</text>'
        )
    path = " ".join(f"{x(p.observed_at):.1f},{y(p.value):.1f}" for p in points)
    out.append(f'<polyline points="{path}" fill="none" stroke="{LINE}" stroke-width="2"/>')
    for p in points:
        out.append(
            f'<circle cx="{x(p.observed_at):.1f}" cy="{y(p.value):.1f}" r="3.5" fill="{LINE}">'
            f"<title>{escape(p.station_id)} {escape(p.metric)} {number(p.value, num_lang)} · "
            f"{local_time(p.observed_at, tz)}</title></circle>"
        )
    names = ", ".join(sorted({f"{p.station_id} · {p.metric}" for p in points})) or "—"
    zone = str(getattr(tz, "key", None) or tz.tzname(None) or tz)
    out.append(
        f'<text x="{left}" y="{h - 8}" font-size="11">{escape(names)} '
        f"({escape(words['time'] if tz is LOCAL else zone)})</text></svg>"
    )
    return "".join(out)
