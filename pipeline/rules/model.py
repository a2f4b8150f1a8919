"""Rule models. A rule says which readings it watches, how it turns them into a
quantity and a level, and the labels and annotations the templates use.

Every kind that yields a number (threshold, rate of change, windowed aggregate,
endemic channel, EARS) shares the same level logic: levels in order, a
direction, hysteresis on the way down and an optional sustained duration on the
way up. Staleness, report and compound rules raise a single kind of state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)

from topics.durations import Duration, format_duration, parse_duration
from topics.models import Domain, Severity


class Direction(StrEnum):
    RISING = "rising"  # higher is worse (river level, AQI, case counts)
    FALLING = "falling"  # lower is worse (grid frequency, fuel reserve days)


class GroupBy(StrEnum):
    """What one warning is about: one per station, per commune, per province or per source."""

    STATION = "station"
    AREA = "area"
    PROVINCE = "province"
    SOURCE = "source"


class Selector(BaseModel):
    """Which readings a rule watches. Unset fields match anything."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    station: str | None = None
    stations: list[str] | None = None
    metric: str | None = None
    area: str | None = None
    source: str | None = None


class Level(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    level: Annotated[int, Field(ge=1, le=5)]
    name: str = Field(min_length=1, max_length=32)
    value: float = 0.0
    severity: Severity


class _Levelled(BaseModel):
    """Shared by kinds that compute a number and compare it with the levels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    direction: Direction = Direction.RISING
    hysteresis: float = Field(default=0.0, ge=0)
    sustained: Duration | None = Field(
        default=None, description="the level must hold this long before it is raised"
    )


class ThresholdCondition(_Levelled):
    """The reading's value against the levels (river alarm levels, AQI bands)."""

    kind: Literal["threshold"] = "threshold"


class RateCondition(_Levelled):
    """Change per hour over a window (e.g. a river rising faster than 0.3 m/h)."""

    kind: Literal["rate_of_change"] = "rate_of_change"
    window: Duration
    min_span: Duration | None = Field(
        default=None, description="need readings spanning this long (default: half the window)"
    )


class Aggregate(StrEnum):
    SUM = "sum"
    COUNT = "count"
    MEAN = "mean"
    MAX = "max"
    MIN = "min"
    RATE = "rate"  # sum per second over the window


class WindowCondition(_Levelled):
    """An aggregate over a sliding or tumbling window (24 h rain, logins per 5 min)."""

    kind: Literal["window"] = "window"
    aggregate: Aggregate
    window: Duration
    mode: Literal["sliding", "tumbling"] = "sliding"
    min_count: int = Field(
        default=1, ge=1, description="readings needed in the window before it is judged"
    )


@dataclass(frozen=True)
class Intervals:
    """A silence measured in the station's own reporting intervals ("3 intervals")."""

    count: float

    def __str__(self) -> str:
        return f"{self.count:g} interval{'' if self.count == 1 else 's'}"


_INTERVALS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*intervals?\s*$")


def _parse_silence(value: Any) -> timedelta | Intervals:
    if isinstance(value, Intervals):
        return value
    if isinstance(value, str) and "interval" in value:
        m = _INTERVALS.match(value)
        if not m or float(m.group(1)) <= 0:
            raise ValueError(
                f"{value!r} is not a number of intervals: use e.g. '3 intervals' (the station's "
                "reporting interval times 3) or a duration such as '30m'"
            )
        return Intervals(float(m.group(1)))
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"{exc}; or a number of reporting intervals, e.g. '3 intervals'") from None


def _format_silence(value: timedelta | Intervals) -> str:
    return str(value) if isinstance(value, Intervals) else format_duration(value)


Silence = Annotated[
    timedelta | Intervals,
    BeforeValidator(_parse_silence),
    PlainSerializer(_format_silence, return_type=str),
]


class StalenessCondition(BaseModel):
    """A station silent for longer than ``silent_for`` raises a data-gap notice.

    ``silent_for`` is a duration, or a number of the station's reporting intervals
    ("3 intervals"): the interval is ``report_every`` from the geography file or,
    when the station's recent readings come faster, what they show. Networks report
    at different cadences (15 min automatic gauges, hourly bulletins), and a fixed
    limit flaps on the slower ones. ``at_least`` is the shortest limit, and the limit
    of a station whose interval is not known yet."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["staleness"] = "staleness"
    silent_for: Silence
    at_least: Duration | None = Field(
        default=None,
        description="never judge a station silent sooner than this; the limit while its "
        "interval is unknown",
    )

    @model_validator(mode="after")
    def _needs_floor(self) -> StalenessCondition:
        if isinstance(self.silent_for, Intervals) and self.at_least is None:
            raise ValueError(
                "silent_for in intervals needs at_least: the limit for a station whose "
                "reporting interval is not known yet (and the shortest limit of all)"
            )
        return self

    def describe(self) -> str:
        """The limit as an engineer wrote it, for notes and reports."""
        text = _format_silence(self.silent_for)
        return f"{text}, at least {format_duration(self.at_least)}" if self.at_least else text


class EndemicCondition(_Levelled):
    """Weekly counts per commune against the endemic channel of past seasons.

    The level values are ``k`` in ``mean + k·SD`` of the same ISO week in the
    baseline file (CSV: ``area,year,week,count``)."""

    kind: Literal["endemic_channel"] = "endemic_channel"
    baseline: str = Field(min_length=1, description="CSV file, relative to the rule file")
    min_sd: float = Field(default=1.0, gt=0, description="floor for SD (few past cases)")


class EarsCondition(_Levelled):
    """CDC EARS C1/C2/C3 on daily counts; level values are the statistic's threshold."""

    kind: Literal["ears"] = "ears"
    method: Literal["C1", "C2", "C3"] = "C2"
    min_sd: float = Field(default=0.2, gt=0)


