"""Validation of incoming bytes: a ``Reading`` or a ``DeadLetter`` with a readable reason.

Beyond the message's shape, the validate stage judges two things every adapter and
the HTTP API judge the same way (one policy, these functions):

- **time** (:func:`check_time`): a reading or report dated further ahead of the
  pipeline's clock than ``max_skew`` is refused (a far-future reading would make every
  later one look out of order); one dated before ``earliest`` is refused as implausible
  (a clock reset to its epoch); one older than the live lateness bound ``max_lateness``
  is *history*: it is refused by the live pipeline, so replaying old logs never pages
  anyone (history is evaluated with ``canhbao rules backtest``, which notifies nobody).
  A drill's readings carry their drill's clock (:class:`topics.models.DrillClock`) and
  are judged against it, the bounds counted in wall time.
- **the station registry** (:meth:`alerting.directory.Directory.reading_problems`): a
  reading from an unknown station, or with a domain, metric or commune that is not the
  station's, and a report naming an unknown commune, are refused with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import ValidationError

from topics.errors import field_errors
from topics.models import DeadLetter, DrillClock, Reading, Report

if TYPE_CHECKING:
    from alerting.directory import Directory

MAX_READING_BYTES = 64 * 1024


# --- time -------------------------------------------------------------------------------


class Timeliness(StrEnum):
    """Why a time is not taken live (the values are metric labels)."""

    FUTURE = "future"  # ahead of the clock by more than the skew bound
    IMPLAUSIBLE = "implausible"  # before the earliest plausible time
    HISTORICAL = "historical"  # older than the live lateness bound: history, not live


@dataclass(frozen=True)
class TimePolicy:
    """The clock-skew bound, the live lateness bound and the floor for absurd pasts
    (``CANHBAO_MAX_CLOCK_SKEW``, ``CANHBAO_MAX_LATENESS``, ``CANHBAO_EARLIEST_OBSERVED_AT``)."""

    max_skew: timedelta = timedelta(minutes=5)
    max_lateness: timedelta = timedelta(hours=6)
    earliest: datetime = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Untimely:
    """A time the live pipeline does not take, and why (``field`` names the field)."""

    kind: Timeliness
    reason: str
    field: str = "observed_at"


def span(delta: timedelta) -> str:
    """A duration as people say it: '974 years', '2 days', '7 h 5 min', '40 s'."""
    s = abs(delta.total_seconds())
    if s >= 2 * 365 * 86400:
        return f"{s / (365.25 * 86400):.0f} years"
    if s >= 2 * 86400:
        return f"{s / 86400:.0f} days"
    if s >= 3600:
        h, m = divmod(round(s / 60), 60)
        return f"{h} h {m} min" if m else f"{h} h"
    if s >= 60:
        return f"{s / 60:.0f} min"
    return f"{s:.0f} s"


def present(now: datetime, drill: DrillClock | None) -> datetime:
    """The present a message is judged against: the wall clock, or its drill's clock."""
    return drill.at(now) if drill is not None else now


def check_time(
    observed_at: datetime,
    now: datetime,
    policy: TimePolicy,
    drill: DrillClock | None = None,
    *,
    field_name: str = "observed_at",
) -> Untimely | None:
    """None when ``observed_at`` is live data at ``now`` (the wall clock); otherwise
    why not. The one policy every adapter and the validate stage apply (CAP ingest:
    pass the report's time and its ``drill``, None for real feeds).

    A drill's messages are judged on the drill's clock, and the bounds are wall time:
    a drill at 2,000× may be dated up to ``max_skew`` × 2,000 ahead of the wall clock's
    view of the drill, which is what its player's clock drift amounts to."""
    if observed_at < policy.earliest:
        return Untimely(
            Timeliness.IMPLAUSIBLE,
            f"{field_name} {observed_at.isoformat()} is before "
            f"{policy.earliest.date().isoformat()}: not a plausible time (a clock reset?)",
            field_name,
        )
    clock = present(now, drill)
    ahead = observed_at - clock
    if drill is not None:
        ahead = drill.wall(ahead)
    whose = "its drill's clock" if drill is not None else "the pipeline's clock"
    if ahead > policy.max_skew:
        return Untimely(
            Timeliness.FUTURE,
            f"{field_name} {observed_at.isoformat()} is {span(ahead)} ahead of {whose} "
            f"(at most {span(policy.max_skew)} is accepted: check the sender's clock)",
            field_name,
        )
    if -ahead > policy.max_lateness:
        return Untimely(
            Timeliness.HISTORICAL,
            f"{field_name} {observed_at.isoformat()} is {span(-ahead)} old by {whose}: "
            f"beyond the live lateness bound of {span(policy.max_lateness)} it is history, "
            "which never raises a live warning (evaluate it with canhbao rules backtest)",
            field_name,
        )
    return None


# --- the judgement of one message ---------------------------------------------------


class Code(StrEnum):
    """Why a message was refused, as a bounded metric label."""

    MALFORMED = "malformed"  # not a JSON object of acceptable size
    INVALID = "invalid"  # not a valid Reading / Report
    KEY_MISMATCH = "key_mismatch"
    FUTURE = "future"
    IMPLAUSIBLE = "implausible"
    HISTORICAL = "historical"
    UNKNOWN_STATION = "unknown_station"
    STATION_MISMATCH = "station_mismatch"  # domain, metric or commune not the station's
    UNKNOWN_AREA = "unknown_area"


