"""Data-gap notices (staleness rules) as the live pipeline drives them: a worker that
restarts or catches up must not take its own downtime, or ticks that overtook the
readings, for silent stations; and each station is judged against its own reporting
interval, so hourly stations do not flap."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from alerting.directory import Directory
from pipeline.engine import Engine, SilenceWatch
from pipeline.replay import Replay
from pipeline.rules.loader import RuleSet
from pipeline.rules.model import Intervals, StalenessCondition
from tests.unit.conftest import T0
from topics.models import Reading, Transition, Warning

RIVERS = ["phu-lang-thuong", "luc-nam", "pha-lai", "ha-noi", "thuong-cat"]

GAP_30M = """\
  - id: water.gap.rivers
    domain: water
    hazard: data_gap
    selector: {stations: [phu-lang-thuong, luc-nam, pha-lai, ha-noi, thuong-cat],
               metric: water_level_m}
    condition: {kind: staleness, silent_for: 30m}
    levels: [{level: 1, name: data gap, severity: Minor}]
"""

GAP_INTERVALS = """\
  - id: water.gap.rivers
    domain: water
    hazard: data_gap
    selector: {stations: [phu-lang-thuong, luc-nam, pha-lai, ha-noi, thuong-cat],
               metric: water_level_m}
    condition: {kind: staleness, silent_for: 3 intervals, at_least: 30m}
    levels: [{level: 1, name: data gap, severity: Minor}]
"""

MakeEngine = Callable[..., Engine]


def level(
    station: str, minutes: float, value: float = 3.0, metric: str = "water_level_m"
) -> Reading:
    return Reading(
        station_id=station,
        domain="water",
        metric=metric,
        value=value,
        observed_at=T0 + timedelta(minutes=minutes),
    )


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def gaps(warnings: list[Warning]) -> list[Warning]:
    return [w for w in warnings if w.hazard == "data_gap"]


class Wall:
    """The wall clock of a worker handling events (seconds from an arbitrary start)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=T0.tzinfo)

    def __call__(self, advance: float = 0.0) -> datetime:
        self.now += timedelta(seconds=advance)
        return self.now


def run_live(
    engine: Engine,
    store: dict[str, Any],
    wall: Wall,
    minutes: range,
    stations: list[str],
    tick_every: float = 1.0,
) -> list[Warning]:
    """Readings every 15 scenario minutes and a scenario tick after each batch, one
    wall second apart: ``simulate`` as a worker that keeps up sees it."""
    out: list[Warning] = []
    for m in minutes:
        for i, s in enumerate(stations):
            out += engine.on_reading(level(s, m, 3.0 + (m % 60) / 100 + i / 1000), store).warnings
        out += engine.on_tick(at(m + 1), store, wall=wall(tick_every)).warnings
    return out


# --- a worker catching up -------------------------------------------------------------


def test_a_restarted_worker_catching_up_raises_no_false_data_gap(
    make_engine: MakeEngine,
) -> None:
    """Issue 15 item 8: killed during ``simulate flood`` and restarted, the worker read
    the clock's ticks of its downtime before the readings sent meanwhile, and raised
    (and cleared, dated before the raise) data-gap notices on every river station."""
    store: dict[str, Any] = {}
    wall = Wall()
    before = run_live(make_engine(GAP_30M), store, wall, range(0, 121, 15), RIVERS)
    assert gaps(before) == []

    # Down for 3 s, recovering for 10 s: at 5760x, ten hours of scenario time. The new
    # process (a new Engine on the restored state) reads the backlog: the ticks of
    # those hours first, then the readings.
    restarted = make_engine(GAP_30M)
    backlog = range(135, 736, 15)
    wall(13)
    out: list[Warning] = []
    for m in backlog:
        out += restarted.on_tick(at(m), store, wall=wall(0.001)).warnings
    for m in backlog:
        for i, s in enumerate(RIVERS):
            out += restarted.on_reading(level(s, m, 3.0 + i / 1000), store).warnings
    assert gaps(out) == []

    # Caught up, live again: Phủ Lạng Thương stops; the others keep reporting.
    out = run_live(restarted, store, wall, range(750, 900, 15), RIVERS[1:])
    (raised,) = gaps(out)
    assert (raised.subject, raised.transition) == ("phu-lang-thuong", Transition.RAISED)
    # Judged at the scenario's time: silent since 12:15 (its last reading), limit 30 min.
    assert at(735 + 30) < raised.updated_at <= at(735 + 30 + 16)
    assert 30 < raised.evidence[0].value <= 46
    out = restarted.on_reading(level("phu-lang-thuong", 900), store).warnings
    (cleared,) = gaps(out)
    assert cleared.transition is Transition.CLEARED
    assert cleared.updated_at >= raised.updated_at


