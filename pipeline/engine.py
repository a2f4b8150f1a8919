"""The rule engine: readings, reports, warnings, commands and clock ticks in;
warning states out. Pure: all state lives in a ``MutableMapping`` of JSON-safe
dicts (a Faust table in the pipeline, a dict in backtests and rule tests), and
all time comes from the events themselves or from the tick. The one exception is
the live pipeline's staleness check, which is also told the wall-clock time at
which a tick is handled, to tell a backlog being caught up from a silence (see
``SilenceWatch``).

The keys of the state store are built and read by :mod:`pipeline.state`.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from alerting.directory import Directory
from pipeline import state as sk  # the store's keys
from pipeline.lifecycle import (
    CommandRejected,
    Conflict,
    Context,
    Spec,
    apply_command,
    build,
    is_active,
    settle_version,
    station_areas,
)
from pipeline.quality import ACCEPTED, Check, Limits, Verdict, judge, limits_of
from pipeline.rules.kinds import measure, window_at
from pipeline.rules.loader import RuleSet
from pipeline.rules.model import (
    CompoundCondition,
    EarsCondition,
    GroupBy,
    Intervals,
    Level,
    ReportCondition,
    Rule,
    StalenessCondition,
    WindowCondition,
    _Levelled,
)
from pipeline.rules.threshold import decide_level
from pipeline.validate import present
from topics import ids
from topics.models import (
    Action,
    Command,
    Domain,
    Evidence,
    Reading,
    Report,
    Severity,
    Transition,
    Warning,
)

log = logging.getLogger(__name__)
Store = MutableMapping[str, Any]
Mode = Literal["local", "station", "grouped"]

# Domain -> its value, looked up for every reading (cheaper than the enum's property).
_DOMAIN_VALUES = {d: d.value for d in Domain}

FAULT_NAMES = {
    Check.OUT_OF_RANGE: "value out of range",
    Check.SPIKE: "spike",
    Check.STUCK: "flat-lined sensor",
}


# One per reading: slots, and an ``__init__`` of list and dict literals (the generated
# one calls a factory per field: twice the cost, about 7 % of a calm reading's time).
@dataclass(slots=True, init=False)
class Outputs:
    warnings: list[Warning] = field(default_factory=list)
    # Readings to re-key for rules that group by commune, province or source.
    forwards: list[tuple[str, Reading]] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    rejected: list[tuple[Check, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # (warning_id, version) -> communes to tell: the current ones and any it left.
    fanout: dict[tuple[str, int], list[str]] = field(default_factory=dict)
    # Quality-gate series whose state was dated beyond the present and was reset.
    reanchored: list[tuple[str, str]] = field(default_factory=list)
    # Versions a replay reached with another content than was published.
    conflicts: list[Conflict] = field(default_factory=list)

    def __init__(self) -> None:
        self.warnings = []
        self.forwards = []
        self.commands = []
        self.rejected = []
        self.errors = []
        self.fanout = {}
        self.reanchored = []
        self.conflicts = []

    def extend(self, other: Outputs) -> None:
        self.warnings += other.warnings
        self.forwards += other.forwards
        self.commands += other.commands
        self.rejected += other.rejected
        self.errors += other.errors
        self.fanout.update(other.fanout)
        self.reanchored += other.reanchored
        self.conflicts += other.conflicts


def _load(store: Store, key: str) -> Warning | None:
    raw = store.get(key)
    return Warning.model_validate(raw) if raw else None


# A station's reporting interval is learned from its last gaps between readings:
# the median, so that one outage or one re-sent reading does not move it.
GAPS_KEPT = 9
GAPS_TO_LEARN = 1


@dataclass
class _Watched:
    quiet_since: float | None = None  # wall clock: first tick after its last reading
    since: float | None = None  # tick time (epoch s) this process began to watch it


# What the engine needs to know of one series (domain, metric, station, area, source)
# before it reads one of its readings, worked out at its first reading: the quality
# gate's timeline (also its name in logs) and state key, the heard index's key, the
# key of each data-gap rule's notice on the station (in the order of
# ``rules.kind("staleness")``), the matching rules with the subject each judges
# and whether it groups, in the order they were written, and the gate's limits for
# the metric (``quality.limits_of``). A station sends the same few
# series again and again, so this is a lookup. A plain tuple, of strings and numbers
# alone for a station no rule selects: the garbage collector then stops tracking it, where a
# class instance per series made each collection slower (about a fifth of the
# engine's time while a fresh engine met 10,000 stations).
_Series = tuple[str, str, str, tuple[str, ...], tuple[tuple[Rule, str, bool], ...], Limits]


MAX_SERIES_PLANNED = 200_000  # series kept by ``Engine._plan`` (bounded, as rule selection)


@dataclass
class SilenceWatch:
    """What this process has seen of each station, in wall-clock terms, so that the
    clock cannot take a backlog for silence.

    Ticks (``canhbao.clock``) and readings (``canhbao.readings.*``) are separate
    topics, and a worker catching up after a restart or a rebalance reads them in
    no particular order: ticks from the end of its downtime may come before the
    readings sent meanwhile, and every station then looks silent. In a compressed
    ``simulate`` one second of reordering is an hour and a half of scenario time.
    So, live, silence is judged at the *stream's* time (the newest reading the
    partition has handled) while readings are still flowing, and at the tick's
    time only once the partition has been quiet for ``idle_after`` seconds of wall
    time (a feed that died altogether must still be noticed). And a station's
    silence counts from when this process began to watch it, never across the
    process's own downtime. Kept in memory only: a new process starts afresh,
    which is the point."""

    idle_after: float = 5.0
    stations: dict[str, _Watched] = field(default_factory=dict)

    def heard(self, station_id: str) -> None:
        watched = self.stations.get(station_id)
        if watched is not None:
            watched.quiet_since = None

    def judge_at(
        self, tick: datetime, wall: datetime, seen: dict[str, dict[str, Any]]
    ) -> tuple[datetime, dict[str, float]]:
        """The instant to judge silence at, and since when each station is watched."""
        w = wall.timestamp()
        for station_id in seen:
            watched = self.stations.setdefault(station_id, _Watched())
            if watched.quiet_since is None:
                watched.quiet_since = w
        quiet_since = max(self.stations[s].quiet_since or w for s in seen)
        stream = max(float(v.get("ts", float("-inf"))) for v in seen.values())
        if w - quiet_since >= self.idle_after or stream >= tick.timestamp():
            at = tick
        else:
            at = datetime.fromtimestamp(stream, tz=tick.tzinfo)
        since: dict[str, float] = {}
        for station_id in seen:
            watched = self.stations[station_id]
            if watched.since is None:
                # The clock's time, not the stream's: after a downtime the stream's
                # newest reading may be hours old, and those hours were ours.
                watched.since = tick.timestamp()
            since[station_id] = watched.since
        return at, since


class Engine:
    """Evaluates one rule set; ``rules`` may be swapped at any time (hot reload)."""

    def __init__(
        self,
        rules: RuleSet,
        directory: Directory,
        exercise: bool = False,
        *,
        max_clock_skew: timedelta = timedelta(minutes=5),
        watch: SilenceWatch | None = None,
    ) -> None:
        self.rules = rules
        self.directory = directory
        self.ctx = Context(directory=directory, exercise=exercise)
        # How far ahead of the present a reading may be dated (CANHBAO_MAX_CLOCK_SKEW):
        # state dated beyond it belongs to a timeline that cannot be the present one.
        self.max_clock_skew = max_clock_skew
        # Handed on to the next engine at a hot reload: what was watched stays watched.
        self.watch = watch or SilenceWatch()
        self._prefixes: dict[str, str] = {}
        self._plans: dict[tuple[Any, ...], _Series] = {}
        self._limits: dict[str, Limits] = {}  # the gate's, per metric: for ``_plan``
        self._planned_for = rules  # plans hold rules: made again if ``rules`` is replaced

    def with_rules(self, rules: RuleSet) -> Engine:
        """The same engine with another rule set (hot reload): what was watched stays
        watched."""
        return Engine(
            rules,
            self.directory,
            self.ctx.exercise,
            max_clock_skew=self.max_clock_skew,
            watch=self.watch,
        )

    # -- helpers -----------------------------------------------------------------

    def _warning_prefix(self, rule_id: str) -> str:
        """The start of the state keys of ``rule_id``'s warnings (the subject follows),
        built once per rule: the heard index asks it for every reading."""
        prefix = self._prefixes.get(rule_id)
        if prefix is None:
            prefix = self._prefixes[rule_id] = sk.rule_warnings_prefix(rule_id)
        return prefix

    def _save(self, store: Store, w: Warning, out: Outputs) -> None:
        # Every state goes out through here: one content per version, always.
        w, conflict = settle_version(store, w)
        if conflict is not None:
            out.conflicts.append(conflict)
        key = sk.warning_key(w.warning_id)
        before = store.get(key) or {}
        left = [a["code"] for a in before.get("areas", []) if a["code"] not in areas_of(w)]
        store[key] = w.model_dump(mode="json")
        out.warnings.append(w)
        out.fanout[(w.warning_id, w.version)] = areas_of(w) + left

    def area_of(self, reading: Reading) -> str | None:
        if reading.area:
            return reading.area
        station = self.directory.station(reading.station_id)
        return station.commune if station else None

    def subject(self, rule: Rule, reading: Reading) -> str | None:
        if rule.group_by is GroupBy.STATION:
            return reading.station_id
        if rule.group_by is GroupBy.SOURCE:
            return reading.source
        area = self.area_of(reading)
        if area is None or rule.group_by is GroupBy.AREA:
            return area
        try:
            return self.directory.province_of(area)
        except KeyError:
            return None

    # -- readings ----------------------------------------------------------------

    def on_reading(
        self,
        reading: Reading,
        store: Store,
        *,
        now: datetime | None = None,
        mode: Mode = "local",
        key: str | None = None,
    ) -> Outputs:
        """``local`` does everything here (backtests); in the pipeline ``station``
        runs the gate and station rules and forwards the rest, re-keyed, to
        ``grouped``, which runs the rules whose subject is ``key``.

        ``now`` is the wall clock (live only; backtests and rule tests pass None and
        time comes from the readings alone). A drill's reading is judged against its
        drill's clock instead."""
        out = Outputs()
        # The series' plan, looked up here (``_plan`` makes it at its first reading):
        # a call fewer for every reading.
        plan = None
        if self.rules is self._planned_for:
            series_id = (_DOMAIN_VALUES[reading.domain], reading.metric, reading.station_id,
                         reading.area, reading.source)  # fmt: skip
            plan = self._plans.get(series_id)
        series, qkey, lkey, stale, matched, limits = plan or self._plan(reading)
        if mode != "grouped":
            # Once: converting a parsed time (its offset) costs about a microsecond.
            ts = reading.observed_at.timestamp()
            at: datetime | None = None
            beyond: datetime | None = None
            beyond_s: float | None = None
            if now is not None:
                at = present(now, reading.drill) if reading.drill is not None else now
                # Anything dated after this is from a timeline that cannot be the
                # present one.
                beyond = at + self.max_clock_skew
                beyond_s = beyond.timestamp()
            # The quality gate (``_gate_outcome`` says what a verdict other than
            # "accepted" means), here rather than in a method: it runs for every reading.
            state = store.get(qkey)
            state = dict(state) if state else {}
            verdict = judge(self.rules.quality, limits, state, reading, ts, at, beyond_s)
            store[qkey] = state
            if verdict is not ACCEPTED:
                self._gate_outcome(reading, verdict, series, store, out)
            # Any reading proves the station transmits, even one the gate sets
            # aside: a stuck sensor is a sensor fault, not a data gap.
            if stale:
                self._heard(reading, store, out, ts, lkey, stale)
            if not verdict.ok:
                return out
        elif now is not None:
            beyond = present(now, reading.drill) + self.max_clock_skew
        else:
            beyond = None
        forwards = out.forwards
        for rule, subject, grouped in matched:
            if mode == "station" and grouped:
                if (subject, reading) not in forwards:
                    forwards.append((subject, reading))
                continue
            if mode == "grouped" and (not grouped or subject != key):
                continue
            if isinstance(rule.condition, _Levelled):
                self._levelled(rule, subject, reading, store, out, beyond)
        return out

    def _plan(self, reading: Reading) -> _Series:
        """The series' plan (see ``_Series``), made at its first reading."""
        rules = self.rules
        if rules is not self._planned_for:
            self._plans.clear()
            self._limits.clear()
            self._planned_for = rules
        # The domain's value, not the enum: a key of strings alone is not tracked either.
        series_id = (_DOMAIN_VALUES[reading.domain], reading.metric, reading.station_id,
                     reading.area, reading.source)  # fmt: skip
        plan = self._plans.get(series_id)
        if plan is not None:
            return plan
        if len(self._plans) >= MAX_SERIES_PLANNED:
            self._plans.clear()  # bounded: a flood of new series only costs speed
            self._limits.clear()
        limits = self._limits.get(reading.metric)
        if limits is None:
            limits = self._limits[reading.metric] = limits_of(rules.quality, reading.metric)
        station_id = reading.station_id
        series = sk.quality_series(station_id, reading.metric, reading.area)
        chosen: list[tuple[Rule, str, bool]] = []
        for rule in rules.select(reading):
            subject = self.subject(rule, reading)
            if subject is not None:
                chosen.append((rule, subject, rule.group_by is not GroupBy.STATION))
        stale = [self._warning_prefix(rule.id) + station_id for rule in rules.kind("staleness")]
        plan = self._plans[series_id] = (
            series,
            sk.quality_key(series, reading.source),
            sk.heard_key(station_id),
            tuple(stale),
            tuple(chosen),
            limits,
        )
        return plan

    def _gate_outcome(
        self, reading: Reading, verdict: Verdict, series: str, store: Store, out: Outputs
    ) -> None:
        """What the quality gate's ``verdict`` on ``reading`` means, when it is not the
        common one (accepted, nothing cleared): rejections, fault notices raised or
        cleared, a timeline re-anchored. ``series``: the gate's timeline, for logs. (One
        series per station, metric, commune and source: a unit reporting several
        communes' counts keeps a timeline for each.)"""
        if verdict.reanchored:
            log.warning("quality gate: %s: %s", series, verdict.reanchored)
            out.reanchored.append((series, verdict.reanchored))
        if verdict.check is not None:
            out.rejected.append((verdict.check, verdict.detail))
        if verdict.fault:
            assert verdict.check is not None
            self._fault_notice(reading, verdict.check, 1, verdict.detail, store, out)
        for check in verdict.cleared:
            self._fault_notice(reading, check, 0, "readings are plausible again", store, out)

    def _fault_notice(
        self, reading: Reading, check: Check, level: int, detail: str, store: Store, out: Outputs
    ) -> None:
        station = self.directory.station(reading.station_id)
        owner = station.owner if station else None
        spec = Spec(
            rule_id=f"quality.{check.value}",
            domain=reading.domain,
            hazard="sensor_fault",
            level_names={1: ("fault", Severity.MINOR)},
            labels=(("check", check.value), ("metric", reading.metric)),
            annotations=(
                ("summary_vi", f"Lỗi cảm biến tại trạm {reading.station_id}"),
                ("summary_en", f"Sensor fault at station {reading.station_id}"),
                ("fault", FAULT_NAMES[check]),
            ),
            lead_override=owner,
        )
        wkey = sk.rule_warning_key(spec.rule_id, reading.station_id)
        previous = _load(store, wkey)
        codes = [station.commune] if station else ([reading.area] if reading.area else [])
        evidence = [
            Evidence(
                station_id=reading.station_id,
                metric=reading.metric,
                value=reading.value,
                observed_at=reading.observed_at,
                note=detail,
                drill=reading.drill,
            )
        ]
        w = build(
            spec,
            reading.station_id,
            previous,
            level,
            reading.observed_at,
            evidence,
            codes,
            self.ctx,
            note=detail,
        )
        if w is not None:
            self._save(store, w, out)

    def _heard(
        self,
        reading: Reading,
        store: Store,
        out: Outputs,
        ts: float,
        lkey: str,
        stale: tuple[str, ...],
    ) -> None:
        station_id = reading.station_id
        watched = self.watch.stations.get(station_id)  # SilenceWatch.heard, inlined
        if watched is not None:
            watched.quiet_since = None
        before = store.get(lkey)
        if before:
            last = before.get("ts")
            if last is not None and ts < last:
                return
            seen = dict(before)
            if last is not None and ts > last:
                gaps = seen.get("gaps")
                if gaps:
                    gaps = gaps[1 - GAPS_KEPT :] if len(gaps) >= GAPS_KEPT else list(gaps)
                    gaps.append(ts - last)
                else:
                    gaps = [ts - last]
                seen["gaps"] = gaps
        else:
            seen = {}
        metric = reading.metric
        metrics = seen.get("metrics")
        if metrics is None or metric not in metrics:
            metrics = sorted({*(metrics or ()), metric})
        seen["ts"] = ts
        seen["domain"] = _DOMAIN_VALUES[reading.domain]
        seen["metric"] = metric
        seen["metrics"] = metrics
        if reading.area:
            seen["area"] = reading.area
        store[lkey] = seen
        for wkey in stale:
            if store.get(wkey):
                break
        else:
            return  # no notice on this station: nothing to clear (most readings)
        for rule, wkey in zip(self.rules.kind("staleness"), stale, strict=True):
            raw = store.get(wkey)
            if not raw:
                continue
            w = Warning.model_validate(raw)
            if not is_active(w):
                continue
            # Readings resumed, or late ones show the station was not silent that long
            # when the notice was raised: clear it, but never dated before its raise.
            # Late readings that leave the gap longer than the limit keep it.
            limit = self.silence_limit(rule, reading.station_id, seen)
            if ts > w.updated_at.timestamp() - limit.total_seconds():
                at = max(reading.observed_at, w.updated_at)
                self._staleness(rule, reading.station_id, seen, 0, at, store, out)

    def _levelled(
        self,
        rule: Rule,
        subject: str,
        reading: Reading,
        store: Store,
        out: Outputs,
        beyond: datetime | None = None,
    ) -> None:
        ekey = sk.evaluator_key(rule.id, subject)
        state = dict(store.get(ekey) or {})
        wkey = sk.rule_warning_key(rule.id, subject)
        previous = _load(store, wkey)
        # Live (``beyond`` given): state and decisions dated beyond the present were
        # left by a wrong clock or an earlier drill; they must not hold the present back.
        void = beyond is not None and previous is not None and previous.updated_at > beyond
        if beyond is not None and state.get("_ts", float("-inf")) > beyond.timestamp():
            state = {}
        # An older reading must not undo a newer decision: "newer" by the time of the
        # reading the rule last decided on, not the warning's time, which an operator's
        # verify or a report moves to the wall clock (a reading taken before the verify
        # and delayed by its link still counts).
        decided = state.get("_decided")
        if previous is not None and (decided is None or decided > previous.updated_at.timestamp()):
            # State from before "_decided", or a decision since superseded.
            decided = previous.updated_at.timestamp()
        if decided is not None and reading.observed_at.timestamp() < decided and not void:
            return
        if beyond is not None:
            state["_ts"] = max(state.get("_ts", float("-inf")), reading.observed_at.timestamp())
        m = measure(rule, state, reading, self.area_of(reading), self.rules.baselines)
        if m is None:
            store[ekey] = state
            return
        current = previous.level if is_active(previous) and previous is not None else 0
        level = decide_level(rule, state, current, m.value, reading.observed_at)
        store[ekey] = state
        decisive: Level | None = rule.level(level) if level else None
        if decisive is None and current:
            decisive = rule.level(current)
        if m.by_area is not None and rule.levels:
            first = rule.levels[0].value
            codes = sorted(a for a, v in m.by_area.items() if v >= first) or (
                [self.area_of(reading) or subject]
            )
        elif rule.group_by is GroupBy.STATION:
            codes = station_areas(rule, reading, self.directory)
        elif rule.group_by is GroupBy.AREA:
            codes = [subject]
        else:
            area = self.area_of(reading)
            codes = list(rule.areas) or ([area] if area else [])
        plain = rule.condition.kind == "threshold"
        evidence = [
            Evidence(
                station_id=reading.station_id,
                # What was compared with the level: the reading itself, or the
                # quantity the rule computed from it (a sum, a rate, a z-score).
                metric=reading.metric if plain else f"{reading.metric}:{_quantity(rule)}",
                value=reading.value if plain else m.value,
                observed_at=reading.observed_at,
                threshold=decisive.value if decisive else None,
                note="" if plain else f"last reading {reading.value:g}",
                drill=reading.drill,
            )
        ]
        w = build(
            Spec.of(rule), subject, previous, level, reading.observed_at, evidence, codes, self.ctx
        )
        if w is None and void and is_active(previous) and previous is not None:
            # Same level, but the standing state is dated beyond the present: re-date it
            # to this reading, or it would stay in the abandoned timeline.
            w = previous.model_copy(
                update={
                    "version": previous.version + 1,
                    "transition": Transition.UPDATED,
                    "previous_level": previous.level,
                    "evidence": evidence,
                    "updated_at": reading.observed_at,
                    "previous_updated_at": previous.updated_at,
                }
            )
        if w is not None:
            state["_decided"] = reading.observed_at.timestamp()
            store[ekey] = state
            self._save(store, w, out)

    # -- staleness and the clock ------------------------------------------------------

    def reporting_interval(self, station_id: str, seen: dict[str, Any]) -> timedelta | None:
        """How often the station reports: ``report_every`` from the geography, or
        what its recent readings show when they come faster (a station slower than
        its configured interval is still judged against the configured one)."""
        station = self.directory.station(station_id)
        configured = station.report_every if station is not None else None
        gaps = [float(g) for g in seen.get("gaps", []) if g > 0]
        learned = timedelta(seconds=statistics.median(gaps)) if len(gaps) >= GAPS_TO_LEARN else None
        known = [i for i in (configured, learned) if i is not None]
        return min(known) if known else None

    def silence_limit(self, rule: Rule, station_id: str, seen: dict[str, Any]) -> timedelta:
        """How long ``station_id`` may be silent before ``rule`` calls it a data gap."""
        cond = rule.condition
        assert isinstance(cond, StalenessCondition)
        floor = cond.at_least or timedelta(0)
        if not isinstance(cond.silent_for, Intervals):
            return max(cond.silent_for, floor)
        interval = self.reporting_interval(station_id, seen)
        if interval is None:
            return floor
        return max(interval * cond.silent_for.count, floor)

    def _staleness(
        self,
        rule: Rule,
        station_id: str,
        seen: dict[str, Any],
        level: int,
        at: datetime,
        store: Store,
        out: Outputs,
    ) -> None:
        cond = rule.condition
        assert isinstance(cond, StalenessCondition)
        previous = _load(store, sk.rule_warning_key(rule.id, station_id))
        station = self.directory.station(station_id)
        codes = [station.commune] if station else ([seen["area"]] if seen.get("area") else [])
        last = datetime.fromtimestamp(seen["ts"], tz=at.tzinfo)
        spec = Spec.of(rule)
        if station is not None:
            spec = Spec(**{**spec.__dict__, "lead_override": station.owner})
        limit = self.silence_limit(rule, station_id, seen)
        if level:
            interval = self.reporting_interval(station_id, seen)
            every = f", reports every {_minutes(interval)}" if interval else ""
            note = (
                f"silent since {last.isoformat()} (limit {_minutes(limit)}: "
                f"{cond.describe()}{every})"
            )
        else:
            note = f"heard again: a reading observed at {last.isoformat()}"
        evidence = [
            Evidence(
                station_id=station_id,
                metric=str(seen.get("metric", "")),
                # Minutes of silence (none once heard again), never negative.
                value=max((at - last).total_seconds(), 0.0) / 60.0 if level else 0.0,
                observed_at=at,
                note=note,
            )
        ]
        w = build(spec, station_id, previous, level, at, evidence, codes, self.ctx)
        if w is not None:
            self._save(store, w, out)

    def _silences(
        self,
        now: datetime,
        store: Store,
        keys: list[str],
        wall: datetime | None,
        out: Outputs,
    ) -> None:
        """Raise a data-gap notice for each selected station silent past its limit."""
        stale_rules = self.rules.of_kind("staleness")
        seen = {sk.heard_station(k): dict(store.get(k) or {}) for k in keys
                if sk.is_heard_key(k)}  # fmt: skip
        seen = {s: v for s, v in seen.items() if "ts" in v}
        if not stale_rules or not seen:
            return
        at, since = now, dict[str, float]()
        if wall is not None:
            at, since = self.watch.judge_at(now, wall, seen)
        for station_id, heard in seen.items():
            for rule in stale_rules:
                if not self._selected_station(rule, station_id, heard):
                    continue
                w = _load(store, sk.rule_warning_key(rule.id, station_id))
                if is_active(w):
                    continue
                counted_from = max(heard["ts"], since.get(station_id, float("-inf")))
                limit = self.silence_limit(rule, station_id, heard)
                if at.timestamp() - counted_from > limit.total_seconds():
                    self._staleness(rule, station_id, heard, 1, at, store, out)

    def on_tick(
        self,
        now: datetime,
        store: Store,
        keys: Iterable[str] | None = None,
        *,
        wall: datetime | None = None,
    ) -> Outputs:
        """Time-driven work for the keys this worker owns: silent stations, expired
        report warnings, and warnings of rules that are no longer in the set.

        ``wall`` is the wall-clock time the live pipeline handles the tick at; with
        it, silence is judged as ``SilenceWatch`` says. Without it (backtests, rule
        tests: events replayed in time order) silence is judged at ``now``."""
        out = Outputs()
        own = list(store.keys() if keys is None else keys)
        self._silences(now, store, own, wall, out)
        for key in own:
            kind = sk.kind_of(key)
            if kind is sk.Kind.EVALUATOR:
                rule_id, subject = sk.evaluator_of(key)
                windowed = self.rules.get(rule_id)
                if windowed is not None and isinstance(windowed.condition, WindowCondition):
                    self._window_expiry(windowed, subject, now, store, out)
            elif kind is sk.Kind.WARNING:
                w = _load(store, key)
                if w is None or not is_active(w) or w.rule_id.startswith("quality."):
                    continue
                found = self.rules.get(w.rule_id)
                if found is None:
                    self._clear(w, now, "rule removed from the active rule set", store, out)
                elif (
                    isinstance(found.condition, ReportCondition)
                    and now - w.updated_at > found.condition.expires_after
                ):
                    self._clear(w, now, "no new report; expired", store, out)
        return out

    def _window_expiry(
        self, rule: Rule, subject: str, now: datetime, store: Store, out: Outputs
    ) -> None:
        """Readings age out of a window even when no new one arrives (an attacker
        who goes quiet): re-judge an active window warning at ``now``."""
        cond = rule.condition
        assert isinstance(cond, WindowCondition)
        previous = _load(store, sk.rule_warning_key(rule.id, subject))
        if not is_active(previous) or previous is None or now <= previous.updated_at:
            return
        ekey = sk.evaluator_key(rule.id, subject)
        state = dict(store.get(ekey) or {})
        value = window_at(cond, state, now.timestamp())
        store[ekey] = state
        if value is None:
            value = 0.0
        level = decide_level(rule, state, previous.level, value, now)
        if level == previous.level:
            return
        decisive = rule.level(level) if level else rule.level(previous.level)
        evidence = [
            Evidence(
                station_id=subject,
                metric=f"{rule.selector.metric}:{_quantity(rule)}",
                value=value,
                observed_at=now,
                threshold=decisive.value,
                note="window moved on with no new readings",
            )
        ]
        codes = [a.code for a in previous.areas]
        w = build(Spec.of(rule), subject, previous, level, now, evidence, codes, self.ctx)
        if w is not None:
            self._save(store, w, out)

    def _selected_station(self, rule: Rule, station_id: str, seen: dict[str, Any]) -> bool:
        sel = rule.selector
        if rule.domain.value != seen.get("domain"):
            return False
        if sel.station is not None and sel.station != station_id:
            return False
        if sel.stations is not None and station_id not in sel.stations:
            return False
        # Any metric the station has sent, not only the last: a gauge that also
        # measures rain is still a river gauge.
        metrics = seen.get("metrics") or [seen.get("metric")]
        return sel.metric is None or sel.metric in metrics

    def _clear(self, w: Warning, at: datetime, note: str, store: Store, out: Outputs) -> None:
        spec = Spec(
            rule_id=w.rule_id,
            domain=w.domain,
            hazard=w.hazard,
            level_names={w.level: (w.level_name, w.severity)},
            labels=tuple(sorted(w.labels.items())),
            annotations=tuple(sorted(w.annotations.items())),
        )
        cleared = build(spec, w.subject, w, 0, max(at, w.updated_at), [], [], self.ctx, note=note)
        if cleared is not None:
            self._save(store, cleared, out)

    # -- commands --------------------------------------------------------------------

    def on_command(self, command: Command, store: Store) -> Outputs:
        out = Outputs()
        seen = sk.command_key(command.command_id)
        if store.get(seen):
            return out  # already applied: a replayed or duplicated command is a no-op
        key = sk.warning_key(command.warning_id)
        try:
            w = apply_command(_load(store, key), command, self.ctx)
        except CommandRejected as exc:
            out.errors.append(str(exc))
            return out
        store[seen] = {"at": command.at.isoformat()}
        self._save(store, w, out)
        return out

    # -- commune-level correlation: reports and compound rules ----------------------------

    def on_warning(self, warning: Warning, area: str, store: Store, at: datetime) -> Outputs:
        """Keep the commune's index of active warnings and re-check compound rules."""
        out = Outputs()
        xkey = sk.area_key(area)
        index = _index(store, area)
        if self._is_compound(warning.rule_id):
            return out
        if is_active(warning) and warning.level > 0 and area in areas_of(warning):
            rule = self.rules.get(warning.rule_id)
            index[warning.warning_id] = {
                "kind": rule.condition.kind if rule else "quality",
                "rule": warning.rule_id,
                "hazard": warning.hazard,
                "domain": warning.domain.value,
                "level": warning.level,
                "notify": warning.labels.get("notify", "true"),
                "source": warning.labels.get("source", "rule"),
                "subject": warning.subject,
            }
        else:
            index.pop(warning.warning_id, None)
        store[xkey] = index
        for rule in self.rules.of_kind("compound"):
            self._compound(rule, area, index, warning, at, store, out)
        return out

    def _is_compound(self, rule_id: str) -> bool:
        rule = self.rules.get(rule_id)
        return rule is not None and isinstance(rule.condition, CompoundCondition)

    def _compound(
        self,
        rule: Rule,
        area: str,
        index: dict[str, Any],
        trigger: Warning,
        at: datetime,
        store: Store,
        out: Outputs,
    ) -> None:
        cond = rule.condition
        assert isinstance(cond, CompoundCondition)
        met: list[str] = []
        for comp in cond.all_of:
            found = [
                wid
                for wid, e in index.items()
                if (comp.rule is None or e["rule"] == comp.rule)
                and (comp.hazard is None or e["hazard"] == comp.hazard)
                and (comp.domain is None or e["domain"] == comp.domain.value)
                and e["level"] >= comp.min_level
            ]
            if not found:
                break
            met.append(found[0])
        level = rule.levels[0].level if len(met) == len(cond.all_of) else 0
        previous = _load(store, sk.rule_warning_key(rule.id, area))
        evidence = [
            Evidence(
                station_id=index[wid]["subject"],
                metric=index[wid]["hazard"],
                value=float(index[wid]["level"]),
                observed_at=at,
                note=f"component {wid}",
            )
            for wid in met
        ]
        w = build(Spec.of(rule), area, previous, level, at, evidence, [area], self.ctx)
        if w is not None:
            self._save(store, w, out)

    def on_report(self, report: Report, area: str, store: Store) -> Outputs:
        """A report corroborates active warnings of its domain in the commune, or
        raises its own warning there when there is none."""
        out = Outputs()
        index = _index(store, area)
        for rule in self.rules.of_kind("report"):
            cond = rule.condition
            assert isinstance(cond, ReportCondition)
            if rule.domain is not report.domain or report.category not in cond.categories:
                continue
            if report.severity.rank < cond.min_severity.rank:
                continue
            evidence = Evidence(
                station_id=report.reporter,
                metric=f"report:{report.category}",
                value=float(report.severity.rank),  # alerting.quantities reads it back
                observed_at=report.observed_at,
                note=f"report {report.report_id}: {report.text[:200]}",
                drill=report.drill,
            )
            # Only hazard warnings are corroborated: not sensor or data-gap notices,
            # nor components that never notify anyone on their own.
            targets = [
                (wid, e)
                for wid, e in index.items()
                if e["domain"] == report.domain.value
                and e["rule"] != rule.id
                and e.get("kind") not in ("quality", "staleness", "report", "compound")
                and e.get("notify", "true") == "true"
                and (cond.corroborates is None or e.get("hazard") in cond.corroborates)
            ]
            if targets:
                for wid, _ in targets:
                    out.commands.append(
                        Command(
                            command_id=ids.corroboration_id(report.report_id, wid),
                            warning_id=wid,
                            action=Action.CORROBORATE,
                            actor=report.reporter,
                            reason=f"report {report.report_id} ({report.category})",
                            evidence=[evidence],
                            at=report.observed_at,
                        )
                    )
                continue
            level = self._severity_level(rule, report.severity)
            previous = _load(store, sk.rule_warning_key(rule.id, area))
            if is_active(previous) and previous is not None and previous.level > level:
                level = previous.level  # a milder report does not lower the warning
            w = build(
                Spec.of(rule),
                area,
                previous,
                level,
                report.observed_at,
                [evidence],
                [area],
                self.ctx,
            )
            if w is None and previous is not None and is_active(previous):
                # Same level: still a fresh report, which keeps the warning alive.
                w = previous.model_copy(
                    update={
                        "version": previous.version + 1,
                        "transition": Transition.UPDATED,
                        "evidence": [*previous.evidence, evidence][-10:],
                        "updated_at": max(report.observed_at, previous.updated_at),
                        "previous_updated_at": previous.updated_at,
                    }
                )
            if w is not None:
                self._save(store, w, out)
        return out

    @staticmethod
    def _severity_level(rule: Rule, severity: Severity) -> int:
        chosen = rule.levels[0].level
        for lv in rule.levels:
            if lv.severity.rank <= severity.rank:
                chosen = lv.level
        return chosen


def _minutes(d: timedelta) -> str:
    minutes = d.total_seconds() / 60
    if minutes >= 120 and minutes % 60 == 0:
        return f"{minutes / 60:g} h"
    return f"{minutes:g} min"


def _quantity(rule: Rule) -> str:
    cond = rule.condition
    if isinstance(cond, WindowCondition):
        return f"{cond.aggregate.value}_{int(cond.window.total_seconds())}s"
    if isinstance(cond, EarsCondition):
        return f"ears_{cond.method.lower()}"
    return {"rate_of_change": "rate_per_h", "endemic_channel": "z"}.get(cond.kind, cond.kind)


def _index(store: Store, area: str) -> dict[str, Any]:
    """The commune's active warnings (warning id -> what compound rules need)."""
    return dict(store.get(sk.area_key(area)) or {})


def areas_of(warning: Warning) -> list[str]:
    return [a.code for a in warning.areas]
