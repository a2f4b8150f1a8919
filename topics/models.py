"""Pydantic message models: the contract of every Kafka topic.

Every message carries ``schema_version`` so that a consumer can tell which
shape it is reading while producers and consumers are upgraded one at a time.
A consumer accepts any version it knows; unknown versions go to the
dead-letter topic with a reason instead of being guessed at.

Times are always timezone-aware: a reading without an offset cannot be placed
on a timeline shared by several provinces, so it is rejected.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from enum import IntEnum, StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)

from topics.ids import BroadcastId, subject_of

SCHEMA_VERSION = 1

# Identifiers travel as Kafka keys and in URLs: keep them boring.
Identifier = Annotated[
    str,
    Field(min_length=1, max_length=128, pattern=r"^[a-z0-9][a-z0-9._:-]*$"),
]


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    return value


def _finite(value: float) -> float:
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("must be a finite number")
    return value


FiniteFloat = Annotated[float, BeforeValidator(_not_bool), AfterValidator(_finite)]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Domain(StrEnum):
    """Threat domains from the provincial plans (one lead agency each)."""

    WATER = "water"
    ENVIRONMENT = "environment"
    HEALTH = "health"
    CYBER = "cyber"
    ENERGY = "energy"
    GEOLOGY = "geology"


class Severity(StrEnum):
    """CAP 1.2 severity."""

    EXTREME = "Extreme"
    SEVERE = "Severe"
    MODERATE = "Moderate"
    MINOR = "Minor"
    UNKNOWN = "Unknown"

    @property
    def rank(self) -> int:
        """The one order of severities: 0 (Unknown) to 4 (Extreme). Engine, routing,
        grouping, CAP and reports' evidence (which records a severity as its rank)
        all compare by it."""
        return _SEVERITY_RANK[self]

    @classmethod
    def of_rank(cls, rank: int) -> Severity:
        """The severity of a rank; Unknown for a number that is none."""
        return _SEVERITY_OF_RANK.get(rank, Severity.UNKNOWN)

    @classmethod
    def rank_of(cls, name: str) -> int:
        """The rank of a severity's name (in a route matcher, say); 0 for another word."""
        try:
            return cls(name).rank
        except ValueError:
            return 0


_SEVERITY_RANK = {
    Severity.UNKNOWN: 0,
    Severity.MINOR: 1,
    Severity.MODERATE: 2,
    Severity.SEVERE: 3,
    Severity.EXTREME: 4,
}
_SEVERITY_OF_RANK = {rank: s for s, rank in _SEVERITY_RANK.items()}


class ScopeTier(StrEnum):
    """Who directs the response (framework scenario of plan 418)."""

    COMMUNE = "commune"
    PROVINCE = "province"
    NATIONAL = "national"


class Phase(IntEnum):
    """1: domain incident; 2: security/public-order threat; 3: state of emergency."""

    INCIDENT = 1
    SECURITY = 2
    EMERGENCY = 3


class LifecycleStatus(StrEnum):
    NEW = "new"
    VERIFIED = "verified"
    RESPONDING = "responding"
    RECOVERING = "recovering"
    CLOSED = "closed"


class Transition(StrEnum):
    """What changed in the warning state that this message announces."""

    RAISED = "raised"
    ESCALATED = "escalated"
    DEESCALATED = "deescalated"
    UPDATED = "updated"
    CLEARED = "cleared"


class Channel(StrEnum):
    WEBHOOK = "webhook"
    EMAIL = "email"
    SMS = "sms"
    LOUDSPEAKER = "loudspeaker"
    CAP = "cap"


class Audience(StrEnum):
    AGENCY = "agency"
    COMMUNE = "commune"
    CITIZEN = "citizen"
    PARTNER = "partner"


