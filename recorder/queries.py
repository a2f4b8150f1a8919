"""Questions people ask of the record (``canhbao history``): warnings by time, domain,
hazard, level, commune and status; one warning's timeline; actions by person;
deliveries that failed or were slow. Each answer is a list of plain dicts (JSON-ready:
times as ISO 8601 strings), the same for the text, JSON and CSV outputs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from recorder.schema import (
    AuditEntry,
    Base,
    BroadcastRow,
    DeadLetterRow,
    DeliveryAttempt,
    EvidenceReading,
    NotificationRow,
    ReadingRow,
    WarningArea,
    WarningVersion,
)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _row(obj: Base, columns: Sequence[str]) -> dict[str, Any]:
    return {c: _plain(getattr(obj, c)) for c in columns}


@dataclass(frozen=True)
class WarningFilter:
    since: datetime | None = None
    until: datetime | None = None
    domain: str | None = None
    hazard: str | None = None
    level: int | None = None
    commune: str | None = None
    status: str | None = None
    warning_id: str | None = None
    latest: bool = False  # only each warning's newest version
    exercise: bool | None = None
    # A reader's scope (an API token): only these domains / communes; None: all.
    domains: tuple[str, ...] | None = None
    communes: tuple[str, ...] | None = None


WARNING_COLUMNS = (
    "warning_id",
    "version",
    "updated_at",
    "transition",
    "domain",
    "hazard",
    "subject",
    "level",
    "level_name",
    "severity",
    "status",
    "scope_tier",
    "phase",
    "lead_agency",
    "raised_at",
    "exercise",
)


def _warning_query(f: WarningFilter) -> Select[tuple[WarningVersion]]:
    q = select(WarningVersion)
    if f.since is not None:
        q = q.where(WarningVersion.updated_at >= f.since)
    if f.until is not None:
        q = q.where(WarningVersion.updated_at < f.until)
    if f.domain:
        q = q.where(WarningVersion.domain == f.domain)
    if f.hazard:
        q = q.where(WarningVersion.hazard == f.hazard)
    if f.level is not None:
        q = q.where(WarningVersion.level == f.level)
    if f.status:
        q = q.where(WarningVersion.status == f.status)
    if f.warning_id:
        q = q.where(WarningVersion.warning_id == f.warning_id)
    if f.exercise is not None:
        q = q.where(WarningVersion.exercise == f.exercise)
    if f.domains is not None:
        q = q.where(WarningVersion.domain.in_(f.domains))
    if f.communes is not None:
        q = q.where(
            select(WarningArea.area)
            .where(
                WarningArea.warning_id == WarningVersion.warning_id,
                WarningArea.version == WarningVersion.version,
                WarningArea.area.in_(f.communes),
            )
            .exists()
        )
    if f.commune:
        q = q.where(
            select(WarningArea.area)
            .where(
                WarningArea.warning_id == WarningVersion.warning_id,
                WarningArea.version == WarningVersion.version,
                WarningArea.area == f.commune,
            )
            .exists()
        )
    return q.order_by(WarningVersion.updated_at, WarningVersion.warning_id, WarningVersion.version)


async def warnings(engine: AsyncEngine, f: WarningFilter) -> list[dict[str, Any]]:
    """Warning states matching ``f``, oldest first, with their communes."""
    async with AsyncSession(engine) as session:
        found = list((await session.execute(_warning_query(f))).scalars())
    if f.latest:
        newest: dict[str, WarningVersion] = {}
        for w in found:
            if w.warning_id not in newest or newest[w.warning_id].version < w.version:
                newest[w.warning_id] = w
        found = [w for w in found if newest[w.warning_id] is w]
    out = []
    for w in found:
        row = _row(w, WARNING_COLUMNS)
        row["communes"] = [a["code"] for a in w.areas]
        row["evidence"] = w.evidence
        out.append(row)
    return out


ACTION_COLUMNS = ("at", "actor", "kind", "action", "warning_id", "subject", "reason", "event_id")


async def actions(
    engine: AsyncEngine,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    actor: str | None = None,
    kind: str | None = None,
    warning_id: str | None = None,
) -> list[dict[str, Any]]:
    """The audit log (who did what, when, why), oldest first."""
    q = select(AuditEntry)
    if since is not None:
        q = q.where(AuditEntry.at >= since)
    if until is not None:
        q = q.where(AuditEntry.at < until)
    if actor:
        q = q.where(AuditEntry.actor == actor)
    if kind:
        q = q.where(AuditEntry.kind == kind)
    if warning_id:
        q = q.where(AuditEntry.warning_id == warning_id)
    q = q.order_by(AuditEntry.at, AuditEntry.event_id)
    async with AsyncSession(engine) as session:
        return [_row(a, ACTION_COLUMNS) for a in (await session.execute(q)).scalars()]


DELIVERY_COLUMNS = (
    "at",
    "warning_id",
    "notification_id",
    "receiver_id",
    "channel",
    "attempt",
    "outcome",
    "status_code",
    "error",
    "latency_seconds",
)


async def deliveries(
    engine: AsyncEngine,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    failed: bool = False,
    slower_than: float | None = None,
    channel: str | None = None,
    receiver: str | None = None,
    warning_id: str | None = None,
) -> list[dict[str, Any]]:
    """Delivery attempts, oldest first. ``delay_seconds`` is the time from the
    notification's creation to this attempt's outcome (what the receiver waited);
    ``failed``: attempts that gave up; ``slower_than``: a delay above that."""
    q = select(DeliveryAttempt, NotificationRow.created_at, NotificationRow.audience).join(
        NotificationRow,
        NotificationRow.notification_id == DeliveryAttempt.notification_id,
        isouter=True,
    )
    if since is not None:
        q = q.where(DeliveryAttempt.at >= since)
    if until is not None:
        q = q.where(DeliveryAttempt.at < until)
    if failed:
        q = q.where(DeliveryAttempt.outcome == "failed")
    if channel:
        q = q.where(DeliveryAttempt.channel == channel)
    if receiver:
        q = q.where(DeliveryAttempt.receiver_id == receiver)
    if warning_id:
        q = q.where(DeliveryAttempt.warning_id == warning_id)
    q = q.order_by(DeliveryAttempt.at, DeliveryAttempt.notification_id, DeliveryAttempt.attempt)
    out = []
    async with AsyncSession(engine) as session:
        for attempt, created_at, audience in (await session.execute(q)).tuples():
            row = _row(attempt, DELIVERY_COLUMNS)
            row["audience"] = audience
            delay = None if created_at is None else (attempt.at - created_at).total_seconds()
            row["delay_seconds"] = None if delay is None else round(delay, 3)
            if slower_than is not None and (delay is None or delay <= slower_than):
                continue
            out.append(row)
    return out


#: A warning's readings are charted from this long before it was raised (the river
#: rising to the threshold) to this long after its last state (going down).
READINGS_MARGIN = timedelta(hours=1)


@dataclass(frozen=True)
class EventReadings:
    """The readings of a warning's stations and metrics (those its states gave as
    evidence) around the event: every reading the rules selected, and the evidence."""

    selected: list[ReadingRow]
    evidence: list[EvidenceReading]


async def event_readings(session: AsyncSession, states: Sequence[WarningVersion]) -> EventReadings:
    series = sorted({(e["station_id"], e["metric"]) for s in states for e in s.evidence})
    if not series:
        return EventReadings([], [])
    start = min(s.raised_at for s in states) - READINGS_MARGIN
    end = max(s.updated_at for s in states) + READINGS_MARGIN
    selected: list[ReadingRow] = []
    evidence: list[EvidenceReading] = []
    for station, metric in series:  # each a range of the key (station, metric, time)
        selected += await session.scalars(
            select(ReadingRow)
            .where(
                ReadingRow.station_id == station,
                ReadingRow.metric == metric,
                ReadingRow.observed_at >= start,
                ReadingRow.observed_at <= end,
            )
            .order_by(ReadingRow.observed_at, ReadingRow.area)
        )
        evidence += await session.scalars(
            select(EvidenceReading)
            .where(
                EvidenceReading.station_id == station,
                EvidenceReading.metric == metric,
                EvidenceReading.observed_at >= start,
                EvidenceReading.observed_at <= end,
            )
            .order_by(EvidenceReading.observed_at)
        )
    return EventReadings(selected, evidence)


async def timeline(engine: AsyncEngine, warning_id: str) -> dict[str, Any] | None:
    """Everything recorded about one warning: its states, notifications and their
    attempts, operators' actions, broadcasts, and the readings of its stations around
    it; None when the record has none of it."""
    states = await warnings(engine, WarningFilter(warning_id=warning_id))
    acts = await actions(engine, warning_id=warning_id)
    sends = await deliveries(engine, warning_id=warning_id)
    async with AsyncSession(engine) as session:
        notes = (
            await session.scalars(
                select(NotificationRow)
                .where(NotificationRow.warning_id == warning_id)
                .order_by(NotificationRow.created_at, NotificationRow.notification_id)
            )
        ).all()
        casts = (
            await session.scalars(
                select(BroadcastRow)
                .where(BroadcastRow.warning_id == warning_id)
                .order_by(BroadcastRow.requested_at)
            )
        ).all()
        versions = (
            await session.scalars(
                select(WarningVersion).where(WarningVersion.warning_id == warning_id)
            )
        ).all()
        around = await event_readings(session, versions)
    if not (states or acts or sends or notes):
        return None
    note_cols = (
        "created_at",
        "notification_id",
        "warning_version",
        "receiver_id",
        "channel",
        "audience",
        "lang",
        "recipients",
        "subject",
    )
    cast_cols = (
        "broadcast_id",
        "warning_version",
        "status",
        "communes",
        "channels",
        "approvals",
        "requested_at",
        "expires_at",
        "sent_at",
        "cancelled_by",
        "reason",
    )
    return {
        "warning_id": warning_id,
        "states": states,
        "notifications": [_row(n, note_cols) for n in notes],
        "deliveries": sends,
        "actions": acts,
        "broadcasts": [_row(b, cast_cols) for b in casts],
        "readings": [
            _row(r, ("observed_at", "station_id", "metric", "area", "value", "unit"))
            for r in around.selected
        ],
    }


async def dead_letters(engine: AsyncEngine, since: datetime | None = None) -> list[dict[str, Any]]:
    q = select(DeadLetterRow).order_by(DeadLetterRow.at, DeadLetterRow.partition)
    if since is not None:
        q = q.where(DeadLetterRow.at >= since)
    cols = ("at", "source_topic", "source_partition", "source_offset", "stage", "reason")
    async with AsyncSession(engine) as session:
        return [_row(d, cols) for d in await session.scalars(q)]
