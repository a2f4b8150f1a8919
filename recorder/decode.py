"""Kafka records → rows of the record. Pure: no database, no broker, so every rule
of what is recorded is unit-tested on its own, and the same record always gives the
same rows (no wall clock: a row's times come from the message or the record).

A record that is not a message of its topic's contract is not dropped: it becomes an
:class:`UnreadableRecord` row (the bytes and the reason) and a :class:`Skip` the
service logs and counts."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from alerting.routes import Silence
from recorder.readings import ReadingSelection
from recorder.schema import (
    AuditEntry,
    Base,
    BroadcastRow,
    DeadLetterRow,
    DeliveryAttempt,
    EvidenceReading,
    NotificationRow,
    ReadingRow,
    RuleSetRow,
    SilenceRow,
    UnreadableRecord,
    WarningArea,
    WarningVersion,
)
from topics.catalogue import (
    APPROVALS,
    COMMANDS,
    CONTROL_RULES,
    CONTROL_SILENCES,
    DEADLETTER,
    RECEIPTS,
    STATE_BROADCASTS,
    WARNINGS,
    notifications_topic,
    readings_topic,
)
from topics.errors import field_errors
from topics.models import (
    ApprovalEvent,
    Broadcast,
    Channel,
    Command,
    DeadLetter,
    DeliveryReceipt,
    Domain,
    Notification,
    Reading,
    RuleSetDoc,
    SilenceLift,
    Warning,
)

M = TypeVar("M", bound=BaseModel)

NOTIFICATION_TOPICS = tuple(notifications_topic(c) for c in Channel)
#: The validated readings: the record keeps those some rule in force selects.
READING_TOPICS = tuple(readings_topic(d) for d in Domain)

#: Every topic the recorder reads, in the catalogue's names.
TOPICS: tuple[str, ...] = (
    WARNINGS,
    *NOTIFICATION_TOPICS,
    RECEIPTS,
    COMMANDS,
    APPROVALS,
    STATE_BROADCASTS,
    DEADLETTER,
    CONTROL_RULES,
    CONTROL_SILENCES,
    *READING_TOPICS,
)


@dataclass(frozen=True)
class Incoming:
    """What the recorder needs of a Kafka record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def logged_at(self) -> datetime:
        """When the broker logged it: the time of a message that carries none."""
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)


@dataclass(frozen=True)
class Skip:
    """A record kept only as an unreadable row; ``reason`` is a metric label."""

    record: Incoming
    reason: str  # malformed, invalid, empty, unknown_topic
    detail: str


@dataclass
class Rows:
    """Rows of one batch, by table, in the order they came."""

    tables: dict[type[Base], list[dict[str, Any]]] = field(default_factory=dict)
    skipped: list[Skip] = field(default_factory=list)

    def add(self, table: type[Base], row: dict[str, Any]) -> None:
        self.tables.setdefault(table, []).append(row)

    def count(self) -> int:
        return sum(len(rows) for rows in self.tables.values())


def decode(records: Iterable[Incoming], selection: ReadingSelection | None = None) -> Rows:
    """The rows of ``records``. ``selection`` (the rule set in force) says which
    readings to keep, none without it; it first takes any newer rule set of the batch,
    so that a reading is judged by the set in force however the batch's partitions
    interleave."""
    records = list(records)
    if selection is not None:
        for record in records:
            if record.topic == CONTROL_RULES and record.value:
                # One that is not a rule set is recorded as unreadable below.
                with contextlib.suppress(ValidationError):
                    selection.adopt(RuleSetDoc.model_validate_json(record.value))
    rows = Rows()
    for record in records:
        decode_one(record, rows, selection)
    return rows


