"""The indicators ("bộ chỉ số") of a period, per domain and commune, from the record.

Definitions (the README's "Indicators" repeats them for users):

- **warnings by level**: warnings raised in the period (their first state's
  ``raised_at``), by the highest level each reached.
- **first reading → warning**: from the earliest reading the rule gave as evidence
  for raising the warning to the warning's ``raised_at`` (the readings' clock): how
  long the rule waited (persistence, windows) before it warned.
- **warning → verified**: from the publication of the warning's first state to the
  first ``verify`` command about it (both when the broker logged them).
- **warning → lead agency**: to the first delivered attempt to a receiver of the
  lead agency (the directory's receivers of the agency that leads the first state).
- **warning → citizens**: to the first delivered attempt of a citizen notification.
  The three delays are given as count, median and 90th percentile (nearest rank),
  in seconds.
- **delivery success by channel**: of the notifications with a final outcome, the
  share delivered (a notification counts once, whatever its retries).
- **false alarms**: warnings an operator closed (``close``) before the readings
  cleared them: judged not real.
- **flaps**: raises of a warning within an hour (the backtest's flap window) of
  its all-clear.

A warning counts for every commune it touched (so communes do not add up to the
total, which counts each warning once)."""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from pipeline.backtest import FLAP_WINDOW
from recorder.schema import AuditEntry, DeliveryAttempt, NotificationRow, WarningVersion


@dataclass(frozen=True)
class Period:
    label: str
    start: datetime
    end: datetime  # exclusive


_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_YEAR = re.compile(r"^(\d{4})$")


def parse_period(text: str, tz: tzinfo) -> Period:
    """``2025-Q4``, ``2025-10``, ``2025`` or ``2025-10-01..2025-12-31`` (both days
    included), in the time zone ``tz``; ValueError saying what is accepted."""
    text = text.strip()

    def day(y: int, m: int, d: int = 1) -> datetime:
        return datetime(y, m, d, tzinfo=tz)

    if m := _QUARTER.match(text):
        y, q = int(m[1]), int(m[2])
        start = day(y, 3 * q - 2)
        end = day(y + 1, 1) if q == 4 else day(y, 3 * q + 1)
        return Period(text, start, end)
    if m := _MONTH.match(text):
        y, mo = int(m[1]), int(m[2])
        if not 1 <= mo <= 12:
            raise ValueError(f"{text!r}: no month {mo}")
        return Period(text, day(y, mo), day(y + 1, 1) if mo == 12 else day(y, mo + 1))
    if m := _YEAR.match(text):
        return Period(text, day(int(m[1]), 1), day(int(m[1]) + 1, 1))
    first, sep, last = text.partition("..")
    if sep:
        try:
            a = datetime.fromisoformat(first).replace(tzinfo=tz)
            b = datetime.fromisoformat(last).replace(tzinfo=tz) + timedelta(days=1)
        except ValueError:
            pass
        else:
            if b > a:
                return Period(text, a, b)
    raise ValueError(
        f"{text!r} is not a period: use 2025-Q4, 2025-10, 2025 or 2025-10-01..2025-12-31"
    )


def delay_stats(seconds: list[float]) -> dict[str, Any]:
    """Count, median and 90th percentile (nearest rank) of ``seconds``."""
    if not seconds:
        return {"n": 0, "median_s": None, "p90_s": None}
    ordered = sorted(seconds)
    p90 = ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]
    return {
        "n": len(ordered),
        "median_s": round(statistics.median(ordered), 3),
        "p90_s": round(p90, 3),
    }


@dataclass
class _Warning:
    warning_id: str
    domain: str
    versions: list[WarningVersion]
    communes: set[str] = field(default_factory=set)
    verified_at: datetime | None = None
    closed_at: datetime | None = None
    notes: dict[str, NotificationRow] = field(default_factory=dict)
    attempts: list[DeliveryAttempt] = field(default_factory=list)

    @property
    def first(self) -> WarningVersion:
        return self.versions[0]


@dataclass
class _Group:
    warnings: list[_Warning] = field(default_factory=list)


def _parse_time(text: str) -> datetime:
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _lead_receivers(w: _Warning, lead_receivers: Mapping[str, set[str]]) -> set[str]:
    lead = w.first.lead_agency
    return lead_receivers.get(lead, set())


def _is_lead(receiver: str, lead: str, known: set[str]) -> bool:
    # Without the directory's list, the convention of the shipped directory
    # (receivers named after their agency: "snnmt-webhook").
    return receiver in known if known else receiver == lead or receiver.startswith(f"{lead}-")