def test_ticks_that_overtake_flowing_readings_judge_at_the_streams_time(
    make_engine: MakeEngine,
) -> None:
    """A tick may come hours (of scenario time) ahead of readings still on their way;
    while readings flow, silence is measured against the newest reading handled."""
    engine = make_engine(GAP_30M)
    store: dict[str, Any] = {}
    wall = Wall()
    run_live(engine, store, wall, range(0, 61, 15), RIVERS)
    assert gaps(engine.on_tick(at(600), store, wall=wall(0.5)).warnings) == []
    for s in RIVERS:
        engine.on_reading(level(s, 75), store)
    assert gaps(engine.on_tick(at(610), store, wall=wall(0.5)).warnings) == []


def test_silence_counts_from_when_the_worker_began_watching(make_engine: MakeEngine) -> None:
    """After the whole pipeline was down for ten hours, an hourly station whose next
    reading is due is not silent: those ten hours were the pipeline's, not its."""
    store: dict[str, Any] = {}
    first = make_engine(GAP_30M)
    first.on_reading(level("luc-nam", 0), store)
    restarted = make_engine(GAP_30M)
    wall = Wall()
    for k in range(0, 30, 1):  # a tick a minute of wall and scenario time: quiet, idle
        assert gaps(restarted.on_tick(at(600 + k), store, wall=wall(60)).warnings) == []
    (raised,) = gaps(restarted.on_tick(at(631), store, wall=wall(60)).warnings)
    assert raised.updated_at == at(631)
    assert raised.evidence[0].value == pytest.approx(631)  # silent since its last reading


def test_a_feed_that_dies_altogether_is_still_noticed(make_engine: MakeEngine) -> None:
    """No reading at all on the partition: once it has been quiet for a few seconds of
    wall time, silence is judged at the clock's time."""
    engine = make_engine(GAP_30M)
    store: dict[str, Any] = {}
    wall = Wall()
    run_live(engine, store, wall, range(0, 16, 15), ["luc-nam"], tick_every=30)
    raised: list[Warning] = []
    minute = 16.0
    while not raised and minute < 120:
        minute += 0.5
        raised = gaps(engine.on_tick(at(minute), store, wall=wall(30)).warnings)
    assert raised, "a station whose whole partition fell silent must still be noticed"
    assert 45 < minute <= 46  # last reading at 15 min, limit 30 min, ticks 30 s apart
    assert raised[0].transition is Transition.RAISED


def test_a_tick_behind_the_data_finds_no_negative_silence(make_engine: MakeEngine) -> None:
    """``simulate`` dates readings ahead of the wall clock, whose own ticks lag them."""
    engine = make_engine(GAP_30M)
    store: dict[str, Any] = {}
    wall = Wall()
    run_live(engine, store, wall, range(0, 61, 15), RIVERS)
    for k in range(20):
        assert gaps(engine.on_tick(at(-600 + k), store, wall=wall(30)).warnings) == []


def test_late_readings_inside_the_gap_keep_the_notice_and_a_clear_is_never_before_the_raise(
    make_engine: MakeEngine,
) -> None:
    engine = make_engine(GAP_30M)
    store: dict[str, Any] = {}
    engine.on_reading(level("luc-nam", 0), store)
    (raised,) = gaps(engine.on_tick(at(120), store).warnings)
    # A reading from 10 min, delivered late: the gap is still 110 min long.
    assert gaps(engine.on_reading(level("luc-nam", 10), store).warnings) == []
    # One from 100 min: at the raise (120 min) the station had been heard 20 min
    # before, so the notice goes, dated at the raise, not before it.
    (cleared,) = gaps(engine.on_reading(level("luc-nam", 100), store).warnings)
    assert cleared.transition is Transition.CLEARED
    assert cleared.updated_at == raised.updated_at == at(120)
    assert cleared.evidence[0].value == 0


def test_the_watch_survives_a_rule_reload(make_engine: MakeEngine, directory: Directory) -> None:
    engine = make_engine(GAP_30M)
    reloaded = Engine(engine.rules, directory, watch=engine.watch)
    assert reloaded.watch is engine.watch
    assert isinstance(Engine(engine.rules, directory).watch, SilenceWatch)


def test_a_rule_on_one_metric_follows_a_station_that_sends_several(
    make_engine: MakeEngine,
) -> None:
    engine = make_engine(GAP_30M)
    store: dict[str, Any] = {}
    engine.on_reading(level("luc-nam", 0), store)
    engine.on_reading(level("luc-nam", 0, value=2.0, metric="rain_mm"), store)
    (raised,) = gaps(engine.on_tick(at(31), store).warnings)
    assert raised.subject == "luc-nam"