def decode_one(record: Incoming, rows: Rows, selection: ReadingSelection | None = None) -> None:
    if record.topic in READING_TOPICS:
        try:
            _reading(record, rows, selection)
        except _Unreadable as exc:
            unreadable(rows, record, exc.reason, exc.detail)
        return
    handler = _HANDLERS.get(record.topic)
    if handler is None:
        unreadable(rows, record, "unknown_topic", f"the recorder does not read {record.topic}")
        return
    try:
        handler(record, rows)
    except _Unreadable as exc:
        unreadable(rows, record, exc.reason, exc.detail)


class _Unreadable(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def unreadable(rows: Rows, record: Incoming, reason: str, detail: str) -> None:
    """Keep ``record`` whole as an unreadable row, with the reason."""
    rows.skipped.append(Skip(record, reason, detail))
    rows.add(
        UnreadableRecord,
        {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "key": record.key,
            "value": record.value,
            "reason": f"{reason}: {detail}",
            "logged_at": record.logged_at,
        },
    )


def _parse(model: type[M], record: Incoming) -> M:
    if not record.value:
        raise _Unreadable("empty", "no value (a tombstone where none belongs)")
    try:
        return model.model_validate_json(record.value)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors(include_url=False)):
            raise _Unreadable("malformed", "not valid JSON") from exc
        errors = "; ".join(field_errors(exc)[:5])
        raise _Unreadable("invalid", f"not a {model.__name__}: {errors}") from exc


#: The worker's table changelogs carry the partition a value was written from under
#: this key (its bookkeeping, not part of the message).
CHANGELOG_BOOKKEEPING = "_p"


def _parse_state(model: type[M], record: Incoming) -> M:
    """A value of a worker's table changelog: the message plus its bookkeeping."""
    try:
        value = json.loads(record.value or b"")
    except ValueError as exc:
        raise _Unreadable("malformed", "not valid JSON") from exc
    if not isinstance(value, dict):
        raise _Unreadable("invalid", f"not a {model.__name__}: not a JSON object")
    value.pop(CHANGELOG_BOOKKEEPING, None)
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        errors = "; ".join(field_errors(exc)[:5])
        raise _Unreadable("invalid", f"not a {model.__name__}: {errors}") from exc


def _json(model: BaseModel) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(model.model_dump_json())
    return out


def _warning(record: Incoming, rows: Rows) -> None:
    w = _parse(Warning, record)
    rows.add(
        WarningVersion,
        {
            "warning_id": w.warning_id,
            "version": w.version,
            "rule_id": w.rule_id,
            "domain": w.domain.value,
            "hazard": w.hazard,
            "subject": w.subject,
            "transition": w.transition.value,
            "level": w.level,
            "level_name": w.level_name,
            "previous_level": w.previous_level,
            "severity": w.severity.value,
            "scope_tier": w.scope_tier.value,
            "phase": int(w.phase),
            "lead_agency": w.lead_agency.code,
            "lead_agency_name": w.lead_agency.name_vi,
            "status": w.status.value,
            "raised_at": w.raised_at,
            "updated_at": w.updated_at,
            "exercise": w.exercise,
            "risk_level": w.risk_level,
            "areas": [a.model_dump(mode="json") for a in w.areas],
            "evidence": [e.model_dump(mode="json") for e in w.evidence],
            "labels": dict(w.labels),
            "annotations": dict(w.annotations),
            "message": _json(w),
            "logged_at": record.logged_at,
        },
    )
    for area in {a.code: a for a in w.areas}.values():
        rows.add(
            WarningArea,
            {
                "warning_id": w.warning_id,
                "version": w.version,
                "area": area.code,
                "province": area.province,
            },
        )
    for e in w.evidence:
        rows.add(
            EvidenceReading,
            {
                "station_id": e.station_id,
                "metric": e.metric,
                "observed_at": e.observed_at,
                "value": e.value,
                "threshold": e.threshold,
                "warning_id": w.warning_id,
            },
        )


