"""Rule models. A rule says which readings it watches, how it decides a level,
and the labels and annotations the templates use."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from topics.models import Domain, Severity


class Direction(StrEnum):
    RISING = "rising"  # higher is worse (river level, AQI)
    FALLING = "falling"  # lower is worse (grid frequency, fuel reserve days)


class Selector(BaseModel):
    """Which readings a rule watches. Unset fields match anything."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    station: str | None = None
    metric: str
    area: str | None = None
    source: str | None = None


class Level(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    level: Annotated[int, Field(ge=1, le=5)]
    name: str = Field(min_length=1, max_length=32)
    value: float
    severity: Severity


class ThresholdCondition(BaseModel):
    """Multi-level threshold with hysteresis: a level is raised when the value
    reaches it and dropped only when the value falls ``hysteresis`` below it,
    so a river hovering at 4.30 m does not flap between raise and all-clear."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["threshold"] = "threshold"
    direction: Direction = Direction.RISING
    hysteresis: float = Field(default=0.0, ge=0)


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=128, pattern=r"^[a-z0-9][a-z0-9._-]*$")
    domain: Domain
    hazard: str = Field(min_length=1, max_length=64)
    selector: Selector
    condition: ThresholdCondition
    levels: list[Level] = Field(min_length=1)
    areas: list[str] = Field(
        default_factory=list, description="Commune codes affected; default: the station's commune"
    )
    scope: Literal["auto", "province"] = "auto"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _levels_ordered(self) -> Rule:
        numbers = [lv.level for lv in self.levels]
        if numbers != sorted(set(numbers)):
            raise ValueError("levels must be listed once each, in increasing order")
        values = [lv.value for lv in self.levels]
        ordered = sorted(values, reverse=self.condition.direction is Direction.FALLING)
        if values != ordered or len(set(values)) != len(values):
            worse = "higher" if self.condition.direction is Direction.RISING else "lower"
            raise ValueError(f"each level's value must be {worse} than the one before it")
        return self

    def level(self, number: int) -> Level:
        for lv in self.levels:
            if lv.level == number:
                return lv
        raise KeyError(f"rule {self.id} has no level {number}")


class RuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[Rule] = Field(default_factory=list)
