"""The routing tree, in the spirit of Prometheus Alertmanager: matchers on warning
labels, nested routes with ``continue``, named receivers; inhibition rules,
silences and quiet hours. Pure: configuration in, decisions out.

Labels of a warning state: its own ``labels`` plus ``domain``, ``hazard``,
``level``, ``severity``, ``phase``, ``status``, ``scope``, ``transition``,
``rule``, ``subject``, ``exercise`` and ``area`` (which matches when *any* of
the affected communes matches).

Aggregation groups (``group_by``, ``group_wait``, ``group_interval``,
``repeat_interval``, ``urgent``) are set on routes and inherited by their children,
as in Alertmanager; :class:`Grouping` is what a route ends up with, and
:mod:`alerting.grouping` applies it. A route where none of the four is set (nor on an
ancestor) is not grouped: its notifications go out at once, as they always have.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from topics import yamlio
from topics.durations import Duration, format_duration, parse_duration
from topics.errors import field_errors
from topics.models import Channel, Severity, Warning

_MATCHER = re.compile(r'^\s*([a-z_][a-z0-9_]*)\s*(=~|!~|!=|>=|<=|=|>|<)\s*"?([^"]*)"?\s*$')
NUMERIC = {"level", "phase", "risk_level"}


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Matcher:
        m = _MATCHER.match(text)
        if not m:
            raise ValueError(
                f'{text!r} is not a matcher; write name="value", name!="v", name=~"regex", '
                'name!~"regex", or level>=2'
            )
        name, op, value = m.groups()
        if value[:1] in ("=", "~", "!", "<", ">"):
            raise ValueError(f"{text!r} is not a matcher: the operator is {op!r}, then a value")
        if op in (">=", "<=", ">", "<") and name not in NUMERIC and name != "severity":
            raise ValueError(
                f"{text!r}: only level, phase, risk_level and severity compare with {op}"
            )
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"{text!r}: bad regular expression: {exc}") from exc
        return cls(name, op, value)

    def _one(self, actual: str) -> bool:
        op, value = self.op, self.value
        if op == "=":
            return actual == value
        if op == "!=":
            return actual != value
        if op == "=~":
            return re.fullmatch(value, actual) is not None
        if op == "!~":
            return re.fullmatch(value, actual) is None
        a: float
        b: float
        if self.name == "severity":
            a, b = _sev(actual), _sev(value)
        else:
            try:
                a, b = float(actual), float(value)
            except ValueError:
                return False
        return {">=": a >= b, "<=": a <= b, ">": a > b, "<": a < b}[op]

    def matches(self, labels: dict[str, list[str]]) -> bool:
        values = labels.get(self.name, [""])
        if self.op in ("!=", "!~"):
            return all(self._one(v) for v in values)
        return any(self._one(v) for v in values)


_sev = Severity.rank_of


def labels_of(warning: Warning) -> dict[str, list[str]]:
    labels = {k: [v] for k, v in warning.labels.items()}
    labels.update(
        domain=[warning.domain.value],
        hazard=[warning.hazard],
        level=[str(warning.level)],
        severity=[warning.severity.value],
        phase=[str(int(warning.phase))],
        status=[warning.status.value],
        scope=[warning.scope_tier.value],
        transition=[warning.transition.value],
        rule=[warning.rule_id],
        subject=[warning.subject],
        warning_id=[warning.warning_id],
        exercise=[str(warning.exercise).lower()],
        area=[a.code for a in warning.areas] or [""],
        # The official disaster risk level (1-5), "" when the warning states none.
        risk_level=[str(warning.risk_level) if warning.risk_level else ""],
    )
    return labels


def _matchers(value: list[str]) -> tuple[Matcher, ...]:
    return _parse_all(tuple(value))


@lru_cache(maxsize=4096)
def _parse_all(texts: tuple[str, ...]) -> tuple[Matcher, ...]:
    # Matchers are checked for every warning and every route: parse each text once.
    return tuple(Matcher.parse(v) for v in texts)


_ZERO = re.compile(r"^\s*0+(\.0*)?\s*[smhdw]?\s*$")


def _delay(value: Any) -> timedelta:
    # Like a rule's Duration, but zero is allowed: "group_wait: 0s" means "do not wait".
    if not isinstance(value, bool) and (
        value == 0 or (isinstance(value, str) and _ZERO.match(value))
    ):
        return timedelta(0)
    return parse_duration(value)


Delay = Annotated[
    timedelta, BeforeValidator(_delay), PlainSerializer(format_duration, return_type=str)
]
EACH_WARNING = "..."  # group_by: [...]: every warning is a group of its own
MAX_GROUP_WAIT = timedelta(hours=1)
MAX_GROUP_INTERVAL = timedelta(days=1)
DEFAULT_URGENT = ('severity>="Severe"',)
_LABEL = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class Grouping:
    """The aggregation options a route ends up with, its ancestors' included.

    ``by`` None: each warning is its own group. ``urgent``: an active state that
    matches all of them is sent at once, alone, whatever the group is waiting for."""

    by: tuple[str, ...] | None = None
    wait: timedelta = timedelta(0)
    interval: timedelta = timedelta(0)
    repeat: timedelta | None = None
    urgent: tuple[str, ...] = DEFAULT_URGENT

    @property
    def immediate(self) -> bool:
        """Each warning alone and nothing to wait for: every state can go out at once
        (the group then only keeps time for reminders)."""
        return self.by is None and not self.wait and not self.interval

    def is_urgent(self, warning: Warning, labels: dict[str, list[str]]) -> bool:
        # An all-clear is never urgent: it may wait for the group like any change.
        return (
            warning.active
            and bool(self.urgent)
            and all(m.matches(labels) for m in _matchers(list(self.urgent)))
        )


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    matchers: list[str] = Field(default_factory=list)
    receivers: list[str] = Field(default_factory=list)
    continue_: bool = Field(default=False, alias="continue")
    routes: list[Route] = Field(default_factory=list)
    # Aggregation groups; unset means "as the parent route" (see Grouping).
    group_by: list[str] | None = None
    group_wait: Delay | None = None
    group_interval: Delay | None = None
    repeat_interval: Duration | None = None
    urgent: list[str] | None = None
    _grouping: Grouping | None = PrivateAttr(default=None)

    @field_validator("matchers")
    @classmethod
    def _valid(cls, value: list[str]) -> list[str]:
        _matchers(value)
        return value

    @field_validator("urgent")
    @classmethod
    def _valid_urgent(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            _matchers(value)
        return value

    @field_validator("group_by")
    @classmethod
    def _valid_group_by(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        if EACH_WARNING in value and len(value) > 1:
            raise ValueError(
                "'...' makes each warning its own group: it cannot be combined with label names"
            )
        for name in value:
            if name != EACH_WARNING and not _LABEL.match(name):
                raise ValueError(
                    f"{name!r} is not a label name (e.g. domain, hazard, area, or a rule's label)"
                )
        if len(set(value)) != len(value):
            raise ValueError("a label is named twice")
        return value

    @field_validator("group_wait")
    @classmethod
    def _wait_bound(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value > MAX_GROUP_WAIT:
            raise ValueError(
                f"group_wait {format_duration(value)} holds warnings back too long "
                f"(at most {format_duration(MAX_GROUP_WAIT)})"
            )
        return value

    @field_validator("group_interval")
    @classmethod
    def _interval_bound(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value > MAX_GROUP_INTERVAL:
            raise ValueError(
                f"group_interval {format_duration(value)} is too long "
                f"(at most {format_duration(MAX_GROUP_INTERVAL)})"
            )
        return value

    def parsed(self) -> tuple[Matcher, ...]:
        return _matchers(self.matchers)

    @property
    def grouping(self) -> Grouping | None:
        """The route's aggregation options (inherited); None when it is not grouped."""
        return self._grouping


