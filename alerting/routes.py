"""The routing tree, in the spirit of Prometheus Alertmanager: matchers on warning
labels, nested routes with ``continue``, named receivers; inhibition rules,
silences and quiet hours. Pure: configuration in, decisions out.

Labels of a warning state: its own ``labels`` plus ``domain``, ``hazard``,
``level``, ``severity``, ``phase``, ``status``, ``scope``, ``transition``,
``rule``, ``subject``, ``exercise`` and ``area`` (which matches when *any* of
the affected communes matches).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.rules.model import Duration
from topics.models import Channel, Severity, Warning

_MATCHER = re.compile(r'^\s*([a-z_][a-z0-9_]*)\s*(=~|!~|!=|>=|<=|=|>|<)\s*"?([^"]*)"?\s*$')
NUMERIC = {"level", "phase"}
SEVERITY_ORDER = ["Unknown", "Minor", "Moderate", "Severe", "Extreme"]


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
            raise ValueError(f"{text!r}: only level, phase and severity compare with {op}")
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


def _sev(name: str) -> int:
    return SEVERITY_ORDER.index(name) if name in SEVERITY_ORDER else 0


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
    )
    return labels


def _matchers(value: list[str]) -> tuple[Matcher, ...]:
    return _parse_all(tuple(value))


@lru_cache(maxsize=4096)
def _parse_all(texts: tuple[str, ...]) -> tuple[Matcher, ...]:
    # Matchers are checked for every warning and every route: parse each text once.
    return tuple(Matcher.parse(v) for v in texts)


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    matchers: list[str] = Field(default_factory=list)
    receivers: list[str] = Field(default_factory=list)
    continue_: bool = Field(default=False, alias="continue")
    routes: list[Route] = Field(default_factory=list)
    repeat_interval: Duration | None = None

    @field_validator("matchers")
    @classmethod
    def _valid(cls, value: list[str]) -> list[str]:
        _matchers(value)
        return value

    def parsed(self) -> tuple[Matcher, ...]:
        return _matchers(self.matchers)


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
        return self

    def receiver(self, name: str) -> ReceiverConfig:
        for r in self.receivers:
            if r.name == name:
                return r
        raise KeyError(name)


class RoutingError(ValueError):
    pass


def load_routing(path: Path) -> RoutingConfig:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RoutingError(f"{path}: {exc}") from exc
    try:
        return RoutingConfig.model_validate(data)
    except ValidationError as exc:
        raise RoutingError(
            "\n".join(
                f"{path}: {'.'.join(map(str, e['loc'])) or '(file)'}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
        ) from exc


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


def receivers_for(config: RoutingConfig, warning: Warning) -> list[ReceiverConfig]:
    labels = labels_of(warning)
    names: list[str] = []
    for route in matching_routes(config.route, labels):
        for name in route.receivers:
            if name not in names:
                names.append(name)
    return [config.receiver(n) for n in names]


def inhibited_by(config: RoutingConfig, warning: Warning, active: list[Warning]) -> Warning | None:
    """The active warning that suppresses ``warning``, if any."""
    target = labels_of(warning)
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


def silenced_by(silences: list[Silence], warning: Warning, at: datetime) -> Silence | None:
    labels = labels_of(warning)
    for s in silences:
        if s.silences(labels, at):
            return s
    return None


def quiet(config: RoutingConfig, channel: Channel, warning: Warning, at: datetime) -> bool:
    labels = labels_of(warning)
    return any(q.applies(channel, labels, at) for q in config.quiet_hours)


def needs_approval(receiver: ReceiverConfig, warning: Warning) -> bool:
    a = receiver.approval
    return (
        a is not None
        and warning.active
        and _sev(warning.severity.value) >= _sev(a.min_severity.value)
    )


Decision = Literal["send", "silenced", "inhibited", "quiet"]
