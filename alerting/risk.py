"""The official disaster risk level of a warning (Decision 18/2021/QĐ-TTg).

Pure: the Decision's tables are data (``risk_levels.yaml`` beside this module), the
station's zone and historical peak come from the geography (``station_risk``), and
:meth:`RiskTable.assess` turns a warning's alarm level and measured quantity into a
level from 1 to 5 with the article and clause it comes from. The lifecycle
(:mod:`pipeline.lifecycle`) calls it for every warning state; an operator may then
raise the level under Article 4 clause 4 (:func:`adjusted`), never the code itself.

Floods (Article 45): the level follows the alarm level the rule reached (I, II, III)
and, above III, the water level (III + 0.3 m, III + 1.0 m, the historical peak),
read against the station's zone (khu vực 1-4). Above III the water level is judged
with the rule's hysteresis, as the alarm levels are, so that a river hovering at
III + 0.3 m does not flap between two risk levels.

Heavy rain (Article 44): the 24-hour total the rule measured.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alerting.palette import DECISION, PALETTE
from topics import yamlio
from topics.errors import field_errors

DATA = Path(__file__).parent / "risk_levels.yaml"
MAX_LEVEL = 5
# Article 4 clause 4: raised by 1, or by 2 when people and property are seriously threatened.
ADJUSTMENT_BASIS = f"{DECISION} Điều 4 khoản 4"

RiskLevel = Annotated[int, Field(ge=1, le=MAX_LEVEL)]
_POINT = re.compile(r"^(I|II|III)(\+(\d+(\.\d+)?))?$|^historical$")
_ALARM = {"I": 1, "II": 2, "III": 3}
# Floating point: 6.3 + 0.3 is 6.6000000000000005, and a river at 6.60 m has reached it.
_EPSILON = 1e-9


class _Row(BaseModel):
    """From a point on (``from``: at or above it; ``above``: strictly above it), the
    level is ``level``, until the next row."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    at: str | float | None = Field(default=None, alias="from")
    above: str | float | None = None
    level: RiskLevel
    clause: str = Field(min_length=1)

    @model_validator(mode="after")
    def _one_point(self) -> _Row:
        if (self.at is None) == (self.above is None):
            raise ValueError("give exactly one of from and above")
        return self

    @property
    def point(self) -> str | float:
        point = self.at if self.at is not None else self.above
        assert point is not None
        return point

    @property
    def strict(self) -> bool:
        return self.above is not None


