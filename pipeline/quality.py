"""The data-quality gate in front of the rules.

A reading that fails a check never reaches the hazard rules. A *fault*
(out of range, spike, stuck) raises a sensor-fault notice for the station's
owner; *duplicates*, *out-of-order*, *late* and *future* readings are counted and
set aside (they say nothing wrong about the sensor).

One bad timestamp cannot silence a station: live (``now`` given), a state whose
last accepted reading is dated beyond the present (``now`` plus ``horizon``, the
clock-skew bound) cannot be right. It was left by a reading from a wrong clock, a
drill in compressed time or an older build without the validate stage's bounds, and
every later reading would be "out of order" against it. The gate then re-anchors:
it forgets that timeline, keeps the active fault notices (so a good reading clears
them) and judges the reading afresh; the verdict says so (``reanchored``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from topics.durations import Duration
from topics.models import Reading


class Check(StrEnum):
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order"
    LATE = "late"
    FUTURE = "future"
    OUT_OF_RANGE = "out_of_range"
    SPIKE = "spike"
    STUCK = "stuck"


FAULTS = (Check.OUT_OF_RANGE, Check.SPIKE, Check.STUCK)


class MetricLimits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min: float | None = None
    max: float | None = None
    max_step_per_hour: float | None = Field(
        default=None, gt=0, description="a faster change than this is a spike"
    )
    stuck_after: Duration | None = Field(
        default=None, description="the same value for this long means a flat-lined sensor"
    )
    stuck_tolerance: float = Field(default=1e-9, ge=0)
    events: bool = Field(
        default=False,
        description="counts of events (logins, IDS alerts): several may share a timestamp "
        "and order does not matter, so only the range check applies",
    )


class QualityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_lateness: Duration | None = Field(
        default=None, description="live only: readings older than this are set aside"
    )
    confirm_after: int = Field(
        default=3, ge=2, description="consecutive consistent readings that confirm a jump"
    )
    metrics: dict[str, MetricLimits] = Field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    check: Check | None = None
    detail: str = ""
    cleared: tuple[Check, ...] = ()  # faults that this good reading ends
    reanchored: str = ""  # set: the state was dated beyond the present and was reset

    @property
    def fault(self) -> bool:
        return self.check in FAULTS


_NO_LIMITS = MetricLimits()  # a metric the quality section does not name
# The verdict on most readings: one object, not one per reading (the engine tests for it).
ACCEPTED = Verdict(True)


def _fmt(v: float) -> str:
    return f"{v:g}"


# State entries that hold times (seconds since the epoch).
_TIMES = ("ts", "same_since")


def reanchor(state: dict[str, Any], beyond: float) -> str:
    """Forget a timeline dated after ``beyond`` (seconds); why, or "" if it is not."""
    # Called for every live reading: plain comparisons, no lists.
    latest = float("-inf")
    for k in _TIMES:
        v = state.get(k)
        if isinstance(v, (int, float)) and v > latest:
            latest = v
    jump = state.get("jump")
    if jump and jump[0] > latest:
        latest = jump[0]
    if latest <= beyond:
        return ""
    for k in (*_TIMES, "value", "jump"):
        state.pop(k, None)
    dated = datetime.fromtimestamp(latest, tz=UTC).isoformat()
    return f"the last accepted reading was dated {dated}, beyond the present: a new timeline starts"


# A metric's limits as plain values: events, min, max, max_step_per_hour, stuck_after
# in seconds, stuck_tolerance. The engine keeps them in each series' plan: reading six
# attributes of a pydantic model for every reading cost more than the checks.
Limits = tuple[bool, float | None, float | None, float | None, float | None, float]


def limits_of(config: QualityConfig, metric: str) -> Limits:
    """``metric``'s limits in ``config`` (none set for a metric it does not name)."""
    m = config.metrics.get(metric, _NO_LIMITS)
    stuck = m.stuck_after.total_seconds() if m.stuck_after is not None else None
    return (m.events, m.min, m.max, m.max_step_per_hour, stuck, m.stuck_tolerance)


def inspect(
    config: QualityConfig,
    state: dict[str, Any],
    reading: Reading,
    now: datetime | None = None,
    horizon: timedelta = timedelta(0),
    *,
    ts: float | None = None,
    beyond: float | None = None,
) -> Verdict:
    """Judge ``reading`` given the station/metric ``state`` (updated in place).

    ``now`` is the present the reading is judged against (live only; backtests and
    rule tests leave it None and time comes from the readings alone), ``horizon`` how
    far ahead of it a reading may be dated (the clock-skew bound). ``ts``: the
    reading's ``observed_at`` in seconds, when the caller has it already (a parsed
    time's offset makes each conversion or comparison cost a microsecond); ``beyond``:
    ``now + horizon`` in seconds, likewise."""
    at = reading.observed_at.timestamp() if ts is None else ts
    if now is not None and beyond is None:
        beyond = (now + horizon).timestamp()
    return judge(config, limits_of(config, reading.metric), state, reading, at, now, beyond)


