"""What each numeric rule kind measures: a reading in, a quantity out (or None
while there is not enough data). State is a JSON-safe dict so that it lives in
a Faust table in the pipeline and in a plain dict in backtests."""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.rules.model import (
    Aggregate,
    EarsCondition,
    EndemicCondition,
    RateCondition,
    Rule,
    ThresholdCondition,
    WindowCondition,
)
from topics.models import Reading


@dataclass(frozen=True)
class Measure:
    value: float
    # Per-commune values when one warning covers several communes (province rules).
    by_area: dict[str, float] | None = None


# --- rate of change ---------------------------------------------------------------


def rate_of_change(cond: RateCondition, state: dict[str, Any], reading: Reading) -> float | None:
    ts = reading.observed_at.timestamp()
    pts: list[list[float]] = state.setdefault("pts", [])
    pts.append([ts, reading.value])
    horizon = ts - cond.window.total_seconds()
    while pts and pts[0][0] < horizon:
        pts.pop(0)
    span = pts[-1][0] - pts[0][0]
    need = (cond.min_span or cond.window / 2).total_seconds()
    if span < need or span <= 0:
        return None
    return (pts[-1][1] - pts[0][1]) / (span / 3600.0)


# --- windowed aggregates ------------------------------------------------------------


def _combine(
    agg: Aggregate, buckets: list[list[float]], window_s: float, min_count: int = 1
) -> float | None:
    if not buckets:
        return None
    total = sum(b[0] for b in buckets)
    count = sum(b[1] for b in buckets)
    if count < min_count:
        return None
    if agg is Aggregate.SUM:
        return total
    if agg is Aggregate.COUNT:
        return count
    if agg is Aggregate.RATE:
        return total / window_s
    if agg is Aggregate.MEAN:
        return total / count if count else None
    if agg is Aggregate.MAX:
        return max(b[2] for b in buckets)
    return min(b[3] for b in buckets)


def window_at(cond: WindowCondition, state: dict[str, Any], ts: float) -> float | None:
    """The aggregate at time ``ts`` with nothing new: old readings age out."""
    w = cond.window.total_seconds()
    if cond.mode == "tumbling":
        if state.get("start") != math.floor(ts / w) * w:
            return _combine(cond.aggregate, [[0.0, 0, -math.inf, math.inf]], w, 1)
        return _combine(cond.aggregate, [state["b"]], w, cond.min_count)
    buckets: dict[str, list[float]] = state.setdefault("b", {})
    _prune(buckets, ts - w)
    if not buckets:
        # Empty window: sums and counts are zero (and so below any level).
        return 0.0 if cond.aggregate in (Aggregate.SUM, Aggregate.COUNT, Aggregate.RATE) else None
    return _combine(cond.aggregate, list(buckets.values()), w, cond.min_count)


def _prune(buckets: dict[str, list[float]], horizon: float) -> None:
    # A bucket leaves when it starts at or before the window's start: a reading
    # exactly one window old is out (the edge is exact to within window/60).
    for k in [k for k in buckets if float(k) <= horizon]:
        del buckets[k]


def window_due(cond: WindowCondition, state: dict[str, Any]) -> float | None:
    """When the oldest reading in the window ages out (for the clock)."""
    w = cond.window.total_seconds()
    if cond.mode == "tumbling":
        start = state.get("start")
        return None if start is None else float(start) + w
    buckets: dict[str, list[float]] = state.get("b", {})
    return min((float(k) + w for k in buckets), default=None)


def window(cond: WindowCondition, state: dict[str, Any], reading: Reading) -> float | None:
    """Sliding windows keep 60 sub-buckets (memory bounded at any event rate; the
    window edge moves in steps of window/60). Tumbling windows reset at each
    boundary aligned to the epoch, so 24 h windows run midnight to midnight UTC."""
    ts = reading.observed_at.timestamp()
    w = cond.window.total_seconds()
    v = reading.value
    if cond.mode == "tumbling":
        start = math.floor(ts / w) * w
        if state.get("start") != start:
            state["start"] = start
            state["b"] = [0.0, 0, -math.inf, math.inf]
        b = state["b"]
        b[0] += v
        b[1] += 1
        b[2] = max(b[2], v)
        b[3] = min(b[3], v)
        return _combine(cond.aggregate, [b], w, cond.min_count)
    res = max(w / 60.0, 1.0)
    key = str(math.floor(ts / res) * res)
    buckets: dict[str, list[float]] = state.setdefault("b", {})
    b = buckets.setdefault(key, [0.0, 0, -math.inf, math.inf])
    b[0] += v
    b[1] += 1
    b[2] = max(b[2], v)
    b[3] = min(b[3], v)
    _prune(buckets, ts - w)
    return _combine(cond.aggregate, list(buckets.values()), w, cond.min_count)