def _reading(record: Incoming, rows: Rows, selection: ReadingSelection | None) -> None:
    r = _parse(Reading, record)
    if selection is None or not selection.selects(r):
        return  # no rule in force watches it: not the record's to keep
    rows.add(
        ReadingRow,
        {
            "station_id": r.station_id,
            "metric": r.metric,
            "observed_at": r.observed_at,
            "area": r.area or "",
            "domain": r.domain.value,
            "value": r.value,
            "unit": r.unit,
            "source": r.source,
            "drill": r.drill is not None,
        },
    )


def _notification(n: Notification, record: Incoming) -> dict[str, Any]:
    return {
        "notification_id": n.notification_id,
        "warning_id": n.warning_id,
        "warning_version": n.warning_version,
        "receiver_id": n.receiver_id,
        "channel": n.channel.value,
        "audience": n.audience.value,
        "lang": n.lang,
        "recipients": len(n.recipients),
        "subject": n.subject,
        "body": n.body,
        "exercise": n.exercise,
        "created_at": n.created_at,
    }


def _receipt(r: DeliveryReceipt, record: Incoming) -> dict[str, Any]:
    return {
        "notification_id": r.notification_id,
        "attempt": r.attempt,
        "at": r.at,
        "warning_id": r.warning_id,
        "receiver_id": r.receiver_id,
        "channel": r.channel.value,
        "outcome": r.outcome.value,
        "status_code": r.status_code,
        "error": r.error,
        "latency_seconds": r.latency_seconds,
    }


def _command(c: Command, record: Incoming) -> dict[str, Any]:
    return {
        "event_id": f"command:{c.command_id}",
        "kind": "command",
        "action": c.action.value,
        "actor": c.actor,
        "at": c.at,
        "warning_id": c.warning_id,
        "subject": None,
        "reason": c.reason,
        "detail": _json(c),
        "logged_at": record.logged_at,
    }


def _approval(ev: ApprovalEvent, record: Incoming) -> dict[str, Any]:
    detail = _json(ev)
    detail.pop("broadcast", None)  # the broadcast's state is in its own table
    return {
        "event_id": f"approval:{ev.event_id}",
        "kind": "approval",
        "action": ev.action.value,
        "actor": ev.actor,
        "at": ev.at,
        "warning_id": ev.warning_id,
        "subject": ev.broadcast_id,
        "reason": ev.reason,
        "detail": detail,
        "logged_at": record.logged_at,
    }


def _broadcast(record: Incoming, rows: Rows) -> None:
    if record.value is None:
        return  # a compacted topic's tombstone: the broadcast's last state stays recorded
    b = _parse_state(Broadcast, record)
    rows.add(
        BroadcastRow,
        {
            "broadcast_id": b.broadcast_id,
            "warning_id": b.warning.warning_id,
            "warning_version": b.warning.version,
            "status": b.status.value,
            "communes": list(b.communes),
            "channels": [c.value for c in b.channels],
            "approvals": list(b.approvals),
            "requested_at": b.requested_at,
            "expires_at": b.expires_at,
            "sent_at": b.sent_at,
            "cancelled_by": b.cancelled_by,
            "reason": b.reason,
            "position": record.offset,
        },
    )


def _deadletter(d: DeadLetter, record: Incoming) -> dict[str, Any]:
    return {
        "partition": record.partition,
        "offset": record.offset,
        "source_topic": d.source_topic,
        "source_partition": d.partition,
        "source_offset": d.offset,
        "stage": d.stage,
        "reason": d.reason,
        "errors": list(d.errors),
        "key": d.key,
        "original": d.original,
        "at": d.at,
    }


def _rules(record: Incoming, rows: Rows) -> None:
    doc = _parse(RuleSetDoc, record)
    rows.add(
        RuleSetRow,
        {
            "version": doc.version,
            "applied_at": doc.applied_at,
            "applied_by": doc.applied_by,
            "comment": doc.comment,
            "sources": dict(doc.sources),
        },
    )
    rows.add(
        AuditEntry,
        {
            "event_id": f"rules:{doc.version}@{doc.applied_at.isoformat()}",
            "kind": "rules",
            "action": "apply",
            "actor": doc.applied_by,
            "at": doc.applied_at,
            "warning_id": None,
            "subject": doc.version,
            "reason": doc.comment,
            "detail": {"version": doc.version, "files": sorted(doc.sources)},
            "logged_at": record.logged_at,
        },
    )


