"""Backtests: replay history through a rule set and summarise what it would have done.

History is read by :mod:`pipeline.history` (CSV or JSONL). A line that cannot be
read is reported with its number and skipped; the rest still runs.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from alerting.directory import Directory
from pipeline import history
from pipeline.engine import GAPS_KEPT, Engine
from pipeline.quality import Check
from pipeline.replay import Replay
from pipeline.rules.loader import RuleSet
from pipeline.rules.model import (
    CompoundCondition,
    Intervals,
    ReportCondition,
    StalenessCondition,
    _Levelled,
)
from topics.durations import format_duration
from topics.models import Reading, Transition, Warning

FLAP_WINDOW = timedelta(hours=1)
# A rule raising the same warning more often than this a day on the data given is
# flapping: alert fatigue, one of the two failures the domain names.
MAX_RAISES_PER_DAY = 3.0
CSV_COLUMNS = history.CSV_COLUMNS


@dataclass
class LoadResult:
    readings: list[Reading]
    errors: list[str] = field(default_factory=list)  # the first MAX_ERRORS bad lines
    skipped: int = 0


MAX_ERRORS = 20  # bad lines told one by one; the rest are counted
NO_DOMAIN_HINT = "no rule watches it and the row has no domain column"


def load_history(
    path: Path, rules: RuleSet, progress: Callable[[int, int], None] | None = None
) -> LoadResult:
    """The readings of one history file (:mod:`pipeline.history`). Raises ``OSError``
    or ``UnicodeDecodeError`` for a file that cannot be read, ``ValueError`` for a CSV
    without the needed columns."""
    text = path.read_text(encoding="utf-8")
    out = LoadResult([])
    rows = history.parse(path, text, history.rule_domains(rules),
                         no_domain_hint=NO_DOMAIN_HINT, progress=progress)  # fmt: skip
    for r in rows:
        if isinstance(r, history.BadLine):
            out.skipped += 1
            if len(out.errors) < MAX_ERRORS:
                out.errors.append(str(r))
        else:
            out.readings.append(r)
    return out


@dataclass
class RuleSummary:
    rule: str
    raised: int = 0
    transitions: list[dict[str, Any]] = field(default_factory=list)
    time_at_level: dict[str, float] = field(default_factory=dict)  # level name -> hours
    flaps: int = 0
    # The official disaster risk level over time (Decision 18/2021/QĐ-TTg): level -> hours.
    time_at_risk: dict[int, float] = field(default_factory=dict)


@dataclass
class Flapping:
    """A rule that raised the same warning too often on the data given, and why."""

    rule: str
    subject: str
    raises: int
    days: float
    cause: str

    @property
    def per_day(self) -> float:
        return self.raises / self.days

    def message(self, limit: float = MAX_RAISES_PER_DAY) -> str:
        return (
            f"{self.rule} flaps on {self.subject}: raised {self.raises} times in "
            f"{self.days:.1f} days ({self.per_day:.1f} a day, more than {limit:g}). "
            f"Likely cause: {self.cause}"
        )


@dataclass
class BacktestResult:
    version: str
    warnings: list[Warning]
    rejected: dict[Check, int]
    start: datetime | None
    end: datetime | None
    summaries: dict[str, RuleSummary]
    set_aside: list[tuple[Reading, Check]] = field(default_factory=list)
    flapping: list[Flapping] = field(default_factory=list)

    def transitions(self) -> list[dict[str, Any]]:
        return [t for s in self.summaries.values() for t in s.transitions]

    @property
    def days(self) -> float:
        """The span of the data in days (at least one, so a short file is not a rate)."""
        if self.start is None or self.end is None:
            return 1.0
        return max((self.end - self.start).total_seconds() / 86400, 1.0)


@dataclass
class Tally:
    """What a history file held besides readings, counted as it is streamed."""

    read: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)  # the first MAX_ERRORS bad lines

    def bad(self, line: history.BadLine) -> None:
        self.skipped += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(str(line))


def stream_history(
    path: Path,
    rules: RuleSet,
    tally: Tally,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[Reading]:
    """The readings of a history file in time order, read as they are replayed (memory
    does not grow with the file). Raises :class:`history.OutOfOrder` at the first
    reading dated before one above it: see :func:`sort_history`."""
    rows = history.stream(path, history.rule_domains(rules), no_domain_hint=NO_DOMAIN_HINT,
                          progress=progress, ordered=True)  # fmt: skip
    for r in rows:
        if isinstance(r, history.BadLine):
            tally.bad(r)
        else:
            tally.read += 1
            yield r


def sort_history(
    path: Path,
    rules: RuleSet,
    into: Path,
    tally: Tally,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """A history file not in time order, sorted out of core into ``into`` (JSONL):
    bad lines are counted in ``tally`` here, as the sorted file has none."""
    return history.sort_by_time(path, into, history.rule_domains(rules),
                                no_domain_hint=NO_DOMAIN_HINT, progress=progress,
                                on_bad=tally.bad)  # fmt: skip


class StationGaps:
    """Per station, the gaps between its distinct reading times: counted by length (for
    the median, shortest and longest) and the last few (the interval the engine
    learns). What explains a flapping data-gap rule, in memory that does not grow with
    the history's length: a station keeps to a handful of intervals. Readings must
    come in time order."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._counts: dict[str, Counter[float]] = defaultdict(Counter)
        self._recent: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=GAPS_KEPT))

    def add(self, station_id: str, ts: float) -> None:
        last = self._last.get(station_id)
        if last is not None and ts <= last:
            return  # the same time again (another metric): not a gap
        if last is not None:
            self._counts[station_id][ts - last] += 1
            self._recent[station_id].append(ts - last)
        self._last[station_id] = ts

    def of(self, station_id: str) -> tuple[Counter[float], list[float]]:
        """The station's gaps by length, and its last ``GAPS_KEPT`` gaps."""
        return self._counts.get(station_id, Counter()), list(self._recent.get(station_id, ()))


