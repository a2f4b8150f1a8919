"""What ``canhbao demo`` counts and prints: one line per warning state as it
happens, deliveries grouped per receiver, a progress line now and then, and the
summary (text, or JSON for CI)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TextIO

from canhbao.receiver import Delivery
from feeds.scenarios.base import ICT
from topics import ids
from topics.models import ScopeTier, Transition, Warning

NOTICES = ("sensor_fault", "data_gap")  # about the sensors, not a hazard
SCOPE_RANK = {ScopeTier.COMMUNE: 0, ScopeTier.PROVINCE: 1, ScopeTier.NATIONAL: 2}
LOUD = (Transition.RAISED, Transition.ESCALATED)


class Printer:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.t0 = time.monotonic()

    def __call__(self, tag: str, text: str) -> None:
        print(f"{time.monotonic() - self.t0:6.1f}s  {tag:<9} {text}", file=self.out, flush=True)


@dataclass
class Tally:
    sent: int = 0
    ingested: int = 0
    rejected: int = 0
    reports_sent: int = 0
    warnings: Counter[str] = field(default_factory=Counter)  # by level
    by_domain: Counter[str] = field(default_factory=Counter)
    by_transition: Counter[str] = field(default_factory=Counter)
    notices: int = 0
    escalations: list[str] = field(default_factory=list)  # scope tier going up
    scopes: dict[str, ScopeTier] = field(default_factory=dict)
    leads: dict[tuple[str, int], str] = field(default_factory=dict)  # loud states' lead
    notifications: int = 0  # webhook notifications: the ones the demo delivers
    by_channel: Counter[str] = field(default_factory=Counter)
    delivered: int = 0
    failed: int = 0
    suppressed: int = 0
    by_receiver: Counter[str] = field(default_factory=Counter)
    pending_deliveries: Counter[str] = field(default_factory=Counter)
    received: int = 0
    broadcasts: int = 0
    scenario: dict[str, Any] = field(default_factory=dict)
    scenario_start: datetime | None = None
    scenario_now: datetime | None = None
    last_event: float = field(default_factory=time.monotonic)
    last_progress: float = field(default_factory=time.monotonic)
    probe: asyncio.Event = field(default_factory=asyncio.Event)

    def on_delivery(self, show: Callable[[str, str], None]) -> Callable[[Delivery], None]:
        """The receiver's callback: shows what the lead agency reads of each new or
        higher warning (the other copies only count)."""

        def received(d: Delivery) -> None:
            self.received += 1
            nid = str(d.body.get("notification_id", ""))
            try:
                parsed = ids.NotificationId.parse(nid)
            except ids.InvalidId:
                return  # a digest, or not ours
            if parsed.reminder is not None or parsed.cancel:
                return  # the lead read this state already
            lead = self.leads.get((parsed.warning_id, parsed.version))
            if lead is not None and d.path == f"/hooks/{lead}":
                body = " ".join(str(d.body.get("body", "")).split())
                show("RECEIVED", f"{d.path}: {body[:200]}{'…' if len(body) > 200 else ''}")

        return received

    def flush_deliveries(self, show: Callable[[str, str], None]) -> None:
        if not self.pending_deliveries:
            return
        total = sum(self.pending_deliveries.values())
        parts = ", ".join(f"{r} ×{n}" for r, n in self.pending_deliveries.most_common())
        show("DELIVERED", f"{total} webhook{'s' if total > 1 else ''}: {parts}")
        self.pending_deliveries.clear()

    def progress(self, show: Callable[[str, str], None], every: float = 5.0) -> None:
        if time.monotonic() - self.last_progress < every or self.scenario_now is None:
            return
        self.last_progress = time.monotonic()
        show(
            "progress",
            f"scenario {clock(self.scenario_now, self.scenario_start)}: {self.ingested} "
            f"readings in, {sum(self.warnings.values())} warning states, "
            f"{self.delivered} webhooks delivered",
        )

    def summary(self, broker: str, elapsed: float) -> dict[str, Any]:
        return {
            "broker": broker,
            "scenario": self.scenario,
            "readings": {"sent": self.sent, "ingested": self.ingested, "rejected": self.rejected},
            "reports": {"sent": self.reports_sent},
            "warnings": {
                "total": sum(self.warnings.values()),
                "by_level": dict(sorted(self.warnings.items())),
                "by_domain": dict(self.by_domain.most_common()),
                "by_transition": dict(self.by_transition.most_common()),
                "sensor_notices": self.notices,
                "scope_escalations": self.escalations,
            },
            "notifications": {"sent": self.notifications, "by_channel": dict(self.by_channel)},
            "deliveries": {
                "ok": self.delivered,
                "failed": self.failed,
                "suppressed": self.suppressed,
                "by_receiver": dict(self.by_receiver.most_common()),
            },
            "citizen_broadcasts_requested": self.broadcasts,
            "received_by_agency": self.received,
            "elapsed_seconds": round(elapsed, 1),
        }


def clock(at: datetime, start: datetime | None) -> str:
    """Scenario time as an offset from its start (T+07:45, T+15d04h), else local time."""
    if start is None:
        return at.astimezone(ICT).strftime("%d/%m %H:%M")
    delta = max(at - start, timedelta(0))
    h, rest = divmod(int(delta.total_seconds()), 3600)
    if h >= 48:
        return f"T+{h // 24}d{h % 24:02d}h"
    return f"T+{h:02d}:{rest // 60:02d}"


def describe(w: Warning, tally: Tally, start: datetime | None) -> tuple[str, str]:
    """Count one warning state and say it in one line: (tag, text)."""
    level = str(w.level) if w.level else "all-clear"
    tally.warnings[level] += 1
    tally.by_domain[w.domain.value] += 1
    tally.by_transition[w.transition.value] += 1
    notice = w.hazard in NOTICES
    tally.notices += notice
    before = tally.scopes.get(w.warning_id)
    tally.scopes[w.warning_id] = w.scope_tier
    scope = w.scope_tier.value
    if before is not None and before is not w.scope_tier and w.level:
        scope = f"{before.value} → {w.scope_tier.value}"
        if SCOPE_RANK[w.scope_tier] > SCOPE_RANK[before]:
            tally.escalations.append(f"{w.warning_id}: {scope}")
    if w.transition in LOUD:
        tally.leads[(w.warning_id, w.version)] = w.lead_agency.code
    what = f"level {w.level} {w.level_name} ({w.severity.value})" if w.level else "all-clear"
    ev = w.evidence[0] if w.evidence else None
    why = ""
    if ev is not None and w.level:
        if w.hazard == "data_gap":  # the evidence's value is the silence, in minutes
            why = f" · silent for {ev.value:.0f} min"
        else:
            why = f" · {ev.metric} {ev.value:.4g}"
        if ev.threshold is not None:
            why += f" vs {ev.threshold:g}"
        elif w.hazard == "sensor_fault" and ev.note:
            why += f" ({ev.note})"
    areas = ", ".join(a.code for a in w.areas)
    text = (
        f"[{clock(w.updated_at, start)}] {w.domain.value}/{w.hazard} {w.subject}: "
        f"{w.transition.value} → {what}{why} · {scope}: {areas} · lead {w.lead_agency.code}"
    )
    tag = "CLEARED" if not w.level else ("NOTICE" if notice else "WARNING")
    return tag, text


def summary_text(s: dict[str, Any]) -> str:
    w, d, r = s["warnings"], s["deliveries"], s["readings"]
    sc = s.get("scenario") or {}
    hours = float(sc.get("hours", 0))
    span = f"{hours / 24:g} days" if hours >= 48 else f"{hours:g} h"
    levels = ", ".join(f"{k}: {v}" for k, v in w["by_level"].items())
    domains = ", ".join(f"{k} {v}" for k, v in w["by_domain"].items())
    receivers = ", ".join(f"{k} {v}" for k, v in d["by_receiver"].items())
    lines = [
        "",
        f"Summary — scenario {sc.get('name', '?')} ({span} at {sc.get('speed', 0):.0f}×), "
        f"{s['elapsed_seconds']} s:",
        f"  readings    {r['sent']} sent, {r['ingested']} ingested, {r['rejected']} rejected "
        f"(dead-lettered); reports: {s['reports']['sent']}",
        f"  warnings    {w['total']} states by domain: {domains or 'none'}",
        f"              by level: {levels or 'none'}; sensor/data-gap notices: "
        f"{w['sensor_notices']}",
    ]
    for esc in w["scope_escalations"]:
        lines.append(f"              scope escalation: {esc}")
    lines += [
        f"  deliveries  {d['ok']} webhooks delivered, {d['failed']} failed, {d['suppressed']} "
        f"held back (quiet hours, inhibited); {s['notifications']['sent']} webhook notifications",
        f"              per receiver: {receivers or 'none'}",
    ]
    if s["citizen_broadcasts_requested"]:
        lines.append(
            f"  citizens    {s['citizen_broadcasts_requested']} SMS/loudspeaker "
            "broadcasts asked for two operators' approval (none given in a demo)"
        )
    return "\n".join(lines)