@dataclass(frozen=True)
class Refused:
    """Why a message is not taken: a bounded ``code``, a sentence, and per-field errors
    (``field: message``, the same paths the HTTP API answers with)."""

    code: Code
    reason: str
    errors: list[str] = field(default_factory=list)

    def letter(
        self,
        raw: bytes | None,
        *,
        source_topic: str,
        partition: int | None = None,
        offset: int | None = None,
        key: bytes | None = None,
        stage: str = "validate",
    ) -> DeadLetter:
        return DeadLetter(
            source_topic=source_topic,
            partition=partition,
            offset=offset,
            key=key,
            original=raw or b"",
            stage=stage,
            reason=self.reason,
            errors=list(self.errors),
        )


def judge_time(
    message: Reading | Report, now: datetime | None, policy: TimePolicy | None
) -> Refused | None:
    if now is None or policy is None:
        return None
    late = check_time(message.observed_at, now, policy, message.drill)
    if late is None:
        return None
    return Refused(Code(late.kind.value), late.reason, [f"{late.field}: {late.reason}"])


def judge_reading(
    reading: Reading,
    *,
    now: datetime | None = None,
    policy: TimePolicy | None = None,
    directory: Directory | None = None,
) -> Refused | None:
    """None when the live pipeline takes ``reading``: its time (against ``now``, by
    ``policy``) and its station (in ``directory``). Without them, that check is off
    (pure format tests)."""
    refused = judge_time(reading, now, policy)
    if refused is not None:
        return refused
    if directory is None:
        return None
    problems = directory.reading_problems(
        reading.station_id, reading.domain, reading.metric, reading.area
    )
    if not problems:
        return None
    fields = {f for f, _ in problems}
    if "station_id" in fields:
        code = Code.UNKNOWN_STATION
    elif fields == {"area"} and all(m.startswith("unknown commune") for _, m in problems):
        code = Code.UNKNOWN_AREA
    else:
        code = Code.STATION_MISMATCH
    return Refused(code, "; ".join(m for _, m in problems), [f"{f}: {m}" for f, m in problems])


def judge_report(
    report: Report,
    *,
    now: datetime | None = None,
    policy: TimePolicy | None = None,
    directory: Directory | None = None,
) -> Refused | None:
    """As :func:`judge_reading`: its time, and every commune it names must be ours
    (a report about nowhere would reach agencies as a warning for nowhere)."""
    refused = judge_time(report, now, policy)
    if refused is not None or directory is None:
        return refused
    unknown = directory.unknown_communes(report.areas)
    if not unknown:
        return None
    errors = [
        f"areas.{report.areas.index(code)}: unknown commune {code!r} (not in the geography)"
        for code in unknown
    ]
    return Refused(Code.UNKNOWN_AREA, f"unknown commune(s) {', '.join(map(repr, unknown))}", errors)


def _decode(raw: bytes | None, limit: int) -> tuple[dict[str, object] | None, str]:
    """The JSON object in ``raw``, or None and why not."""
    if not raw:
        return None, "empty message"
    if len(raw) > limit:
        return None, f"message is {len(raw)} bytes; at most {limit} are accepted"
    try:
        # Decode explicitly: json.loads(bytes) would guess UTF-16/32 and accept them.
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    if not isinstance(data, dict):
        return None, f"expected a JSON object, got {type(data).__name__}"
    return data, ""


def check_report(
    raw: bytes | None,
    *,
    now: datetime | None = None,
    policy: TimePolicy | None = None,
    directory: Directory | None = None,
) -> Report | Refused:
    data, why = _decode(raw, MAX_READING_BYTES)
    if data is None:
        return Refused(Code.MALFORMED, why)
    try:
        report = Report.model_validate(data)
    except ValidationError as exc:
        errors = field_errors(exc)
        return Refused(Code.INVALID, "invalid report: " + "; ".join(errors), errors)
    refused = judge_report(report, now=now, policy=policy, directory=directory)
    return report if refused is None else refused


def check_reading(
    raw: bytes | None,
    *,
    key: bytes | None = None,
    now: datetime | None = None,
    policy: TimePolicy | None = None,
    directory: Directory | None = None,
) -> Reading | Refused:
    data, why = _decode(raw, MAX_READING_BYTES)
    if data is None:
        return Refused(Code.MALFORMED, why)
    try:
        reading = Reading.model_validate(data)
    except ValidationError as exc:
        errors = field_errors(exc)
        return Refused(Code.INVALID, "invalid reading: " + "; ".join(errors), errors)
    if key is not None and key.decode("utf-8", "replace") != reading.station_id:
        # The key decides the partition, and so the order and the worker that
        # holds the station's state: a mismatch would split a station's history.
        return Refused(
            Code.KEY_MISMATCH,
            f"message key {key.decode('utf-8', 'replace')!r} does not match "
            f"station_id {reading.station_id!r}",
        )
    refused = judge_reading(reading, now=now, policy=policy, directory=directory)
    return reading if refused is None else refused


def validate_report(
    raw: bytes | None,
    *,
    source_topic: str,
    partition: int | None = None,
    offset: int | None = None,
    now: datetime | None = None,
    policy: TimePolicy | None = None,
    directory: Directory | None = None,
) -> Report | DeadLetter:
    out = check_report(raw, now=now, policy=policy, directory=directory)
    if isinstance(out, Refused):
        return out.letter(raw, source_topic=source_topic, partition=partition, offset=offset)
    return out


def validate_reading(
    raw: bytes | None,
    *,
    source_topic: str,
    partition: int | None = None,
    offset: int | None = None,
    key: bytes | None = None,
    now: datetime | None = None,
    policy: TimePolicy | None = None,
    directory: Directory | None = None,
) -> Reading | DeadLetter:
    out = check_reading(raw, key=key, now=now, policy=policy, directory=directory)
    if isinstance(out, Refused):
        return out.letter(
            raw, source_topic=source_topic, partition=partition, offset=offset, key=key
        )
    return out