# --- reporting intervals --------------------------------------------------------------


def with_interval(directory: Directory, **every: timedelta) -> Directory:
    stations = [
        replace(s, report_every=every[s.id.replace("-", "_")])
        if s.id.replace("-", "_") in every
        else replace(s, report_every=None)
        for s in directory.geography.stations
    ]
    return Directory(
        directory.geography.model_copy(update={"stations": stations}), directory.agencies
    )


def replay(
    rules: RuleSet, directory: Directory, readings: list[Reading], end: float
) -> list[Warning]:
    r = Replay(Engine(rules, directory))
    for rd in sorted(readings, key=lambda x: x.observed_at):
        r.reading(rd)
    r.finish(at(end))
    return gaps(r.warnings)


def test_silent_for_in_intervals_parses_and_needs_a_floor(
    compile_yaml: Callable[..., RuleSet],
) -> None:
    (rule,) = compile_yaml(GAP_INTERVALS).rules
    assert isinstance(rule.condition, StalenessCondition)
    assert rule.condition.silent_for == Intervals(3)
    assert rule.condition.at_least == timedelta(minutes=30)
    assert rule.condition.model_dump()["silent_for"] == "3 intervals"
    with pytest.raises(ValueError, match="needs at_least"):
        StalenessCondition(silent_for="3 intervals")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a number of intervals"):
        StalenessCondition(silent_for="three intervals", at_least="30m")  # type: ignore[arg-type]


def test_an_hourly_station_does_not_flap(
    compile_yaml: Callable[..., RuleSet], directory: Directory
) -> None:
    """Issue 15 item 12: with ``silent_for: 30m`` an hourly gauge was a data gap for
    half of every hour. Judged in its own intervals, it is never one."""
    hourly = [level("luc-nam", 60 * h, 3.0 + h / 100) for h in range(48)]
    fixed = replay(compile_yaml(GAP_30M), with_interval(directory), hourly, 48 * 60)
    assert len([w for w in fixed if w.transition is Transition.RAISED]) == 48  # every hour
    configured = with_interval(directory, luc_nam=timedelta(hours=1))
    assert replay(compile_yaml(GAP_INTERVALS), configured, hourly, 47 * 60) == []
    # Learned from its readings when the geography says nothing: only the first
    # hour, before a gap is known, is judged against at_least.
    learned = replay(compile_yaml(GAP_INTERVALS), with_interval(directory), hourly, 47 * 60)
    assert [w.transition for w in learned] == [Transition.RAISED, Transition.CLEARED]
    assert learned[0].updated_at < at(60)


def test_a_15_minute_station_silent_for_an_hour_still_raises(
    compile_yaml: Callable[..., RuleSet], directory: Directory
) -> None:
    # Configured as hourly (as the bulletins give it) but reporting every 15 min: its
    # readings show the faster cadence, and a silence of an hour is a data gap.
    configured = with_interval(directory, luc_nam=timedelta(hours=1))
    readings = [level("luc-nam", 15 * k) for k in range(13)]  # 0 .. 3 h
    readings += [level("luc-nam", 240 + 15 * k) for k in range(4)]  # back at 4 h
    (raised, cleared) = replay(compile_yaml(GAP_INTERVALS), configured, readings, 300)
    assert raised.transition is Transition.RAISED
    assert raised.updated_at == at(180 + 45) + timedelta(seconds=1)  # 3 x 15 min
    assert "reports every 15 min" in raised.evidence[0].note
    assert (cleared.transition, cleared.updated_at) == (Transition.CLEARED, at(240))


def test_a_station_slower_than_configured_is_judged_by_the_configuration(
    compile_yaml: Callable[..., RuleSet], directory: Directory
) -> None:
    configured = with_interval(directory, luc_nam=timedelta(minutes=15))
    hourly = [level("luc-nam", 60 * h) for h in range(6)]
    raised = [
        w
        for w in replay(compile_yaml(GAP_INTERVALS), configured, hourly, 5 * 60)
        if w.transition is Transition.RAISED
    ]
    assert len(raised) == 5  # every hour: the geography promised 15 minutes


def test_an_unknown_interval_uses_at_least(
    compile_yaml: Callable[..., RuleSet], directory: Directory
) -> None:
    (raised,) = replay(
        compile_yaml(GAP_INTERVALS), with_interval(directory), [level("luc-nam", 0)], 60
    )
    assert raised.updated_at == at(30) + timedelta(seconds=1)
