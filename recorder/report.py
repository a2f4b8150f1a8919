"""The after-action report of one warning (``canhbao report WARNING_ID --html``): from
the first reading over threshold to the all-clear, the chart of the readings the rules
gave as evidence with their thresholds and the warning's levels, every state change,
who was notified on which channel and when (a delivery timeline), who acted, and the
event's indicators. One self-contained HTML file: the charts are SVG inside it, the
styles inline, nothing fetched; it prints on A4.

:func:`gather` reads the record; :func:`render` is pure (tested on its own)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from alerting import chart
from recorder import queries
from recorder.indicators import event_indicators
from recorder.schema import WarningVersion

#: The province's clock, for people, unless the caller passes the display time zone.
LOCAL: tzinfo = ZoneInfo("Asia/Ho_Chi_Minh")
LEVEL_COLOURS = chart.LEVEL_COLOURS
OUTCOME_COLOURS = {
    "delivered": "#2e8b57",
    "retrying": "#ed9a3c",
    "failed": "#c0392b",
    "suppressed": "#8a8a8a",
    "duplicate": "#5d6d7e",
}


@dataclass(frozen=True)
class Reading:
    """A point of a chart: a reading the rules selected, or (with its threshold) one
    a state of the warning gave as evidence."""

    station_id: str
    metric: str
    observed_at: datetime
    value: float
    threshold: float | None


@dataclass(frozen=True)
class EventRecord:
    warning_id: str
    timeline: dict[str, Any]
    states: list[WarningVersion]
    readings: list[Reading]
    indicators: dict[str, Any]


async def gather(
    engine: AsyncEngine,
    warning_id: str,
    lead_receivers: Mapping[str, set[str]] | None = None,
    with_indicators: bool = True,
) -> EventRecord | None:
    """Everything the report shows, from the record; None when it holds nothing.
    ``with_indicators=False`` leaves out the event's indicators (a query over its
    deliveries and actions) for a view that does not show them."""
    timeline = await queries.timeline(engine, warning_id)
    if timeline is None or not timeline["states"]:
        return None
    async with AsyncSession(engine) as session:
        states = list(
            (
                await session.scalars(
                    select(WarningVersion)
                    .where(WarningVersion.warning_id == warning_id)
                    .order_by(WarningVersion.version)
                )
            ).all()
        )
        around = await queries.event_readings(session, states)
    readings = merge_readings(
        [
            Reading(r.station_id, r.metric, r.observed_at, r.value, r.threshold)
            for r in around.evidence
        ],
        [Reading(r.station_id, r.metric, r.observed_at, r.value, None) for r in around.selected],
    )
    found = await event_indicators(engine, warning_id, lead_receivers) if with_indicators else {}
    return EventRecord(warning_id, timeline, states, readings, found or {})


def merge_readings(evidence: list[Reading], selected: list[Reading]) -> list[Reading]:
    """One chart series from both: every reading the rules selected, and the evidence
    of the states (which carries the threshold) where the two are the same reading."""
    by_point = {(r.station_id, r.metric, r.observed_at): r for r in selected}
    by_point.update({(r.station_id, r.metric, r.observed_at): r for r in evidence})
    return sorted(by_point.values(), key=lambda r: (r.observed_at, r.station_id, r.metric))


# --- rendering (pure) -------------------------------------------------------------------


def _local_in(t: datetime | str | None, tz: tzinfo = LOCAL) -> str:
    if t is None:
        return "—"
    when = datetime.fromisoformat(t) if isinstance(t, str) else t
    return when.astimezone(tz).strftime("%d/%m/%Y %H:%M:%S")


def zone_name(tz: tzinfo) -> str:
    """The zone as people know it: its IANA name (Asia/Ho_Chi_Minh), else its offset."""
    return str(getattr(tz, "key", None) or tz.tzname(None) or tz)


def _num(v: float) -> str:
    return chart.number(v)


def _secs(v: float | None) -> str:
    if v is None:
        return "—"
    if v < 60:
        return f"{v:.1f} s"
    if v < 3600:
        return f"{v / 60:.1f} phút/min"
    return f"{v / 3600:.1f} giờ/h"


def readings_charts(
    states: list[WarningVersion], readings: list[Reading], tz: tzinfo = LOCAL
) -> str:
    """One chart per station and metric (``alerting.chart``, shared with the console's
    warning page), both languages; a note when the record holds no reading."""
    periods = [chart.Period(s.updated_at, s.level, s.level_name, s.version, s.transition)
               for s in states]  # fmt: skip
    points = [chart.Point(r.station_id, r.metric, r.observed_at, r.value, r.threshold)
              for r in readings]  # fmt: skip
    return chart.readings_charts(periods, points, tz=tz)


def delivery_timeline(timeline: dict[str, Any], t0: datetime) -> str:
    """SVG: one row per receiver and channel, each attempt a dot at its time after the
    warning's first publication, coloured by outcome."""
    rows: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for d in timeline["deliveries"]:
        rows[(d["receiver_id"], d["channel"])].append(d)
    if not rows:
        return '<p class="delivery-timeline">Không có lần gửi nào / no delivery attempt.</p>'
    offsets = [
        (datetime.fromisoformat(d["at"]) - t0).total_seconds() for ds in rows.values() for d in ds
    ]
    hi = max(1.0, max(offsets) * 1.05)
    lo = min(0.0, min(offsets))
    left, right, row_h, top = 220, 30, 22, 24
    w = 900
    h = top + row_h * len(rows) + 30

    def x(s: float) -> float:
        return left + (s - lo) / (hi - lo) * (w - left - right)

    out = [
        f'<svg class="delivery-timeline" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {w} {h}" role="img" aria-label="Thời gian gửi / delivery timeline">'
    ]
    for v in chart.ticks(lo, hi):
        out.append(
            f'<line x1="{x(v):.1f}" x2="{x(v):.1f}" y1="{top - 6}" y2="{h - 26}" stroke="#e0e0e0"/>'
            f'<text x="{x(v):.1f}" y="{h - 10}" text-anchor="middle" font-size="11">'
            f"+{_secs(v)}</text>"
        )
    for i, ((receiver, channel), attempts) in enumerate(sorted(rows.items())):
        cy = top + i * row_h + row_h / 2
        out.append(
            f'<text x="{left - 8}" y="{cy + 4:.1f}" text-anchor="end" font-size="12">'
            f"{escape(receiver)} · {escape(channel)}</text>"
        )
        for d in attempts:
            s = (datetime.fromisoformat(d["at"]) - t0).total_seconds()
            colour = OUTCOME_COLOURS.get(d["outcome"], "#333333")
            out.append(
                f'<circle cx="{x(s):.1f}" cy="{cy:.1f}" r="5" fill="{colour}">'
                f"<title>{escape(d['outcome'])}, attempt {d['attempt']}, +{_secs(s)}"
                f"{' · ' + escape(d['error']) if d['error'] else ''}</title></circle>"
            )
    out.append("</svg>")
    return "".join(out)


