"""The record's tables (SQLAlchemy 2). Every table is keyed by a natural id taken
from the message or from the Kafka record's position, never by a counter: a batch
applied twice (a second line of defence behind the stored offsets) lands on the same
keys and changes nothing, and two runs of the same stream give the same rows.

Times are stored in UTC and read back timezone-aware on every database (SQLite keeps
no offset of its own)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime in, an aware UTC datetime out, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()}: the record keeps aware times")
        value = value.astimezone(UTC)
        # SQLite stores the text it is given: keep one form, so that text order is time order.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


class KafkaOffset(Base):
    """The next offset to read, per consumer group and partition: written in the same
    transaction as the rows it covers, and where the recorder seeks on start."""

    __tablename__ = "kafka_offsets"
    group_id: Mapped[str] = mapped_column(String(), primary_key=True)
    topic: Mapped[str] = mapped_column(String(), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    next_offset: Mapped[int] = mapped_column(BigInteger)


class WarningVersion(Base):
    """Every warning state (``canhbao.warnings``): one row per (warning, version)."""

    __tablename__ = "warning_versions"
    warning_id: Mapped[str] = mapped_column(String(), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule_id: Mapped[str] = mapped_column(String())
    domain: Mapped[str] = mapped_column(String(), index=True)
    hazard: Mapped[str] = mapped_column(String(), index=True)
    subject: Mapped[str] = mapped_column(String())
    transition: Mapped[str] = mapped_column(String())
    level: Mapped[int] = mapped_column(Integer)
    level_name: Mapped[str] = mapped_column(String())
    previous_level: Mapped[int] = mapped_column(Integer)
    severity: Mapped[str] = mapped_column(String())
    scope_tier: Mapped[str] = mapped_column(String())
    phase: Mapped[int] = mapped_column(Integer)
    lead_agency: Mapped[str] = mapped_column(String())
    lead_agency_name: Mapped[str] = mapped_column(String())
    status: Mapped[str] = mapped_column(String())
    raised_at: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(index=True)
    exercise: Mapped[bool] = mapped_column(Boolean)
    risk_level: Mapped[int | None] = mapped_column(Integer)
    areas: Mapped[list[Any]]
    evidence: Mapped[list[Any]]
    labels: Mapped[dict[str, Any]]
    annotations: Mapped[dict[str, Any]]
    message: Mapped[dict[str, Any]]  # the whole Warning as published
    # When the broker logged it (the producer's clock): the wall-clock time it was
    # published, where updated_at is the readings' time (a drill's runs ahead).
    logged_at: Mapped[datetime]


class WarningArea(Base):
    """The communes (areas) of each warning state, for "warnings of commune X"."""

    __tablename__ = "warning_areas"
    warning_id: Mapped[str] = mapped_column(String(), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    area: Mapped[str] = mapped_column(String(), primary_key=True, index=True)
    province: Mapped[str] = mapped_column(String())


class EvidenceReading(Base):
    """Readings the rules selected as evidence of a warning (for evidence charts),
    kept ``record_readings_days`` and purged after."""

    __tablename__ = "evidence_readings"
    station_id: Mapped[str] = mapped_column(String(), primary_key=True)
    metric: Mapped[str] = mapped_column(String(), primary_key=True)
    observed_at: Mapped[datetime] = mapped_column(primary_key=True, index=True)
    value: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    warning_id: Mapped[str] = mapped_column(String(), index=True)


class ReadingRow(Base):
    """Every validated reading (``canhbao.readings.<domain>``) that some rule in force
    selects (:mod:`recorder.readings`), for the charts of the report; kept
    ``record_readings_days`` and purged after. The key leads with (station, metric,
    observed_at), the order a chart reads a series in; ``area`` ('' when the reading
    names none) keeps apart the communes one unit reports for."""

    __tablename__ = "readings"
    station_id: Mapped[str] = mapped_column(String(), primary_key=True)
    metric: Mapped[str] = mapped_column(String(), primary_key=True)
    observed_at: Mapped[datetime] = mapped_column(primary_key=True, index=True)
    area: Mapped[str] = mapped_column(String(), primary_key=True)
    domain: Mapped[str] = mapped_column(String())
    value: Mapped[float] = mapped_column(Float)
    unit: Mapped[str | None] = mapped_column(String())
    source: Mapped[str | None] = mapped_column(String())
    drill: Mapped[bool] = mapped_column(Boolean)  # played by a drill (its own clock)


class NotificationRow(Base):
    """Every rendered notification (``canhbao.notifications.<channel>``)."""

    __tablename__ = "notifications"
    notification_id: Mapped[str] = mapped_column(String(), primary_key=True)
    warning_id: Mapped[str] = mapped_column(String(), index=True)
    warning_version: Mapped[int] = mapped_column(Integer)
    receiver_id: Mapped[str] = mapped_column(String())
    channel: Mapped[str] = mapped_column(String())
    audience: Mapped[str] = mapped_column(String())
    lang: Mapped[str] = mapped_column(String())
    recipients: Mapped[int] = mapped_column(Integer)
    subject: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    exercise: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(index=True)


class DeliveryAttempt(Base):
    """Each delivery attempt (``canhbao.receipts``). Keyed by notification, attempt and
    time: a receipt published again (after a dispatcher restart) is the same row, while
    a dispatcher that starts a notification's attempts over makes new ones."""

    __tablename__ = "delivery_attempts"
    notification_id: Mapped[str] = mapped_column(String(), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(primary_key=True, index=True)
    warning_id: Mapped[str] = mapped_column(String(), index=True)
    receiver_id: Mapped[str] = mapped_column(String())
    channel: Mapped[str] = mapped_column(String())
    outcome: Mapped[str] = mapped_column(String())
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    latency_seconds: Mapped[float] = mapped_column(Float)


class AuditEntry(Base):
    """Append-only: what operators (and the pipeline on their behalf) did and why:
    commands, approval decisions, rule sets applied, silences set and removed."""

    __tablename__ = "audit_log"
    event_id: Mapped[str] = mapped_column(String(), primary_key=True)
    kind: Mapped[str] = mapped_column(String())  # command, approval, rules, silence
    action: Mapped[str] = mapped_column(String())
    actor: Mapped[str] = mapped_column(String(), index=True)
    at: Mapped[datetime] = mapped_column(index=True)
    warning_id: Mapped[str | None] = mapped_column(String(), index=True)
    subject: Mapped[str | None] = mapped_column(String())  # broadcast, rule set, silence
    reason: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict[str, Any]]
    logged_at: Mapped[datetime]  # when the broker logged it (wall clock)