class Message(BaseModel):
    """Base of every topic message: strict about unknown fields, versioned."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)

    schema_version: int = SCHEMA_VERSION

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value < 1 or value > SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {value} is not supported (this build reads 1..{SCHEMA_VERSION})"
            )
        return value

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode("utf-8")


class DrillClock(BaseModel):
    """The clock of a drill played in compressed time (``canhbao simulate``, the demo,
    ``canhbao feed replay --shift-to-now``): scenario time ``start`` at wall-clock time
    ``origin``, running ``speed`` times as fast. A drill's readings are dated on this
    clock, ahead of the wall clock by design; the pipeline judges their time against
    it (the clock-skew and lateness bounds apply in wall time) instead of refusing them
    as future-dated. Only the drill players set it; the ingest API refuses it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    origin: AwareDatetime
    start: AwareDatetime
    speed: float = Field(gt=0, le=1_000_000)

    def at(self, wall: datetime) -> datetime:
        """Scenario time on this drill's clock when the wall clock says ``wall``."""
        return self.start + (wall - self.origin) * self.speed

    def wall(self, span: timedelta) -> timedelta:
        """A span of scenario time in wall time."""
        return span / self.speed


# Omitted from the JSON when unset: a reading that is not part of a drill is
# byte-for-byte what it was before drills carried their clock.
DrillField = Annotated[
    DrillClock | None,
    Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="Set by drill players only (never by sensors or the ingest API)",
    ),
]


class Reading(Message):
    """One observation from a sensor or a feed (topic ``canhbao.ingest.readings``)."""

    station_id: Identifier
    domain: Domain
    metric: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")]
    value: FiniteFloat
    unit: str | None = Field(default=None, max_length=16)
    observed_at: AwareDatetime
    source: str | None = Field(default=None, max_length=128)
    area: Identifier | None = Field(
        default=None, description="Commune/ward code where the station stands, if known"
    )
    drill: DrillField = None


class Report(Message):
    """A human or agency report (topic ``canhbao.ingest.reports``)."""

    report_id: Identifier
    domain: Domain
    category: Annotated[str, Field(min_length=1, max_length=64)]
    severity: Severity
    areas: list[Identifier] = Field(min_length=1)
    observed_at: AwareDatetime
    reporter: Annotated[str, Field(min_length=1, max_length=128)]
    text: str = Field(default="", max_length=4000)
    drill: DrillField = None