class Target(BaseModel):
    """Who a receiver addresses; resolved per warning from the directory."""

    model_config = ConfigDict(extra="forbid")

    lead_agency: bool = False
    coordinators: bool = False
    commune_committees: bool = False
    citizens: bool = False
    station_owner: bool = False
    agencies: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _something(self) -> Target:
        if not (
            self.lead_agency
            or self.coordinators
            or self.commune_committees
            or self.citizens
            or self.station_owner
            or self.agencies
        ):
            raise ValueError("a receiver must address someone (lead_agency, agencies, ...)")
        return self


class Approval(BaseModel):
    """Citizen-wide messages at or above ``min_severity`` wait for two operators."""

    model_config = ConfigDict(extra="forbid")

    min_severity: Severity = Severity.SEVERE
    expires_after: Duration = Field(default_factory=lambda: timedelta(minutes=30))


class ReceiverConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    to: Target
    channels: list[Channel] = Field(min_length=1)
    approval: Approval | None = None


class InhibitRule(BaseModel):
    """A source warning that is active suppresses target warnings with equal labels."""

    model_config = ConfigDict(extra="forbid")

    source_matchers: list[str] = Field(min_length=1)
    target_matchers: list[str] = Field(min_length=1)
    equal: list[str] = Field(default_factory=list)

    @field_validator("source_matchers", "target_matchers")
    @classmethod
    def _valid(cls, value: list[str]) -> list[str]:
        _matchers(value)
        return value


