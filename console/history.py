"""What the console shows of a warning's history, read from the threat record: the
readings and the rule's levels for its chart, its states, the operators' actions,
its notifications and every delivery attempt. The console does not import the
recorder (a service of the same layer): ``canhbao console`` passes in a
:class:`History` that reads the record, the tests pass their own.

The functions here are pure: they shape what the record returned for the page."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from alerting.chart import Period, Point, Threshold


class HistoryUnavailable(RuntimeError):
    """The record could not be read; the message says why (shown to the operator)."""


@dataclass(frozen=True)
class Level:
    """One of the rule's levels: its number, name ("II") and threshold value."""

    level: int
    name: str
    value: float


@dataclass(frozen=True)
class WarningRecord:
    """Everything the record holds about one warning (empty lists when it holds none
    of a kind). Times in ``actions``, ``notifications`` and ``deliveries`` are ISO 8601
    strings, as ``recorder.queries`` gives them."""

    periods: list[Period] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    levels: list[Level] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    first_published: datetime | None = None  # when the broker logged the first state


class History(Protocol):
    async def warning(self, warning_id: str, rule_id: str) -> WarningRecord | None:
        """The record of ``warning_id`` (raised by ``rule_id``), None when the record
        holds nothing of it; :class:`HistoryUnavailable` when it cannot be read."""
        ...


def thresholds(levels: list[Level], label: Any) -> list[Threshold]:
    """The rule's levels as the chart's dashed lines, each labelled ``label(level)``."""
    return [Threshold(lv.value, str(label(lv))) for lv in sorted(levels, key=lambda x: x.level)]


@dataclass(frozen=True)
class Event:
    """One line of the warning's timeline: a state change or an operator's action."""

    at: datetime
    kind: str  # "state" or "action"
    what: str  # the transition, or the action ("command/verify", "silence/set")
    actor: str  # "canhbao" for the pipeline's state changes
    detail: str  # the level for a state, the reason for an action
    level: int = 0
    version: int = 0


def timeline(periods: list[Period], actions: list[dict[str, Any]]) -> list[Event]:
    """State changes and operators' actions in the order they happened (a state change
    before an action at the same instant: the action answers it)."""
    events = [
        Event(p.start, "state", p.transition, "canhbao", p.level_name, p.level, p.version)
        for p in periods
    ]
    events += [
        Event(datetime.fromisoformat(a["at"]), "action", f"{a['kind']}/{a['action']}",
              a["actor"], a.get("reason") or "")
        for a in actions
    ]  # fmt: skip
    return sorted(events, key=lambda e: (e.at, e.kind != "state", e.version))


@dataclass(frozen=True)
class Delivery:
    """One notification and what became of it: per receiver and channel, how many
    attempts, the last outcome, when it was first delivered and how long after the
    notification was made."""

    notification_id: str
    receiver_id: str
    channel: str
    audience: str
    version: int
    created_at: datetime
    attempts: int
    outcome: str  # the last attempt's outcome; "" when nothing was attempted yet
    delivered_at: datetime | None
    delay_seconds: float | None  # created → first delivered
    error: str


def deliveries(
    notifications: list[dict[str, Any]], attempts: list[dict[str, Any]]
) -> list[Delivery]:
    """One row per notification, with its attempts folded in; attempts of a
    notification the record does not hold (yet) get a row of their own."""
    by_note: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in sorted(attempts, key=lambda a: (a["at"], a["attempt"])):
        by_note[a["notification_id"]].append(a)
    notes = {n["notification_id"]: n for n in notifications}
    for nid, tries in by_note.items():
        if nid not in notes:
            first = tries[0]
            notes[nid] = {"notification_id": nid, "receiver_id": first["receiver_id"],
                          "channel": first["channel"], "audience": first.get("audience") or "",
                          "warning_version": 0, "created_at": first["at"]}  # fmt: skip
    out = []
    for n in notes.values():
        tries = by_note.get(n["notification_id"], [])
        created = datetime.fromisoformat(n["created_at"])
        ok = next((a for a in tries if a["outcome"] == "delivered"), None)
        delivered = datetime.fromisoformat(ok["at"]) if ok else None
        last = tries[-1] if tries else None
        out.append(Delivery(
            notification_id=n["notification_id"], receiver_id=n["receiver_id"],
            channel=n["channel"], audience=n.get("audience") or "",
            version=int(n.get("warning_version") or 0), created_at=created,
            attempts=len(tries), outcome=last["outcome"] if last else "",
            delivered_at=delivered,
            delay_seconds=None if delivered is None else (delivered - created).total_seconds(),
            error=(last.get("error") or "") if last and last["outcome"] != "delivered" else "",
        ))  # fmt: skip
    return sorted(out, key=lambda d: (d.created_at, d.receiver_id, d.channel))