class Area(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str
    name: str
    province: str


class Agency(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str
    name_vi: str
    name_en: str


class Evidence(BaseModel):
    """Why the warning is at its level: the reading that decided it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    station_id: str
    metric: str
    value: float
    observed_at: AwareDatetime
    threshold: float | None = None
    note: str = ""
    # The drill clock of the reading (or report), so that its wall-clock time can be told
    # (end-to-end latency); omitted when unset, so live evidence is what it was.
    drill: DrillField = None

    def observed_wall(self) -> datetime:
        """When it was observed on the wall clock: a drill's scenario time mapped back."""
        d = self.drill
        return (
            d.origin + (self.observed_at - d.start) / d.speed if d is not None else self.observed_at
        )


class RiskAdjustment(BaseModel):
    """An operator's raise of a warning's risk level under Article 4 clause 4 of Decision
    18/2021/QĐ-TTg (two or more hazards together or in succession: by 1; with serious
    risk to people and property: by 2; at most 5). Recorded on the warning, with who
    decided it and why; it lasts until the all-clear, over the level the Decision gives."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    by: int = Field(ge=1, le=2)
    from_level: int = Field(ge=1, le=5, description="the level the Decision's tables give")
    actor: Annotated[str, Field(min_length=1, max_length=128)]
    reason: Annotated[str, Field(min_length=1, max_length=2000)]
    at: AwareDatetime


def _unset(value: Any) -> bool:
    return value is None


class Warning(Message):
    """One state of one warning (topic ``canhbao.warnings``, keyed by ``warning_id``).

    ``version`` grows by one with every state change, so that consumers and
    the delivery ledger can tell an update from a replay.
    """

    warning_id: Annotated[str, Field(min_length=1, max_length=256)]
    version: int = Field(ge=1)
    rule_id: str
    domain: Domain
    hazard: str
    subject: str
    transition: Transition
    level: int = Field(ge=0, le=5, description="0 means cleared")
    level_name: str
    previous_level: int = Field(default=0, ge=0, le=5)
    severity: Severity
    areas: list[Area] = Field(default_factory=list)
    scope_tier: ScopeTier
    phase: Phase = Phase.INCIDENT
    lead_agency: Agency
    status: LifecycleStatus = LifecycleStatus.NEW
    evidence: list[Evidence] = Field(default_factory=list)
    raised_at: AwareDatetime
    updated_at: AwareDatetime
    previous_updated_at: AwareDatetime | None = Field(
        default=None, description="when the previous version was issued (CAP references)"
    )
    exercise: bool = False
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    # The official disaster risk level (Decision 18/2021/QĐ-TTg, alerting.risk), 1-5, with
    # the article and clause that give it; an operator's raise (Article 4 clause 4) is
    # included in risk_level and recorded in risk_adjustment. Omitted from the JSON when
    # unset: a warning of a hazard without a risk level is byte-for-byte what it was, and
    # schema version 1 readers built before these fields still read it.
    risk_level: int | None = Field(default=None, ge=1, le=5, exclude_if=_unset)
    risk_basis: str | None = Field(default=None, max_length=200, exclude_if=_unset)
    risk_adjustment: RiskAdjustment | None = Field(default=None, exclude_if=_unset)

    @property
    def active(self) -> bool:
        return self.transition is not Transition.CLEARED

    @model_validator(mode="after")
    def _risk_consistent(self) -> Warning:
        if self.risk_level is None and (self.risk_basis or self.risk_adjustment):
            raise ValueError("risk_basis and risk_adjustment need a risk_level")
        adj = self.risk_adjustment
        if adj is not None and self.risk_level != min(5, adj.from_level + adj.by):
            raise ValueError(
                f"risk_level {self.risk_level} is not {adj.from_level} raised by {adj.by}"
            )
        return self


class Action(StrEnum):
    """Operator events on ``canhbao.commands``: lifecycle steps and phase changes."""

    VERIFY = "verify"
    RESPOND = "respond"
    RECOVER = "recover"
    CLOSE = "close"
    SET_PHASE = "set_phase"
    CORROBORATE = "corroborate"
    RAISE_RISK = "raise_risk"  # Decision 18/2021/QĐ-TTg, Article 4 clause 4


class Command(Message):
    """An operator (or pipeline) event about one warning, keyed by the warning's subject.

    Phases 2 and 3 change who leads, so a phase change must say who decided it
    and why: it is refused without ``actor`` and ``reason``. So is ``raise_risk``,
    which raises the warning's disaster risk level by ``risk_by`` (1 or 2; 0 withdraws
    an earlier raise)."""

    command_id: Annotated[str, Field(min_length=1, max_length=128)]
    warning_id: Annotated[str, Field(min_length=3, max_length=256, pattern=r"^[^:]+:.+$")]
    action: Action
    actor: Annotated[str, Field(min_length=1, max_length=128)]
    reason: str = Field(default="", max_length=2000)
    phase: Phase | None = None
    risk_by: int | None = Field(default=None, ge=0, le=2, exclude_if=_unset)
    evidence: list[Evidence] = Field(default_factory=list)
    at: AwareDatetime = Field(default_factory=utcnow)

    @property
    def subject(self) -> str:
        """The partition key: the warning's subject (station, commune, ...)."""
        return subject_of(self.warning_id)

    @field_validator("reason")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    @model_validator(mode="after")
    def _phase_rules(self) -> Command:
        if self.action is Action.SET_PHASE:
            if self.phase is None:
                raise ValueError("set_phase needs a phase (1, 2 or 3)")
            if not self.reason:
                raise ValueError("a phase change needs a reason")
        elif self.phase is not None:
            raise ValueError(f"phase is only for set_phase, not {self.action.value}")
        if self.action is Action.RAISE_RISK:
            if self.risk_by is None:
                raise ValueError("raise_risk needs risk_by: 1, 2, or 0 to withdraw a raise")
            if not self.reason:
                raise ValueError("raising a risk level needs a reason (the hazards together)")
        elif self.risk_by is not None:
            raise ValueError(f"risk_by is only for raise_risk, not {self.action.value}")
        return self


class RuleSetDoc(Message):
    """A rule set as published on ``canhbao.control.rules`` (compacted, key ``active``).

    It carries the source files themselves, so every worker compiles exactly
    what ``canhbao rules apply`` checked."""

    version: str
    sources: dict[str, str]
    applied_by: str
    applied_at: AwareDatetime = Field(default_factory=utcnow)
    comment: str = ""


#: The header of a tombstone on ``canhbao.control.silences`` that says who lifted the
#: silence (a :class:`SilenceLift`): a tombstone has no value to say it in.
SILENCE_LIFT_HEADER = "canhbao-lift"


class SilenceLift(Message):
    """Who lifted a silence before its end, when and why: the JSON of the
    ``canhbao-lift`` header on the silence's tombstone. Consumers that do not know it
    ignore headers, so the tombstone still lifts the silence for every one of them; a
    tombstone without the header (published before lifts carried it) lifts it too,
    by nobody on record."""

    silence_id: str = Field(min_length=1, max_length=64)
    actor: str = Field(min_length=1, max_length=128)
    reason: str = Field(default="", max_length=4000)
    at: AwareDatetime = Field(default_factory=utcnow)

    def header(self) -> tuple[str, bytes]:
        return (SILENCE_LIFT_HEADER, self.to_bytes())

    @classmethod
    def from_headers(cls, headers: Sequence[tuple[str, bytes]]) -> SilenceLift | None:
        """The lift a record's headers carry; None when they carry none.
        ``ValidationError`` when the header is there but not a lift."""
        for name, value in headers:
            if name == SILENCE_LIFT_HEADER:
                return cls.model_validate_json(value)
        return None


class Tick(Message):
    """A clock tick on ``canhbao.clock``: time-driven rules run for this partition."""

    at: AwareDatetime


class Notification(Message):
    """A rendered message for one receiver on one channel (``canhbao.notifications.<channel>``)."""

    notification_id: Annotated[str, Field(min_length=1, max_length=400)]
    warning_id: str
    warning_version: int = Field(ge=1)
    receiver_id: Identifier
    channel: Channel
    audience: Audience
    address: str = Field(min_length=1, description="URL, e-mail, phone or MQTT topic; no secrets")
    recipients: list[str] = Field(
        default_factory=list, description="a fan-out batch: many citizens, one rendering"
    )
    lang: Literal["vi", "en", "km"] = "vi"
    subject: str = ""
    body: str
    html: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    exercise: bool = False
    created_at: AwareDatetime = Field(default_factory=utcnow)
    # The wall-clock time the reading that decided this warning state was observed: the
    # dispatcher's end-to-end latency (canhbao_end_to_end_latency_seconds) starts there.
    # Unset for reminders and digests, which wait by design; omitted from the JSON then.
    observed_at: AwareDatetime | None = Field(default=None, exclude_if=_unset)


class GroupEntry(Message):
    """One warning state for one receiver, held for an aggregation group
    (``canhbao.group.notifications``, keyed by ``group_key``). ``sent``: the route stage
    already delivered it (urgent, or nothing to wait for); the group only keeps count,
    for its digests and reminders. Durations are in seconds."""

    group_key: Annotated[str, Field(min_length=1, max_length=1000)]
    labels: dict[str, str] = Field(default_factory=dict)
    receiver_id: Identifier
    channel: Channel
    audience: Audience
    address: str = Field(min_length=1)
    lang: Literal["vi", "en", "km"] = "vi"
    warning: Warning
    group_wait: float = Field(default=0, ge=0)
    group_interval: float = Field(default=0, ge=0)
    repeat_interval: float | None = Field(default=None, gt=0)
    sent: bool = False
    routed_at: AwareDatetime = Field(default_factory=utcnow)


class BroadcastStatus(StrEnum):
    PENDING = "pending"  # waiting for two operators
    SENT = "sent"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"  # a newer state of the warning asked for its own


class Broadcast(Message):
    """A message to citizens of some communes, held until two operators approve it."""

    broadcast_id: str
    warning: Warning
    communes: list[str]
    channels: list[Channel]
    requested_at: AwareDatetime
    expires_at: AwareDatetime
    status: BroadcastStatus = BroadcastStatus.PENDING
    approvals: list[str] = Field(default_factory=list)
    sent_at: AwareDatetime | None = None
    cancelled_by: str | None = None
    reason: str = ""
    #: Who asked for it (the request event's actor: an account in the console, or
    #: ``canhbao`` when the route stage asks): that person may not approve it.
    requested_by: str | None = None


class ApprovalAction(StrEnum):
    REQUEST = "request"
    APPROVE = "approve"
    CANCEL = "cancel"


class ApprovalEvent(Message):
    """On ``canhbao.approvals``, keyed by the warning id (all its broadcasts together)."""

    event_id: str
    broadcast_id: str
    action: ApprovalAction
    actor: Annotated[str, Field(min_length=1, max_length=128)]
    reason: str = ""
    broadcast: Broadcast | None = None
    at: AwareDatetime = Field(default_factory=utcnow)

    @field_validator("broadcast_id")
    @classmethod
    def _broadcast_id(cls, value: str) -> str:
        BroadcastId.parse(value)  # its warning is the Kafka key: refuse what has none
        return value

    @model_validator(mode="after")
    def _request_has_broadcast(self) -> ApprovalEvent:
        if self.action is ApprovalAction.REQUEST and self.broadcast is None:
            raise ValueError("a request carries the broadcast")
        if self.action is ApprovalAction.CANCEL and not self.reason.strip():
            raise ValueError("a cancellation needs a reason")
        return self

    @property
    def warning_id(self) -> str:
        return BroadcastId.parse(self.broadcast_id).warning_id


class DeliveryOutcome(StrEnum):
    DELIVERED = "delivered"
    RETRYING = "retrying"
    FAILED = "failed"
    SUPPRESSED = "suppressed"  # silenced, inhibited or quiet hours: recorded, not sent
    DUPLICATE = "duplicate"  # already delivered before (ledger): not sent again


class DeliveryReceipt(Message):
    """The result of one delivery attempt (topic ``canhbao.receipts``)."""

    notification_id: str
    warning_id: str
    receiver_id: str
    channel: Channel
    attempt: int = Field(ge=1)
    outcome: DeliveryOutcome
    status_code: int | None = None
    error: str | None = None
    latency_seconds: float = Field(ge=0)
    at: AwareDatetime = Field(default_factory=utcnow)


class DeadLetter(Message):
    """A message the pipeline could not accept, kept whole with the reason.

    ``original`` holds the exact bytes received (base64 in JSON) so nothing is
    lost: after a fix, the record can be replayed to its source topic.
    """

    source_topic: str
    partition: int | None = None
    offset: int | None = None
    key: bytes | None = None
    original: bytes
    stage: str
    reason: str
    errors: list[str] = Field(default_factory=list)
    at: AwareDatetime = Field(default_factory=utcnow)

    @field_serializer("original", "key")
    def _b64(self, value: bytes | None) -> str | None:
        return None if value is None else base64.b64encode(value).decode("ascii")

    @field_validator("original", "key", mode="before")
    @classmethod
    def _unb64(cls, value: Any) -> Any:
        if isinstance(value, str):
            return base64.b64decode(value, validate=True)
        return value


class BreakerState(BaseModel):
    """A receiver a dispatcher has stopped sending to for a while (its circuit breaker)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    receiver_id: str
    state: Literal["open", "half-open"]
    failures: int = Field(ge=0)


class ServiceStatus(Message):
    """What a running service says of itself on ``canhbao.state.services`` (compacted, keyed
    ``service:instance``), every ``every_s`` seconds and when it stops (a tombstone):
    a worker its rules version in force, a dispatcher its open circuit breakers."""

    service: str = Field(min_length=1, max_length=64)  # worker, dispatch:webhook ...
    instance: str = Field(min_length=1, max_length=256)  # host and pid, or the group instance id
    rules_version: str | None = None
    breakers: list[BreakerState] = Field(default_factory=list)
    every_s: float = Field(default=30.0, gt=0)
    at: AwareDatetime = Field(default_factory=utcnow)

    @property
    def key(self) -> str:
        return f"{self.service}:{self.instance}"