class QuietHours(BaseModel):
    """Non-urgent notifications on these channels are held back at night."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    channels: list[Channel] = Field(min_length=1)
    start: time = Field(alias="from")
    end: time = Field(alias="to")
    utc_offset_hours: float = 7.0
    unless: list[str] = Field(default_factory=lambda: ['severity>="Severe"'])

    @field_validator("unless")
    @classmethod
    def _valid(cls, value: list[str]) -> list[str]:
        _matchers(value)
        return value

    def applies(self, channel: Channel, labels: dict[str, list[str]], at: datetime) -> bool:
        if channel not in self.channels:
            return False
        if self.unless and all(m.matches(labels) for m in _matchers(self.unless)):
            return False
        local = at.astimezone(timezone(timedelta(hours=self.utc_offset_hours))).time()
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


class Silence(BaseModel):
    """Time-bound, with who and why, as operators need to account for it later."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64)
    matchers: list[str] = Field(min_length=1)
    starts_at: datetime
    ends_at: datetime
    created_by: str = Field(min_length=1)
    comment: str = Field(min_length=1)

    @field_validator("matchers")
    @classmethod
    def _valid(cls, value: list[str]) -> list[str]:
        _matchers(value)
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Silence:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self

    def silences(self, labels: dict[str, list[str]], at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at and all(
            m.matches(labels) for m in _matchers(self.matchers)
        )


class RoutingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    route: Route
    receivers: list[ReceiverConfig] = Field(min_length=1)
    inhibit_rules: list[InhibitRule] = Field(default_factory=list)
    quiet_hours: list[QuietHours] = Field(default_factory=list)
    silences: list[Silence] = Field(default_factory=list)
    # The root route's repeat_interval when it sets none (kept for older files).
    default_repeat_interval: Duration | None = None

    @model_validator(mode="after")
    def _receivers_exist(self) -> RoutingConfig:
        names = {r.name for r in self.receivers}
        if len(names) != len(self.receivers):
            raise ValueError("receiver names must be unique")
        missing: list[str] = []

        def walk(route: Route, path: str) -> None:
            for name in route.receivers:
                if name not in names:
                    missing.append(f"{path}: unknown receiver {name!r}")
            for i, child in enumerate(route.routes):
                walk(child, f"{path}.routes.{i}")

        walk(self.route, "route")
        if missing:
            raise ValueError("; ".join(missing))
        if not self.route.receivers:
            raise ValueError("route: the root route needs a default receiver")
        problems: list[str] = []
        root = _Inherited(repeat=self.default_repeat_interval)
        _resolve_grouping(self.route, root, "route", problems)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def receiver(self, name: str) -> ReceiverConfig:
        for r in self.receivers:
            if r.name == name:
                return r
        raise KeyError(name)


@dataclass(frozen=True)
class _Inherited:
    """Grouping options as set so far down the tree (None: not set)."""

    by: tuple[str, ...] | None = None
    wait: timedelta | None = None
    interval: timedelta | None = None
    repeat: timedelta | None = None
    urgent: tuple[str, ...] | None = None

    def below(self, route: Route) -> _Inherited:
        by = None if route.group_by is None else tuple(route.group_by)
        urgent = None if route.urgent is None else tuple(route.urgent)
        return _Inherited(
            by=self.by if by is None else by,
            wait=self.wait if route.group_wait is None else route.group_wait,
            interval=self.interval if route.group_interval is None else route.group_interval,
            repeat=self.repeat if route.repeat_interval is None else route.repeat_interval,
            urgent=self.urgent if urgent is None else urgent,
        )

    def grouping(self) -> Grouping | None:
        if self.by is None and self.wait is None and self.interval is None and self.repeat is None:
            return None  # nothing configured: today's behaviour, every state at once
        return Grouping(
            by=None if self.by is None or self.by == (EACH_WARNING,) else self.by,
            wait=self.wait or timedelta(0),
            interval=self.interval or timedelta(0),
            repeat=self.repeat,
            urgent=DEFAULT_URGENT if self.urgent is None else self.urgent,
        )


def _resolve_grouping(route: Route, parent: _Inherited, path: str, problems: list[str]) -> None:
    here = parent.below(route)
    grouping = here.grouping()
    if grouping is not None and grouping.repeat is not None and grouping.repeat < grouping.interval:
        problems.append(
            f"{path}: repeat_interval {format_duration(grouping.repeat)} is shorter than "
            f"group_interval {format_duration(grouping.interval)}"
        )
    route._grouping = grouping
    for i, child in enumerate(route.routes):
        _resolve_grouping(child, here, f"{path}.routes.{i}", problems)


class RoutingError(ValueError):
    pass


def load_routing(path: Path) -> RoutingConfig:
    try:
        data = yamlio.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RoutingError(f"{path}: {exc}") from exc
    try:
        return RoutingConfig.model_validate(data)
    except ValidationError as exc:
        raise RoutingError("\n".join(field_errors(exc, "(file)", prefix=f"{path}: "))) from exc


def matching_routes(route: Route, labels: dict[str, list[str]]) -> list[Route]:
    """Alertmanager semantics: the deepest matching routes; siblings after a match
    are tried only when that route says ``continue``."""
    if not all(m.matches(labels) for m in route.parsed()):
        return []
    found: list[Route] = []
    for child in route.routes:
        hit = matching_routes(child, labels)
        if hit:
            found += hit
            if not child.continue_:
                break
    return found or [route]


def receivers_with_grouping(
    config: RoutingConfig, warning: Warning, labels: dict[str, list[str]] | None = None
) -> list[tuple[ReceiverConfig, Grouping | None]]:
    """Each receiver once, with the grouping of the first matching route that names it.
    ``labels``: the warning's (:func:`labels_of`), when the caller has them already."""
    labels = labels_of(warning) if labels is None else labels
    found: dict[str, Grouping | None] = {}
    for route in matching_routes(config.route, labels):
        for name in route.receivers:
            if name not in found:
                found[name] = route.grouping
    return [(config.receiver(n), g) for n, g in found.items()]


def inhibited_by(
    config: RoutingConfig,
    warning: Warning,
    active: Iterable[Warning],
    labels: dict[str, list[str]] | None = None,
) -> Warning | None:
    """The active warning that suppresses ``warning``, if any. ``active`` is read only
    when an inhibit rule's target matchers match ``warning``."""
    target = labels_of(warning) if labels is None else labels
    for rule in config.inhibit_rules:
        if not all(m.matches(target) for m in _matchers(rule.target_matchers)):
            continue
        for other in active:
            if other.warning_id == warning.warning_id or not other.active:
                continue
            source = labels_of(other)
            if not all(m.matches(source) for m in _matchers(rule.source_matchers)):
                continue
            if all(set(source.get(k, [""])) & set(target.get(k, [""])) for k in rule.equal):
                return other
    return None


def silenced_by(
    silences: Iterable[Silence],
    warning: Warning,
    at: datetime,
    labels: dict[str, list[str]] | None = None,
) -> Silence | None:
    labels = labels_of(warning) if labels is None else labels
    for s in silences:
        if s.silences(labels, at):
            return s
    return None


def quiet(
    config: RoutingConfig,
    channel: Channel,
    warning: Warning,
    at: datetime,
    labels: dict[str, list[str]] | None = None,
) -> bool:
    if not config.quiet_hours:
        return False
    labels = labels_of(warning) if labels is None else labels
    return any(q.applies(channel, labels, at) for q in config.quiet_hours)


def needs_approval(receiver: ReceiverConfig, warning: Warning) -> bool:
    a = receiver.approval
    return a is not None and warning.active and warning.severity.rank >= a.min_severity.rank