# --- endemic channel (weekly counts against past seasons) ------------------------------


@dataclass(frozen=True)
class Baseline:
    """mean and SD of past seasons' counts per (commune, ISO week)."""

    stats: dict[tuple[str, int], tuple[float, float]]

    @classmethod
    def parse(cls, text: str, source: str = "baseline") -> Baseline:
        counts: dict[tuple[str, int], list[float]] = {}
        reader = csv.DictReader(io.StringIO(text))
        need = {"area", "year", "week", "count"}
        if reader.fieldnames is None or not need <= set(reader.fieldnames):
            raise ValueError(f"{source}: needs columns {', '.join(sorted(need))}")
        for n, row in enumerate(reader, start=2):
            try:
                week = int(row["week"])
                count = float(row["count"])
                int(row["year"])
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{source}: line {n}: {exc}") from exc
            if not 1 <= week <= 53:
                raise ValueError(f"{source}: line {n}: week must be 1..53")
            counts.setdefault((row["area"], week), []).append(count)
        stats = {
            key: (statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0)
            for key, vals in counts.items()
        }
        return cls(stats)


def endemic_z(
    cond: EndemicCondition, baseline: Baseline, area: str, reading: Reading
) -> float | None:
    week = reading.observed_at.isocalendar().week
    stat = baseline.stats.get((area, week))
    if stat is None:
        return None
    mean, sd = stat
    return (reading.value - mean) / max(sd, cond.min_sd)


# --- CDC EARS C1/C2/C3 on daily counts -------------------------------------------------


def _day(ts: datetime) -> str:
    return ts.astimezone(UTC).date().isoformat()


def _c_stat(days: dict[str, float], day: datetime, lag: int, min_sd: float) -> float | None:
    """(count(t) - mean(base)) / sd(base), base = 7 days ending ``lag`` days before t."""
    base = []
    for i in range(lag, lag + 7):
        key = _day(day - timedelta(days=i))
        if key not in days:
            return None
        base.append(days[key])
    today = days.get(_day(day))
    if today is None:
        return None
    sd = statistics.stdev(base) if len(base) > 1 else 0.0
    return (today - statistics.fmean(base)) / max(sd, min_sd)


def ears(cond: EarsCondition, state: dict[str, Any], reading: Reading) -> float | None:
    days: dict[str, float] = state.setdefault("days", {})
    day = reading.observed_at
    # Several reports on one day add up: the count is per day and per commune.
    days[_day(day)] = days.get(_day(day), 0.0) + reading.value
    keep = {_day(day - timedelta(days=i)) for i in range(12)}
    for k in [k for k in days if k not in keep]:
        del days[k]
    if cond.method == "C1":
        return _c_stat(days, day, 1, cond.min_sd)
    if cond.method == "C2":
        return _c_stat(days, day, 3, cond.min_sd)
    total = 0.0
    for back in range(3):
        stat = _c_stat(days, day - timedelta(days=back), 3, cond.min_sd)
        if stat is None:
            return None if back == 0 else total
        total += stat if back == 0 else max(0.0, stat - 1.0)
    return total


def measure(
    rule: Rule,
    state: dict[str, Any],
    reading: Reading,
    area: str | None,
    baselines: dict[str, Baseline],
) -> Measure | None:
    """The rule's quantity after ``reading`` (state updated in place)."""
    cond = rule.condition
    if isinstance(cond, ThresholdCondition):
        return Measure(reading.value)
    if isinstance(cond, RateCondition):
        v = rate_of_change(cond, state, reading)
        return None if v is None else Measure(v)
    if isinstance(cond, WindowCondition):
        v = window(cond, state, reading)
        return None if v is None else Measure(v)
    if isinstance(cond, EndemicCondition | EarsCondition):
        if area is None:
            return None
        # One sub-state per commune: a province rule follows each commune's
        # counts and reports the worst, with the communes that are over.
        sub = state.setdefault("areas", {}).setdefault(area, {})
        if isinstance(cond, EndemicCondition):
            z = endemic_z(cond, baselines[cond.baseline], area, reading)
        else:
            z = ears(cond, sub, reading)
        if z is None:
            return None
        scores: dict[str, float] = state.setdefault("scores", {})
        scores[area] = z
        worst = max(scores.values())
        return Measure(worst, by_area=dict(scores))
    raise TypeError(f"{cond.kind} is not measured from readings")