class ReportCondition(BaseModel):
    """A report of one of ``categories`` at or above ``min_severity`` in an area.

    It corroborates an active warning of the same domain in that area (of one of
    ``corroborates``' hazards, when given); with nothing to corroborate it raises its
    own, at the level of its severity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["report"] = "report"
    categories: list[str] = Field(min_length=1)
    min_severity: Severity = Severity.MODERATE
    expires_after: Duration = Field(default_factory=lambda: timedelta(hours=24))
    corroborates: list[str] | None = Field(
        default=None,
        description="hazards whose active warnings the report corroborates instead of "
        "raising its own; unset: any hazard warning of the domain; []: none, it always "
        "raises its own (a typhoon warning is not a flood warning's update)",
    )


class Component(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: str | None = None
    hazard: str | None = None
    domain: Domain | None = None
    min_level: int = Field(default=1, ge=1, le=5)

    @model_validator(mode="after")
    def _something(self) -> Component:
        if self.rule is None and self.hazard is None and self.domain is None:
            raise ValueError("a component needs at least one of rule, hazard, domain")
        return self


class CompoundCondition(BaseModel):
    """All components active in the same commune (72 h rain AND soil moisture)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["compound"] = "compound"
    all_of: list[Component] = Field(min_length=2)


Condition = Annotated[
    ThresholdCondition
    | RateCondition
    | WindowCondition
    | StalenessCondition
    | EndemicCondition
    | EarsCondition
    | ReportCondition
    | CompoundCondition,
    Field(discriminator="kind"),
]
LEVELLED = (ThresholdCondition, RateCondition, WindowCondition, EndemicCondition, EarsCondition)


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=128, pattern=r"^[a-z0-9][a-z0-9._-]*$")
    domain: Domain
    hazard: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")
    selector: Selector = Field(default_factory=Selector)
    group_by: GroupBy = GroupBy.STATION
    condition: Condition
    levels: list[Level] = Field(min_length=1)
    areas: list[str] = Field(
        default_factory=list, description="Commune codes affected; default: from the station"
    )
    scope: Literal["auto", "province"] = "auto"
    notify: bool = Field(default=True, description="False: only feeds compound rules")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        numbers = [lv.level for lv in self.levels]
        if numbers != sorted(set(numbers)):
            raise ValueError("levels must be listed once each, in increasing order")
        cond = self.condition
        if isinstance(cond, LEVELLED):
            values = [lv.value for lv in self.levels]
            ordered = sorted(values, reverse=cond.direction is Direction.FALLING)
            if values != ordered or len(set(values)) != len(values):
                worse = "higher" if cond.direction is Direction.RISING else "lower"
                raise ValueError(f"each level's value must be {worse} than the one before it")
        needs_metric = (ThresholdCondition, RateCondition, WindowCondition, EarsCondition)
        if isinstance(cond, needs_metric) and self.selector.metric is None:
            raise ValueError(f"selector.metric is required for a {cond.kind} rule")
        if isinstance(cond, EndemicCondition | EarsCondition) and self.group_by not in (
            GroupBy.AREA,
            GroupBy.PROVINCE,
        ):
            raise ValueError(f"a {cond.kind} rule counts per commune: group_by area or province")
        per_commune = isinstance(cond, ReportCondition | CompoundCondition)
        if per_commune and self.group_by is not GroupBy.AREA:
            raise ValueError(f"a {cond.kind} rule is per commune: group_by must be area")
        if isinstance(cond, StalenessCondition | CompoundCondition) and len(self.levels) != 1:
            raise ValueError(f"a {cond.kind} rule has exactly one level")
        return self

    @property
    def levelled(self) -> bool:
        return isinstance(self.condition, LEVELLED)

    def level(self, number: int) -> Level:
        for lv in self.levels:
            if lv.level == number:
                return lv
        raise KeyError(f"rule {self.id} has no level {number}")


class RuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[Rule] = Field(default_factory=list)