class BroadcastRow(Base):
    """Each citizen broadcast's latest state (``canhbao.state.broadcasts``)."""

    __tablename__ = "broadcasts"
    broadcast_id: Mapped[str] = mapped_column(String(), primary_key=True)
    warning_id: Mapped[str] = mapped_column(String(), index=True)
    warning_version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String())
    communes: Mapped[list[Any]]
    channels: Mapped[list[Any]]
    approvals: Mapped[list[Any]]
    requested_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    cancelled_by: Mapped[str | None] = mapped_column(String())
    reason: Mapped[str] = mapped_column(Text)
    position: Mapped[int] = mapped_column(BigInteger)  # offset of the state: newer wins


class RuleSetRow(Base):
    """Each rule set applied (``canhbao.control.rules``), with who applied it."""

    __tablename__ = "rule_sets"
    version: Mapped[str] = mapped_column(String(), primary_key=True)
    applied_at: Mapped[datetime] = mapped_column(primary_key=True)
    applied_by: Mapped[str] = mapped_column(String())
    comment: Mapped[str] = mapped_column(Text)
    sources: Mapped[dict[str, Any]]


class SilenceRow(Base):
    """Each silence's latest state (``canhbao.control.silences``); ``removed_at`` is
    when an operator (``removed_by``) lifted it early."""

    __tablename__ = "silences"
    silence_id: Mapped[str] = mapped_column(String(), primary_key=True)
    matchers: Mapped[list[Any]]
    starts_at: Mapped[datetime | None]
    ends_at: Mapped[datetime | None]
    created_by: Mapped[str | None] = mapped_column(String())
    comment: Mapped[str] = mapped_column(Text)
    removed_at: Mapped[datetime | None]
    # Who lifted it early (the lift's header on the tombstone; None for a tombstone
    # published before lifts carried their operator, or one without the header).
    removed_by: Mapped[str | None] = mapped_column(String())
    position: Mapped[int] = mapped_column(BigInteger)


class DeadLetterRow(Base):
    """Every dead letter, keyed by its place in ``canhbao.deadletter``."""

    __tablename__ = "dead_letters"
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    offset: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    source_topic: Mapped[str] = mapped_column(String(), index=True)
    source_partition: Mapped[int | None] = mapped_column(Integer)
    source_offset: Mapped[int | None] = mapped_column(BigInteger)
    stage: Mapped[str] = mapped_column(String())
    reason: Mapped[str] = mapped_column(Text)
    errors: Mapped[list[Any]]
    key: Mapped[bytes | None] = mapped_column(LargeBinary)
    original: Mapped[bytes] = mapped_column(LargeBinary)
    at: Mapped[datetime] = mapped_column(index=True)


class UnreadableRecord(Base):
    """A record the recorder could not read (not a message of its topic's contract):
    kept whole with the reason, so nothing the topics accepted is lost from the record."""

    __tablename__ = "unreadable_records"
    topic: Mapped[str] = mapped_column(String(), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    offset: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    key: Mapped[bytes | None] = mapped_column(LargeBinary)
    value: Mapped[bytes | None] = mapped_column(LargeBinary)
    reason: Mapped[str] = mapped_column(Text)
    logged_at: Mapped[datetime]


Index("ix_audit_log_kind_at", AuditEntry.kind, AuditEntry.at)