def _table(head: list[str], rows: list[list[str]], cls: str) -> str:
    if not rows:
        return '<p class="empty">—</p>'
    th = "".join(f"<th>{escape(c)}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


STYLE = """
body{font-family:"Noto Sans","DejaVu Sans",Arial,sans-serif;margin:24px;color:#222}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:22px 0 6px;border-bottom:1px solid #ccc}
table{border-collapse:collapse;width:100%;font-size:12px}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3}svg{width:100%;height:auto}
.meta{font-size:13px;color:#444}.legend span{display:inline-block;margin-right:12px;font-size:12px}
@media print{body{margin:10mm}h2{break-after:avoid}svg,table{break-inside:avoid}}
@page{size:A4;margin:12mm}
"""


def render(event: EventRecord, tz: tzinfo = LOCAL) -> str:
    """The report as one HTML document, its times in ``tz`` (the display time zone)."""

    def _local(t: datetime | str | None) -> str:
        return _local_in(t, tz)

    states, tl = event.states, event.timeline
    first, last = states[0], states[-1]
    t0 = first.logged_at
    # The first reading over threshold: the evidence (the readings before it are
    # charted for context, not where the event starts).
    start = min([r.observed_at for r in event.readings if r.threshold is not None]
                + [first.raised_at])  # fmt: skip
    cleared = next((s for s in states if s.transition == "cleared"), None)
    end_text = (
        _local(cleared.updated_at)
        if cleared
        else f"{_local(last.updated_at)} (chưa kết thúc / not cleared)"
    )
    communes = sorted({a["code"] for s in states for a in s.areas})
    state_rows = [
        [escape(_local(s.updated_at)), f"v{s.version}", escape(s.transition),
         f'<span style="color:{LEVEL_COLOURS.get(s.level, "#333")}">■</span> '
         f"{escape(s.level_name)} ({s.level})", escape(s.severity), escape(s.status),
         escape(s.scope_tier), str(s.phase), escape(s.lead_agency),
         escape(", ".join(f"{e['station_id']} {e['metric']} {_num(e['value'])}"
                          for e in s.evidence))]
        for s in states
    ]  # fmt: skip
    first_ok: dict[str, dict[str, Any]] = {}
    attempts: dict[str, int] = defaultdict(int)
    last_outcome: dict[str, str] = {}
    for d in tl["deliveries"]:
        attempts[d["notification_id"]] += 1
        last_outcome[d["notification_id"]] = d["outcome"]
        if d["outcome"] == "delivered" and d["notification_id"] not in first_ok:
            first_ok[d["notification_id"]] = d
    note_rows = []
    for n in tl["notifications"]:
        ok = first_ok.get(n["notification_id"])
        delay = None if ok is None else (datetime.fromisoformat(ok["at"]) - t0).total_seconds()
        note_rows.append(
            [escape(n["receiver_id"]), escape(n["channel"]), escape(n["audience"]),
             f"v{n['warning_version']}", escape(_local(n["created_at"])),
             escape(_local(ok["at"]) if ok else "—"), str(attempts[n["notification_id"]]),
             escape(last_outcome.get(n["notification_id"], "—")), _secs(delay)]
        )  # fmt: skip
    action_rows = [
        [escape(_local(a["at"])), escape(a["actor"]), escape(f"{a['kind']}/{a['action']}"),
         escape(a["reason"] or "")]
        for a in tl["actions"]
    ]  # fmt: skip
    cast_rows = [
        [escape(b["broadcast_id"]), escape(b["status"]), escape(", ".join(b["communes"])),
         escape(", ".join(b["channels"])), escape(", ".join(b["approvals"]) or "—"),
         escape(_local(b["sent_at"]))]
        for b in tl["broadcasts"]
    ]  # fmt: skip
    ind = event.indicators
    ind_rows = []
    for key, label in (
        ("first_reading_to_warning", "Từ số đo vượt ngưỡng đến cảnh báo / first reading → warning"),
        ("warning_to_verified", "Đến khi xác minh / → verified"),
        ("warning_to_lead_agency", "Đến cơ quan chủ trì / → lead agency"),
        ("warning_to_citizens", "Đến người dân / → citizens"),
    ):
        d = ind.get(key) or {}
        ind_rows.append([escape(label), _secs(d.get("median_s"))])
    success = ", ".join(
        f"{escape(ch)} {o['delivered']}/{o['delivered'] + o['failed']}"
        for ch, o in (ind.get("delivery_success") or {}).items()
    )
    ind_rows.append(["Gửi thành công / delivered", success or "—"])
    legend = "".join(
        f'<span><span style="color:{c}">●</span> {escape(k)}</span>'
        for k, c in OUTCOME_COLOURS.items()
    )
    title = f"{first.domain}/{first.hazard} · {event.warning_id}"
    exercise = (
        "<p><strong>[DIỄN TẬP - KHÔNG PHẢI THẬT] / EXERCISE</strong></p>" if first.exercise else ""
    )
    return f"""<!DOCTYPE html>
<html lang="vi"><head><meta charset="utf-8">
<title>Báo cáo sau sự kiện / After-action report: {escape(title)}</title>
<style>{STYLE}</style></head><body>
<h1>Báo cáo sau sự kiện / After-action report</h1>
{exercise}
<p class="meta"><strong>{escape(title)}</strong><br>
Cơ quan chủ trì / lead agency: {escape(first.lead_agency_name)} ({escape(first.lead_agency)}) ·
Địa bàn / communes: {escape(", ".join(communes) or "—")}<br>
Từ / from {escape(_local(start))} (số đo đầu tiên vượt ngưỡng / first reading over threshold)
đến / to {escape(end_text)} · cấp cao nhất / highest level:
{escape(max(states, key=lambda s: s.level).level_name)}</p>
<h2>Số liệu đo / Readings</h2>
{readings_charts(states, event.readings, tz)}
<h2>Diễn biến cảnh báo / State changes</h2>
{
        _table(
            [
                "Thời gian / time",
                "Phiên bản",
                "Chuyển / transition",
                "Cấp / level",
                "Mức độ / severity",
                "Trạng thái / status",
                "Phạm vi / scope",
                "Giai đoạn / phase",
                "Chủ trì / lead",
                "Bằng chứng / evidence",
            ],
            state_rows,
            "states",
        )
    }
<h2>Thông báo và thời gian gửi / Notifications and delivery timeline</h2>
<p class="legend">{legend} · trục: thời gian từ khi phát cảnh báo / axis: time since the
warning was published ({escape(_local(t0))})</p>
{delivery_timeline(tl, t0)}
{
        _table(
            [
                "Người nhận / receiver",
                "Kênh / channel",
                "Đối tượng / audience",
                "Phiên bản",
                "Tạo lúc / created",
                "Nhận lúc / delivered",
                "Lần gửi / attempts",
                "Kết quả / outcome",
                "Độ trễ / delay",
            ],
            note_rows,
            "deliveries",
        )
    }
<h2>Thao tác của người trực / Operators' actions</h2>
{
        _table(
            ["Thời gian / time", "Người / who", "Thao tác / action", "Lý do / why"],
            action_rows,
            "actions",
        )
    }
<h2>Tin gửi người dân / Citizen broadcasts</h2>
{
        _table(
            [
                "Mã / id",
                "Trạng thái / status",
                "Xã / communes",
                "Kênh / channels",
                "Phê duyệt / approved by",
                "Gửi lúc / sent",
            ],
            cast_rows,
            "broadcasts",
        )
    }
<h2>Chỉ số của sự kiện / Indicators of this event</h2>
{_table(["Chỉ số / indicator", "Giá trị / value"], ind_rows, "indicators")}
</body></html>
"""