def _measure(group: list[_Warning], lead_receivers: Mapping[str, set[str]]) -> dict[str, Any]:
    by_level: dict[str, int] = defaultdict(int)
    detection: list[float] = []
    verified: list[float] = []
    to_lead: list[float] = []
    to_citizens: list[float] = []
    outcomes: dict[str, dict[str, int]] = defaultdict(lambda: {"delivered": 0, "failed": 0})
    false_alarms = 0
    flaps = 0
    for w in group:
        by_level[str(max(v.level for v in w.versions))] += 1
        first = w.first
        observed = [_parse_time(e["observed_at"]) for e in first.evidence if "observed_at" in e]
        if observed and first.raised_at >= min(observed):
            detection.append((first.raised_at - min(observed)).total_seconds())
        t0 = first.logged_at
        if w.verified_at is not None:
            verified.append(max(0.0, (w.verified_at - t0).total_seconds()))
        known = _lead_receivers(w, lead_receivers)
        delivered = [a for a in w.attempts if a.outcome == "delivered"]
        lead = [a.at for a in delivered if _is_lead(a.receiver_id, first.lead_agency, known)]
        if lead:
            to_lead.append(max(0.0, (min(lead) - t0).total_seconds()))
        citizens = [
            a.at
            for a in delivered
            if (n := w.notes.get(a.notification_id)) is not None and n.audience == "citizen"
        ]
        if citizens:
            to_citizens.append(max(0.0, (min(citizens) - t0).total_seconds()))
        final: dict[str, tuple[str, str]] = {}
        for a in w.attempts:
            if a.outcome == "delivered" or (
                a.outcome == "failed" and final.get(a.notification_id, ("", ""))[1] != "delivered"
            ):
                final[a.notification_id] = (a.channel, a.outcome)
        for channel, outcome in final.values():
            outcomes[channel][outcome] += 1
        if w.closed_at is not None:
            cleared = [v.logged_at for v in w.versions if v.transition == "cleared"]
            if not any(c <= w.closed_at for c in cleared):
                false_alarms += 1
        last_clear: datetime | None = None
        for v in w.versions:
            recent = last_clear is not None and v.updated_at - last_clear <= FLAP_WINDOW
            if v.transition == "raised" and recent:
                flaps += 1
            if v.transition == "cleared":
                last_clear = v.updated_at
    success = {
        ch: {**o, "rate": round(o["delivered"] / (o["delivered"] + o["failed"]), 4)}
        for ch, o in sorted(outcomes.items())
        if o["delivered"] + o["failed"]
    }
    return {
        "warnings": len(group),
        "by_level": dict(sorted(by_level.items())),
        "first_reading_to_warning": delay_stats(detection),
        "warning_to_verified": delay_stats(verified),
        "warning_to_lead_agency": delay_stats(to_lead),
        "warning_to_citizens": delay_stats(to_citizens),
        "delivery_success": success,
        "false_alarms": false_alarms,
        "flaps": flaps,
    }


def _either(one: str | None, some: Collection[str] | None) -> set[str] | None:
    """What ``one`` and ``some`` both allow; None: no limit."""
    if one is None:
        return None if some is None else set(some)
    return {one} if some is None or one in some else set()


async def _load(engine: AsyncEngine, q: Select[tuple[WarningVersion]]) -> dict[str, _Warning]:
    """The warnings whose states ``q`` selects, with what the indicators need."""
    async with AsyncSession(engine) as session:
        versions = list((await session.scalars(q.order_by(WarningVersion.version))).all())
        ids = sorted({v.warning_id for v in versions})
        found: dict[str, _Warning] = {}
        for v in versions:
            w = found.setdefault(v.warning_id, _Warning(v.warning_id, v.domain, []))
            w.versions.append(v)
            w.communes.update(a["code"] for a in v.areas)
        if not ids:
            return found
        actions = await session.scalars(
            select(AuditEntry).where(
                AuditEntry.kind == "command",
                AuditEntry.action.in_(["verify", "close"]),
                AuditEntry.warning_id.in_(ids),
            )
        )
        for a in actions:
            w = found[a.warning_id or ""]
            if a.action == "verify":
                w.verified_at = min(filter(None, [w.verified_at, a.logged_at]))
            else:
                w.closed_at = min(filter(None, [w.closed_at, a.logged_at]))
        for n in await session.scalars(
            select(NotificationRow).where(NotificationRow.warning_id.in_(ids))
        ):
            found[n.warning_id].notes[n.notification_id] = n
        for at in await session.scalars(
            select(DeliveryAttempt).where(DeliveryAttempt.warning_id.in_(ids))
        ):
            found[at.warning_id].attempts.append(at)
    return found


async def event_indicators(
    engine: AsyncEngine, warning_id: str, lead_receivers: Mapping[str, set[str]] | None = None
) -> dict[str, Any] | None:
    """The indicators of one warning (its after-action report); None if unrecorded."""
    found = await _load(
        engine, select(WarningVersion).where(WarningVersion.warning_id == warning_id)
    )
    if warning_id not in found:
        return None
    return _measure([found[warning_id]], lead_receivers or {})


async def indicators(
    engine: AsyncEngine,
    period: Period,
    *,
    area: str | None = None,
    domain: str | None = None,
    lead_receivers: Mapping[str, set[str]] | None = None,
    areas: Collection[str] | None = None,
    domains: Collection[str] | None = None,
) -> dict[str, Any]:
    """The indicators of ``period`` (see the module's definitions): the total, then
    one entry per domain and commune. ``area``/``domain`` choose one; ``areas`` and
    ``domains`` limit to some (an API token's scope); both: what both allow."""
    leads = lead_receivers or {}
    want_domains = _either(domain, domains)
    want_areas = _either(area, areas)
    q = select(WarningVersion).where(
        WarningVersion.raised_at >= period.start, WarningVersion.raised_at < period.end
    )
    if want_domains is not None:
        q = q.where(WarningVersion.domain.in_(sorted(want_domains)))
    found = await _load(engine, q)
    warnings = [w for w in found.values() if want_areas is None or w.communes & want_areas]
    groups: dict[tuple[str, str], list[_Warning]] = defaultdict(list)
    for w in warnings:
        for commune in sorted(w.communes) or ["(no commune)"]:
            if want_areas is None or commune in want_areas:
                groups[(w.domain, commune)].append(w)
    return {
        "period": {
            "label": period.label,
            "start": period.start.isoformat(),
            "end": period.end.isoformat(),
        },
        "filters": {"area": area, "domain": domain},
        "total": _measure(warnings, leads),
        "groups": [
            {"domain": d, "commune": c, **_measure(ws, leads)}
            for (d, c), ws in sorted(groups.items())
        ],
    }