class _Hazard(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    article: int = Field(ge=1)
    quantity: str | None = None  # the evidence metric the bands read (rain)
    zones: dict[int, list[_Row]] | None = None  # floods: rows per station zone
    bands: list[_Row] | None = None  # rows on the quantity itself

    @model_validator(mode="after")
    def _shape(self) -> _Hazard:
        if (self.zones is None) == (self.bands is None):
            raise ValueError("give zones (by station zone) or bands (on a quantity)")
        for zone, rows in (self.zones or {}).items():
            if zone not in (1, 2, 3, 4):
                raise ValueError(f"zone {zone}: the Decision has zones 1 to 4")
            for row in rows:
                if not isinstance(row.point, str) or not _POINT.match(row.point):
                    raise ValueError(
                        f"zone {zone}: {row.point!r} is not I, II, III, III+<metres> or historical"
                    )
        for row in self.bands or []:
            if isinstance(row.point, str):
                raise ValueError(f"band {row.point!r}: a band starts at a number")
        return self


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    decision: str
    hazards: dict[str, _Hazard]


class RiskDataError(ValueError):
    """The risk table cannot be read; the message names the file and the field."""


@dataclass(frozen=True)
class StationAttributes:
    """What Article 45 needs to know of a station (from the geography)."""

    flood_zone: int | None = None
    historical_peak_m: float | None = None


@dataclass(frozen=True)
class Assessment:
    """A warning's risk level as the Decision gives it, and where it comes from."""

    level: int
    basis: str  # "QĐ 18/2021/QĐ-TTg Điều 45 khoản 2 điểm c"
    point: str  # the point reached: "II", "III+1.0", "historical", "100"


@dataclass(frozen=True)
class RiskTable:
    decision: str
    hazards: Mapping[str, _Hazard]

    @classmethod
    def load(cls, path: Path = DATA) -> RiskTable:
        try:
            raw: Any = yamlio.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise RiskDataError(f"{path}: {exc}") from exc
        try:
            data = _File.model_validate(raw)
        except ValidationError as exc:
            raise RiskDataError("\n".join(field_errors(exc, "(file)", prefix=f"{path}: "))) from exc
        return cls(data.decision, data.hazards)

    def covers(self, hazard: str) -> bool:
        return hazard in self.hazards

    def article(self, hazard: str) -> int | None:
        h = self.hazards.get(hazard)
        return h.article if h else None

    def assess(
        self,
        hazard: str,
        level: int,
        thresholds: Mapping[int, float],
        evidence: Sequence[tuple[str, float]],
        station: StationAttributes | None = None,
        *,
        hysteresis: float = 0.0,
        previous: int | None = None,
    ) -> Assessment | None:
        """The risk level of a warning of ``hazard`` at rule level ``level`` (0: none).

        ``thresholds``: the rule's level values (1: I, 2: II, 3: III for floods);
        ``evidence``: (metric, value) of what decided it; ``station``: its zone and
        historical peak; ``previous``: the risk level the warning had, kept while the
        quantity stays within ``hysteresis`` of the point it reached. None when the
        Decision gives no level (no table for the hazard, below its first point, or
        the station's zone unknown)."""
        spec = self.hazards.get(hazard)
        if spec is None or level <= 0:
            return None
        if spec.zones is not None:
            if station is None or station.flood_zone is None:
                return None
            rows = spec.zones.get(station.flood_zone, [])
            value = evidence[0][1] if evidence else None
            if any(n not in thresholds for n in (1, 2, 3)):
                return None  # not an I/II/III alarm scale: Article 45 does not apply

            def reached(row: _Row, v: float | None) -> bool:
                return self._flood_reached(row, level, thresholds, v, station)
        else:
            value = next((v for m, v in evidence if m == spec.quantity), None)
            if value is None:
                return None
            rows = spec.bands or []

            def reached(row: _Row, v: float | None) -> bool:
                return v is not None and _beyond(v, float(row.point), row.strict)

        def last(v: float | None) -> int:
            return max((i for i, row in enumerate(rows) if reached(row, v)), default=-1)

        # Rising, the quantity itself decides; falling, a row is left only once the
        # quantity is ``hysteresis`` below it (as the rule's alarm levels are).
        i_lo = last(value)
        i_hi = last(None if value is None else value + hysteresis)
        lo = rows[i_lo].level if i_lo >= 0 else 0
        hi = rows[i_hi].level if i_hi >= 0 else 0
        if previous is None or previous <= lo:
            i = i_lo
        elif previous > hi:
            i = i_hi
        else:
            held = [j for j in range(max(i_lo, 0), i_hi + 1) if rows[j].level == previous]
            i = held[-1] if held else i_lo
        if i < 0:
            return None
        row = rows[i]
        return Assessment(
            row.level, f"{self.decision} Điều {spec.article} {row.clause}", str(row.point)
        )

    # -- floods: Article 45 -------------------------------------------------------------

    @staticmethod
    def _point_value(
        point: str, thresholds: Mapping[int, float], station: StationAttributes
    ) -> float | None:
        if point == "historical":
            return station.historical_peak_m
        m = _POINT.match(point)
        assert m is not None
        base = thresholds.get(_ALARM[m.group(1)])
        if base is None:
            return None
        return round(base + float(m.group(3) or 0), 6)

    def _flood_reached(
        self,
        row: _Row,
        level: int,
        thresholds: Mapping[int, float],
        value: float | None,
        station: StationAttributes,
    ) -> bool:
        point = str(row.point)
        if point in _ALARM:
            return level >= _ALARM[point]  # the alarm level the rule reached
        # Above an alarm level: the water level itself, once the rule is at III.
        target = self._point_value(point, thresholds, station)
        return (
            level >= 3
            and value is not None
            and target is not None
            and (_beyond(value, target, row.strict))
        )


def _beyond(value: float, point: float, strict: bool) -> bool:
    return value > point + _EPSILON if strict else value >= point - _EPSILON


@lru_cache(maxsize=4)
def table(path: Path = DATA) -> RiskTable:
    """The risk table shipped with canhbao (read once)."""
    return RiskTable.load(path)


def adjusted(computed: int, by: int) -> int:
    """A level raised by an operator under Article 4 clause 4: at most 5."""
    return max(1, min(MAX_LEVEL, computed + by))


def name(level: int, lang: str = "vi") -> str:
    return PALETTE[level].name(lang)


_CITATION = re.compile(
    r"^(?P<doc>.*?)\s*Điều (?P<art>\d+)(?: khoản (?P<cl>\d+))?(?: điểm (?P<pt>\w))?$"
)


def cite(basis: str, lang: str = "vi") -> str:
    """A basis as a reader of ``lang`` writes it: "QĐ 18/2021/QĐ-TTg Điều 45 khoản 3 điểm b"
    (vi); "Decision 18/2021/QĐ-TTg, Article 45(3)(b)" (en); Khmer in its words."""
    m = _CITATION.match(basis)
    if lang == "vi" or m is None:
        return basis
    doc = m["doc"].removeprefix("QĐ ").strip()
    if lang == "en":
        out = f"Decision {doc}, Article {m['art']}"
        out += f"({m['cl']})" if m["cl"] else ""
        return out + (f"({m['pt']})" if m["pt"] else "")
    out = f"សេចក្តីសម្រេច {doc} មាត្រា {m['art']}"
    out += f" ប្រការ {m['cl']}" if m["cl"] else ""
    return out + (f" ចំណុច {m['pt']}" if m["pt"] else "")