def judge(
    config: QualityConfig,
    limits: Limits,
    state: dict[str, Any],
    reading: Reading,
    at: float,
    now: datetime | None,
    beyond: float | None,
) -> Verdict:
    """``inspect`` for a caller that has worked out its arguments already (the engine):
    ``limits_of`` the reading's metric, its time in seconds (``at``) and, live,
    ``now`` plus the clock-skew bound in seconds (``beyond``; both None in backtests
    and rule tests). One function, not three: it runs for every reading."""
    last_ts: float | None = state.get("ts")
    if now is not None and beyond is not None:
        if at > beyond:
            ahead = reading.observed_at - now
            return Verdict(False, Check.FUTURE, f"dated {ahead} ahead of the present")
        # ``reanchor``'s common answer (nothing dated beyond the present) without a call.
        since = state.get("same_since")
        if not (
            (last_ts is None or (type(last_ts) is float and last_ts <= beyond))
            and (since is None or (type(since) is float and since <= beyond))
            and not state.get("jump")
        ):
            reanchored = reanchor(state, beyond)
            verdict = judge(config, limits, state, reading, at, now, None)
            return replace(verdict, reanchored=reanchored) if reanchored else verdict

    events, low, high, max_step, stuck_after, stuck_tolerance = limits
    value = reading.value
    # Not ``setdefault``: its default list would be built for every reading.
    active: list[str] | None = state.get("faults")
    if active is None:
        active = state["faults"] = []

    if events:
        if (low is not None and value < low) or (high is not None and value > high):
            return _fault(state, Check.OUT_OF_RANGE, f"{_fmt(value)} is outside the limits")
        return ACCEPTED
    if last_ts is not None:
        if at == last_ts:
            return Verdict(False, Check.DUPLICATE, "a reading for this time was already accepted")
        if at < last_ts:
            return Verdict(False, Check.OUT_OF_ORDER, "older than the last accepted reading")
    if (
        now is not None
        and config.max_lateness is not None
        and now - reading.observed_at > config.max_lateness
    ):
        age = now - reading.observed_at
        return Verdict(False, Check.LATE, f"{age} old; the limit is {config.max_lateness}")

    if (low is not None and value < low) or (high is not None and value > high):
        lo = _fmt(low) if low is not None else "-inf"
        hi = _fmt(high) if high is not None else "inf"
        return _fault(state, Check.OUT_OF_RANGE, f"{_fmt(value)} is outside {lo}..{hi}")

    last_value: float | None = state.get("value")
    if max_step is not None and last_value is not None and last_ts is not None:
        hours = (at - last_ts) / 3600.0
        if hours < 1 / 60:  # as ``max``, without the call
            hours = 1 / 60
        rate = abs(value - last_value) / hours
        if rate > max_step:
            # A real jump is confirmed by the readings after it agreeing with it.
            pending = state.get("jump")
            if pending and abs(value - pending[1]) / max((at - pending[0]) / 3600, 1 / 60) <= (
                max_step
            ):
                pending = [at, value, pending[2] + 1]
            else:
                pending = [at, value, 1]
            state["jump"] = pending
            if pending[2] < config.confirm_after:
                return _fault(
                    state,
                    Check.SPIKE,
                    f"{_fmt(value)} jumps {_fmt(value - last_value)} from {_fmt(last_value)} "
                    f"({rate:.2f}/h > {_fmt(max_step)}/h)",
                )
    state.pop("jump", None)

    if stuck_after is not None and last_value is not None:
        same = abs(value - last_value) <= stuck_tolerance
        since = state.get("same_since", last_ts) if same else at
        state["same_since"] = since
        if same and since is not None and at - since >= stuck_after:
            state["ts"] = at
            held = timedelta(seconds=at - since)
            return _fault(state, Check.STUCK, f"{_fmt(value)} unchanged for {held}")
    else:
        state["same_since"] = at

    state["ts"] = at
    state["value"] = value
    if not active:
        return ACCEPTED
    cleared = tuple(Check(c) for c in active)
    active.clear()
    return Verdict(True, cleared=cleared)


def _fault(state: dict[str, Any], check: Check, detail: str) -> Verdict:
    active: list[str] = state.setdefault("faults", [])
    if check.value not in active:
        active.append(check.value)
    return Verdict(False, check, detail)