def _silence(record: Incoming, rows: Rows) -> None:
    # Keyed by the silence id; a tombstone lifts it, and its header names who lifted
    # it and why (`canhbao alerts unsilence --actor`; none on older tombstones).
    position = f"{record.topic}/{record.partition}/{record.offset}"
    if record.value is None:
        if not record.key:
            raise _Unreadable("invalid", "a tombstone without a silence id")
        sid = record.key.decode("utf-8", "replace")
        try:
            lift = SilenceLift.from_headers(record.headers)
        except ValidationError as exc:
            # The lift itself stands (every consumer lifted the silence): only who
            # did it is unreadable, and that is said in the audit entry.
            lift = None
            who = f"(unreadable lift header: {'; '.join(field_errors(exc)[:3])})"
        else:
            who = lift.actor if lift is not None else "(not recorded)"
        rows.add(
            SilenceRow,
            {
                "silence_id": sid,
                "matchers": [],
                "starts_at": None,
                "ends_at": None,
                "created_by": None,
                "comment": "",
                "removed_at": lift.at if lift is not None else record.logged_at,
                "removed_by": lift.actor if lift is not None else None,
                "position": record.offset,
            },
        )
        rows.add(
            AuditEntry,
            {
                "event_id": f"silence:{position}",
                "kind": "silence",
                "action": "remove",
                "actor": who,
                "at": lift.at if lift is not None else record.logged_at,
                "warning_id": None,
                "subject": sid,
                "reason": lift.reason if lift is not None else "",
                "detail": _json(lift) if lift is not None else {},
                "logged_at": record.logged_at,
            },
        )
        return
    s = _parse(Silence, record)
    if s.starts_at.tzinfo is None or s.ends_at.tzinfo is None:
        raise _Unreadable("invalid", f"silence {s.id}: times without a UTC offset")
    rows.add(
        SilenceRow,
        {
            "silence_id": s.id,
            "matchers": list(s.matchers),
            "starts_at": s.starts_at,
            "ends_at": s.ends_at,
            "created_by": s.created_by,
            "comment": s.comment,
            "removed_at": None,
            "removed_by": None,
            "position": record.offset,
        },
    )
    rows.add(
        AuditEntry,
        {
            "event_id": f"silence:{position}",
            "kind": "silence",
            "action": "set",
            "actor": s.created_by,
            "at": record.logged_at,
            "warning_id": None,
            "subject": s.id,
            "reason": s.comment,
            "detail": _json(s),
            "logged_at": record.logged_at,
        },
    )


@dataclass(frozen=True)
class _OneRow(Generic[M]):
    """A topic whose message is one row of one table: parse, build the row, add it."""

    model: type[M]
    table: type[Base]
    row: Callable[[M, Incoming], dict[str, Any]]

    def __call__(self, record: Incoming, rows: Rows) -> None:
        rows.add(self.table, self.row(_parse(self.model, record), record))


_HANDLERS: dict[str, Callable[[Incoming, Rows], None]] = {
    **dict.fromkeys(NOTIFICATION_TOPICS, _OneRow(Notification, NotificationRow, _notification)),
    RECEIPTS: _OneRow(DeliveryReceipt, DeliveryAttempt, _receipt),
    COMMANDS: _OneRow(Command, AuditEntry, _command),
    APPROVALS: _OneRow(ApprovalEvent, AuditEntry, _approval),
    DEADLETTER: _OneRow(DeadLetter, DeadLetterRow, _deadletter),
    # These make several rows of a message, or none.
    WARNINGS: _warning,
    STATE_BROADCASTS: _broadcast,
    CONTROL_RULES: _rules,
    CONTROL_SILENCES: _silence,
}