def _median(counts: Counter[float]) -> float:
    """``statistics.median`` of the multiset ``counts``."""
    n = counts.total()
    middle = [(n - 1) // 2, n // 2]
    found: list[float] = []
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        while middle and middle[0] < seen:
            found.append(value)
            middle.pop(0)
    return (found[0] + found[1]) / 2


def run_backtest(
    readings: list[Reading],
    rules: RuleSet,
    directory: Directory,
    max_raises_per_day: float = MAX_RAISES_PER_DAY,
) -> BacktestResult:
    """A backtest of readings in memory, in any order (sorted here)."""
    ordered = sorted(readings, key=lambda r: r.observed_at)
    return stream_backtest(ordered, rules, directory, max_raises_per_day)


def stream_backtest(
    readings: Iterable[Reading],
    rules: RuleSet,
    directory: Directory,
    max_raises_per_day: float = MAX_RAISES_PER_DAY,
    chart: ChartSample | None = None,
) -> BacktestResult:
    """A backtest of readings in time order, consumed one at a time: what it keeps
    grows with the warnings and the readings set aside, not with the readings. A
    ``chart`` keeps a bounded sample of each series for the HTML report."""
    engine = Engine(rules, directory)
    replay = Replay(engine)
    gaps = StationGaps()
    start: datetime | None = None
    end: datetime | None = None
    for r in readings:
        replay.reading(r)
        gaps.add(r.station_id, r.observed_at.timestamp())
        if chart is not None:
            chart.add(r)
        if start is None:
            start = r.observed_at
        end = r.observed_at
    result = BacktestResult(
        version=rules.version,
        warnings=replay.warnings,
        rejected=dict(replay.rejected),
        start=start,
        end=end,
        summaries=summarise(replay.warnings, end),
        set_aside=replay.set_aside,
    )
    result.flapping = find_flapping(result, gaps, engine, max_raises_per_day)
    return result


class ChartSample:
    """At most about ``2 * per_series`` readings of each (station, metric), for the HTML
    report's charts of a history of any length: when a series reaches that, each run
    of four readings is cut to its lowest and highest, so peaks and troughs stay."""

    def __init__(self, per_series: int = 1000) -> None:
        self.per_series = per_series
        self.series: dict[tuple[str, str], list[Reading]] = defaultdict(list)

    def add(self, reading: Reading) -> None:
        points = self.series[(reading.station_id, reading.metric)]
        points.append(reading)
        if len(points) >= 2 * self.per_series:
            points[:] = _min_max(points)

    def readings(self) -> list[Reading]:
        return [r for points in self.series.values() for r in points]


def _min_max(points: list[Reading]) -> list[Reading]:
    kept: list[Reading] = []
    for i in range(0, len(points), 4):
        group = points[i : i + 4]
        low = min(group, key=lambda r: r.value)
        high = max(group, key=lambda r: r.value)
        kept += [low] if low is high else sorted((low, high), key=lambda r: r.observed_at)
    return kept


def find_flapping(
    result: BacktestResult,
    gaps: StationGaps,
    engine: Engine,
    max_raises_per_day: float = MAX_RAISES_PER_DAY,
) -> list[Flapping]:
    """Warnings raised more than ``max_raises_per_day`` times a day, with a likely cause."""
    raises = Counter(
        (w.rule_id, w.subject) for w in result.warnings if w.transition is Transition.RAISED
    )
    out = []
    for (rule_id, subject), n in sorted(raises.items()):
        if n / result.days <= max_raises_per_day:
            continue
        states = [w for w in result.warnings if w.rule_id == rule_id and w.subject == subject]
        cause = _likely_cause(rule_id, subject, states, gaps, engine)
        out.append(Flapping(rule_id, subject, n, result.days, cause))
    return out


def _span(seconds: float) -> str:
    return format_duration(timedelta(seconds=round(seconds)))


def _likely_cause(
    rule_id: str, subject: str, states: list[Warning], gaps: StationGaps, engine: Engine
) -> str:
    if rule_id.startswith("quality."):
        check = rule_id.split(".", 1)[1]
        return (
            f"the quality gate's {check} check keeps tripping on {subject}: its limits for "
            "this metric (the rule set's quality section) may not fit this sensor, or the "
            "sensor is faulty"
        )
    rule = engine.rules.get(rule_id)
    if rule is None:
        return "the rule is not in this rule set"
    cond = rule.condition
    if isinstance(cond, StalenessCondition):
        return _staleness_cause(rule_id, subject, gaps, engine)
    if isinstance(cond, _Levelled):
        up = Counter(
            w.level for w in states if w.transition in (Transition.RAISED, Transition.ESCALATED)
        )
        level = rule.level(up.most_common(1)[0][0] if up else rule.levels[0].level)
        hold = f", sustained {format_duration(cond.sustained)}" if cond.sustained else ""
        return (
            f"the values hover around level {level.name} ({level.value:g}); hysteresis "
            f"{cond.hysteresis:g}{hold}: widen the hysteresis, or add sustained: so that a "
            "level must hold before it is raised"
        )
    if isinstance(cond, ReportCondition):
        return (
            f"reports come just after the warning expired (expires_after "
            f"{format_duration(cond.expires_after)}): lengthen it"
        )
    if isinstance(cond, CompoundCondition):
        return "one of its components flaps: see the components' rules"
    return "the condition changes more often than the data warrants"


def _staleness_cause(rule_id: str, subject: str, station_gaps: StationGaps, engine: Engine) -> str:
    rule = engine.rules.get(rule_id)
    assert rule is not None and isinstance(rule.condition, StalenessCondition)
    cond = rule.condition
    counts, recent = station_gaps.of(subject)
    if not counts:
        return f"{subject} sent too few readings to say how often it reports"
    median = _median(counts)
    limit = engine.silence_limit(rule, subject, {"gaps": recent}).total_seconds()
    station = engine.directory.station(subject)
    configured = station.report_every if station is not None else None
    if median >= limit:
        said = (
            f"{subject} reports every {_span(median)} (median gap in the data) but the rule "
            f"calls it silent after {_span(limit)}"
        )
        if not isinstance(cond.silent_for, Intervals):
            return (
                f"{said}: write silent_for in the station's reporting intervals (e.g. "
                "'3 intervals', with at_least) and give the station report_every in the "
                "geography file"
            )
        if configured is not None and configured.total_seconds() < median:
            return (
                f"{said}: its report_every in the geography file "
                f"({format_duration(configured)}) is shorter than it really reports; "
                "correct it"
            )
        return f"{said}: give the station report_every in the geography file"
    knob = "the number of intervals" if isinstance(cond.silent_for, Intervals) else "silent_for"
    return (
        f"{subject} reports irregularly (gaps from {_span(min(counts))} to {_span(max(counts))}, "
        f"median {_span(median)}), around the rule's limit of {_span(limit)}: raise {knob}"
    )


def summarise(warnings: list[Warning], end: datetime | None) -> dict[str, RuleSummary]:
    out: dict[str, RuleSummary] = {}
    by_warning: dict[str, list[Warning]] = {}
    for w in warnings:
        by_warning.setdefault(w.warning_id, []).append(w)
        s = out.setdefault(w.rule_id, RuleSummary(w.rule_id))
        s.transitions.append(
            {
                "rule": w.rule_id,
                "subject": w.subject,
                "level": w.level,
                "level_name": w.level_name,
                "transition": w.transition.value,
                "at": w.updated_at.isoformat(),
                "risk_level": w.risk_level,
                "risk_basis": w.risk_basis,
            }
        )
        if w.transition is Transition.RAISED:
            s.raised += 1
    for states in by_warning.values():
        s = out[states[0].rule_id]
        last_clear: datetime | None = None
        for cur, nxt in zip(states, [*states[1:], None], strict=True):
            if (
                cur.transition is Transition.RAISED
                and last_clear is not None
                and cur.updated_at - last_clear <= FLAP_WINDOW
            ):
                s.flaps += 1
            if cur.transition is Transition.CLEARED:
                last_clear = cur.updated_at
            if cur.level == 0:
                continue
            until = nxt.updated_at if nxt is not None else end
            if until is None:
                continue
            hours = max((until - cur.updated_at).total_seconds(), 0.0) / 3600
            key = cur.level_name or str(cur.level)
            s.time_at_level[key] = s.time_at_level.get(key, 0.0) + hours
            if cur.risk_level is not None:
                s.time_at_risk[cur.risk_level] = s.time_at_risk.get(cur.risk_level, 0.0) + hours
    return out


def compare(a: BacktestResult, b: BacktestResult) -> list[dict[str, Any]]:
    """Per rule: how the candidate set (b) differs from the baseline (a)."""
    rows = []
    for rule in sorted(set(a.summaries) | set(b.summaries)):
        sa, sb = a.summaries.get(rule), b.summaries.get(rule)
        first_a = _first_raise(sa)
        first_b = _first_raise(sb)
        rows.append(
            {
                "rule": rule,
                "raised": [sa.raised if sa else 0, sb.raised if sb else 0],
                "flaps": [sa.flaps if sa else 0, sb.flaps if sb else 0],
                "hours_at_level": [
                    {k: round(v, 2) for k, v in (sa.time_at_level if sa else {}).items()},
                    {k: round(v, 2) for k, v in (sb.time_at_level if sb else {}).items()},
                ],
                "first_raise": [first_a, first_b],
                "first_raise_shift_minutes": (
                    round(
                        (
                            datetime.fromisoformat(first_b) - datetime.fromisoformat(first_a)
                        ).total_seconds()
                        / 60,
                        1,
                    )
                    if first_a and first_b
                    else None
                ),
            }
        )
    return rows


def _first_raise(s: RuleSummary | None) -> str | None:
    if s is None:
        return None
    for t in s.transitions:
        if t["transition"] == "raised":
            return str(t["at"])
    return None


def transitions_json(result: BacktestResult, label: str | None = None) -> Iterator[str]:
    for t in result.transitions():
        obj = {k: t[k] for k in ("rule", "subject", "level", "transition", "at", "risk_level")}
        if label:
            obj["set"] = label
        yield json.dumps(obj, ensure_ascii=False)
