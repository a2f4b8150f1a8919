"""Reference data: geography (provinces, communes, stations) and the agency directory."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
)

from topics import yamlio
from topics.durations import Duration
from topics.errors import field_errors
from topics.models import Area, Channel, Domain


class ConfigError(ValueError):
    """A configuration file is missing or wrong; the message names file and field."""


class Province(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    code: str
    name: str


Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]


class Commune(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    code: str
    name: str
    province: str
    geocode: str | None = Field(
        default=None,
        min_length=1,
        max_length=32,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Official administrative code of the commune (CAP geocode VN-commune)",
    )
    polygon: list[tuple[Latitude, Longitude]] | None = Field(
        default=None,
        min_length=3,
        description="Boundary as [lat, lon] points (WGS 84); closed on output if it is not",
    )


MetricName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")]


class StationEntry(BaseModel):
    """A station as the geography file gives it: validated as this model, then kept as
    a compact :class:`Station` (``_compact``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    name: str
    river: str | None = None
    commune: str
    lat: float | None = None
    lon: float | None = None
    warns: list[str] = Field(default_factory=list)
    owner: str
    # What the station measures: the validate stage refuses a reading whose domain or
    # metric is not the station's, so a mislabelled or forged one is never evaluated.
    domain: Domain
    metrics: list[MetricName] = Field(min_length=1)

    # How often the station is expected to report: staleness rules written in
    # intervals ("silent_for: 3 intervals") judge its silence against it.
    report_every: Duration | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Station:
    """A station of the geography, as the worker keeps it for its whole life. A
    geography may list 100,000 stations: kept as this slotted dataclass, a station
    costs about 270 bytes instead of 1,850 as the pydantic model it is validated as
    (no instance dict, no set of the fields given, shared communes and metrics): 160 MB
    less in a worker that must stay under 500 MB."""

    id: str
    name: str
    river: str | None = None
    commune: str
    lat: float | None = None
    lon: float | None = None
    warns: list[str] = field(default_factory=list)
    owner: str
    domain: Domain
    metrics: list[str]
    report_every: timedelta | None = None

    @property
    def serves(self) -> list[str]:
        """The communes its readings may be about: its own and those it warns."""
        return [self.commune, *(c for c in self.warns if c != self.commune)]


#: The validation context's key for one file's table of shared values (``_compact``).
SHARED = "shared"
_SHARED_FIELDS = ("river", "commune", "owner", "warns", "metrics")


def _compact(entry: StationEntry, info: ValidationInfo) -> Station:
    """The validated entry as a :class:`Station`, built as soon as the entry is valid
    (the entry is dropped at once, not kept until the whole list is read). Thousands
    of stations name the same commune, owner and metrics: with a table in the context
    (``Directory.load`` passes one), equal values are one object. The lists are never
    changed once loaded (the station is frozen)."""
    values = dict(entry.__dict__)
    table = info.context.get(SHARED) if isinstance(info.context, dict) else None
    if table is not None:
        for name in _SHARED_FIELDS:
            value = values[name]
            key = (name, tuple(value) if isinstance(value, list) else value)
            values[name] = table.setdefault(key, value)
    return Station(**values)


if TYPE_CHECKING:
    StationField = Station
else:  # validated as the entry model (its errors), kept as the compact station
    StationField = Annotated[StationEntry, AfterValidator(_compact)]


class StationRisk(BaseModel):
    """What the official disaster risk level (Decision 18/2021/QĐ-TTg, Article 45) needs
    to know of a hydrological station: its zone (khu vực 1-4) on its river basin and its
    historical peak (lũ lịch sử: the highest flood crest on record). ``sample`` names
    the attributes that are placeholders, not the official value (shown by
    ``canhbao rules backtest`` and the README)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    flood_zone: int | None = Field(default=None, ge=1, le=4)
    basin: str | None = None
    historical_peak_m: float | None = None
    sample: list[Literal["flood_zone", "historical_peak_m"]] = Field(default_factory=list)
    source: str = ""


class Geography(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    provinces: list[Province]
    communes: list[Commune]
    stations: list[StationField] = Field(default_factory=list)
    # Kept apart from the station entries: attributes of the risk-level tables, by
    # station id (alerting.risk).
    station_risk: dict[str, StationRisk] = Field(default_factory=dict)


class Receiver(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._:-]*$")
    channel: Channel
    address: str = Field(min_length=1)
    lang: str = "vi"


class AgencyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    code: str
    name_vi: str
    name_en: str
    leads: list[Domain] = Field(default_factory=list)
    receivers: list[Receiver] = Field(default_factory=list)


class DirectoryFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    agencies: list[AgencyEntry]


_VAR = re.compile(r"\$\{([A-Z0-9_]+)(?::-([^}]*))?\}")


def expand_env(text: str, env: dict[str, str] | None = None) -> str:
    """Replace ``${VAR}`` / ``${VAR:-default}``; an unset variable without default is an error."""
    source = os.environ if env is None else env

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        value = source.get(name)
        # As in the shell: ${VAR:-default} also replaces a variable set but empty.
        if value:
            return value
        if value is not None and default is None:
            return value
        if default is not None:
            return default
        raise ConfigError(f"environment variable {name} is not set and has no default")

    return _VAR.sub(sub, text)


def _expand_values(data: Any) -> Any:
    # Expand after parsing, so comments and keys are never touched.
    if isinstance(data, str):
        return expand_env(data)
    if isinstance(data, list):
        return [_expand_values(v) for v in data]
    if isinstance(data, dict):
        return {k: _expand_values(v) for k, v in data.items()}
    return data


def _load_yaml(path: Path, expand: bool = False) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        data = yamlio.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if expand:
        try:
            data = _expand_values(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    return data


M = TypeVar("M", bound=BaseModel)


def _validate(model: type[M], path: Path, data: Any) -> M:
    try:
        return model.model_validate(data, context={SHARED: {}})
    except ValidationError as exc:
        lines = field_errors(exc, "(file)", prefix=f"{path}: ")
        raise ConfigError("\n".join(lines)) from exc


@dataclass(frozen=True)
class Directory:
    geography: Geography
    agencies: dict[str, AgencyEntry]

    @classmethod
    def load(cls, geography_path: Path, directory_path: Path) -> Directory:
        geo = _validate(Geography, geography_path, _load_yaml(geography_path))
        dfile = _validate(DirectoryFile, directory_path, _load_yaml(directory_path, expand=True))
        directory = cls(geo, {a.code: a for a in dfile.agencies})
        directory._check(geography_path, directory_path)
        return directory

    def _check(self, geography_path: Path, directory_path: Path) -> None:
        provinces = {p.code for p in self.geography.provinces}
        communes = {c.code for c in self.geography.communes}
        problems = [
            f"{geography_path}: commune {c.code}: province {c.province!r} is not defined"
            for c in self.geography.communes
            if c.province not in provinces
        ]
        for s in self.geography.stations:
            for code in [s.commune, *s.warns]:
                if code not in communes:
                    problems.append(f"{geography_path}: station {s.id}: unknown commune {code!r}")
            if s.owner not in self.agencies:
                problems.append(f"{geography_path}: station {s.id}: unknown owner {s.owner!r}")
        stations = {s.id for s in self.geography.stations}
        problems += [
            f"{geography_path}: station_risk: {sid}: unknown station (not in stations)"
            for sid in self.geography.station_risk
            if sid not in stations
        ]
        if problems:
            raise ConfigError("\n".join(problems))

    # Lookups run for every reading: index once instead of scanning the lists.
    @cached_property
    def _stations(self) -> dict[str, Station]:
        return {s.id: s for s in self.geography.stations}

    @cached_property
    def _communes(self) -> dict[str, Commune]:
        return {c.code: c for c in self.geography.communes}

    @cached_property
    def _areas(self) -> dict[str, Area]:
        names = {p.code: p.name for p in self.geography.provinces}
        return {
            c.code: Area(code=c.code, name=c.name, province=names[c.province])
            for c in self.geography.communes
        }

    def station(self, station_id: str) -> Station | None:
        return self._stations.get(station_id)

    def station_risk(self, station_id: str) -> StationRisk | None:
        """The station's zone and historical peak for the risk-level tables, if given."""
        return self.geography.station_risk.get(station_id)

    def commune(self, commune_code: str) -> Commune | None:
        return self._communes.get(commune_code)

    def area(self, commune_code: str) -> Area:
        try:
            return self._areas[commune_code]
        except KeyError:
            raise KeyError(f"unknown commune {commune_code!r}") from None

    def province_of(self, commune_code: str) -> str:
        commune = self._communes.get(commune_code)
        if commune is None:
            raise KeyError(f"unknown commune {commune_code!r}")
        return commune.province

    def reading_problems(
        self, station_id: str, domain: Domain, metric: str, area: str | None
    ) -> list[tuple[str, str]]:
        """``(field, why)`` for each way a reading does not fit the station registry
        (unknown station, another domain or metric than the station's, a commune it does
        not report for); empty when it fits."""
        station = self._stations.get(station_id)
        if station is None:
            return [("station_id", f"unknown station {station_id!r} (not in the geography)")]
        out = []
        if domain is not station.domain:
            out.append(
                (
                    "domain",
                    f"station {station_id!r} reports {station.domain.value}, not {domain.value}",
                )
            )
        if metric not in station.metrics:
            out.append(
                (
                    "metric",
                    f"station {station_id!r} reports {', '.join(station.metrics)}, not {metric}",
                )
            )
        if area is not None:
            if area not in self._communes:
                out.append(("area", f"unknown commune {area!r} (not in the geography)"))
            elif area not in station.serves:
                out.append(
                    (
                        "area",
                        f"station {station_id!r} does not report for commune {area!r} "
                        f"(only {', '.join(station.serves)})",
                    )
                )
        return out

    def unknown_communes(self, codes: list[str]) -> list[str]:
        """The codes in ``codes`` that are not communes of the geography."""
        return [c for c in codes if c not in self._communes]

    def agency(self, code: str) -> AgencyEntry:
        try:
            return self.agencies[code]
        except KeyError:
            raise KeyError(f"unknown agency {code!r}") from None

    def lead_for(self, domain: Domain) -> AgencyEntry:
        for agency in self.agencies.values():
            if domain in agency.leads:
                return agency
        raise KeyError(f"no agency leads the {domain.value} domain")
