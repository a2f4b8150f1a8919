"""``canhbao simulate``: the time-compressed schedule, the player (on in-memory sinks),
the dry run and the command line; and the ``demo`` command's options."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from canhbao.cli import build_parser, main
from feeds.scenarios import SCENARIOS, get
from feeds.simulate import (
    TICK_LAG,
    MemoryBroadcaster,
    default_speed,
    jsonl,
    play,
    schedule,
)
from feeds.sink import MemorySink
from topics.catalogue import CLOCK, INGEST_READINGS, INGEST_REPORTS
from topics.models import Reading, Report, Tick

ICT = timezone(timedelta(hours=7))
START = datetime(2025, 11, 10, 2, 0, tzinfo=ICT)


def test_default_speed_plays_any_scenario_in_about_45_seconds() -> None:
    for s in SCENARIOS.values():
        assert s.duration.total_seconds() / default_speed(s) == pytest.approx(45.0)


def test_schedule_compresses_time_and_keys_messages_as_adapters_do() -> None:
    cyber = get("cyber")
    speed = 80.0
    items = schedule(cyber, START, speed)
    assert [o.at for o in items] == sorted(o.at for o in items)
    readings = [o for o in items if o.kind == "reading"]
    reports = [o for o in items if o.kind == "report"]
    assert len(readings) + len(reports) == len(cyber.events(START))
    for o in readings:
        r = Reading.model_validate_json(o.value)
        assert o.topic == INGEST_READINGS and o.key == r.station_id.encode()
        # Sent when observed, in compressed time.
        assert o.at == pytest.approx((r.observed_at - START).total_seconds() / speed)
    for o in reports:
        rep = Report.model_validate_json(o.value)
        assert o.topic == INGEST_REPORTS and o.key == rep.areas[0].encode()
    assert max(o.at for o in readings) <= cyber.duration.total_seconds() / speed


def test_ticks_follow_scenario_time_a_little_behind_the_messages() -> None:
    flood = get("flood")
    speed = default_speed(flood)
    items = schedule(flood, START, speed)
    ticks = [o for o in items if o.kind == "tick"]
    assert ticks and all(o.topic == CLOCK and o.broadcast and o.key is None for o in ticks)
    ats = [Tick.model_validate_json(o.value).at for o in ticks]
    assert ats == sorted(ats) and len(set(ats)) == len(ats)
    for o, at in zip(ticks, ats, strict=True):
        # A tick never gets ahead of what was sent TICK_LAG seconds before it.
        assert at <= START + timedelta(seconds=(o.at - TICK_LAG) * speed + 1)
    assert ats[-1] == START + flood.duration  # the clock runs to the scenario's end
    assert not [o for o in schedule(flood, START, speed, clock=False) if o.kind == "tick"]


def test_a_late_message_is_sent_later_than_it_was_observed() -> None:
    items = schedule(get("faulty"), START, 960.0, clock=False)
    late = [
        o
        for o in items
        if Reading.model_validate_json(o.value).observed_at
        < START + timedelta(seconds=o.at * 960.0 - 1)
    ]
    assert len(late) == 1


def test_dry_run_lines_are_json_with_send_offsets() -> None:
    items = schedule(get("dengue"), START, 100_000.0)
    rows = [json.loads(line) for line in jsonl(items)]
    assert len(rows) == len(items)
    assert rows[0]["topic"] == INGEST_READINGS and rows[0]["value"]["domain"] == "health"
    assert {r["topic"] for r in rows} == {INGEST_READINGS, CLOCK}
    assert all(r["partitions"] == "all" for r in rows if r["topic"] == CLOCK)
    assert [r["send_at"] for r in rows] == sorted(r["send_at"] for r in rows)


async def test_play_sends_everything_in_order_with_ticks_after_what_precedes_them() -> None:
    items = schedule(get("cyber"), START, 3600.0 * 20)  # the hour in 0.05 s
    sink, clock = MemorySink(), MemoryBroadcaster([])
    seen: list[int] = []
    played = await play(items, sink, clock, on_sent=lambda p: seen.append(p.readings))
    assert played.readings == sum(1 for o in items if o.kind == "reading")
    assert played.ticks == len(clock.sent) > 0
    assert [v for _, _, v in sink.sent] == [o.value for o in items if not o.broadcast]
    assert seen == sorted(seen)


def test_simulate_lists_the_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--list"]) == 0
    out = capsys.readouterr().out
    for name, s in SCENARIOS.items():
        assert name in out and s.summary_vi in out and s.summary_en in out


def test_simulate_dry_run_prints_jsonl(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["simulate", "cyber", "--dry-run", "--speed", "80", "--start", START.isoformat()]
    assert main(argv) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0]["value"]["observed_at"] == "2025-11-10T02:00:00+07:00"
    assert rows[-1]["topic"] == CLOCK
    assert any(r["topic"] == INGEST_REPORTS for r in rows)


@pytest.mark.parametrize(
    "argv",
    [
        ["simulate"],
        ["simulate", "tsunami", "--dry-run"],
        ["simulate", "cyber", "--dry-run", "--speed", "-1"],
        ["simulate", "cyber", "--dry-run", "--start", "2025-11-10T02:00:00"],
        ["demo", "--scenario", "tsunami"],
    ],
)
def test_bad_arguments_are_refused_before_anything_starts(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err


def test_demo_defaults_to_the_multi_hazard_scenario() -> None:
    args = build_parser().parse_args(["demo"])
    assert (args.scenario, args.duration, args.json) == ("multi", 45.0, False)
    args = build_parser().parse_args(["demo", "--scenario", "flood", "--duration", "30"])
    assert (args.scenario, args.duration) == ("flood", 30.0)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_drill_message_carries_its_clock_and_is_on_time_by_it(name: str) -> None:
    """A compressed drill runs ahead of the wall clock by design: each reading and report
    says on which clock (issue 15), and at its send time it is never ahead of that clock,
    so the validate stage's clock-skew bound lets it through and refuses a forged one."""
    from pipeline.validate import TimePolicy, check_time

    scenario = get(name)
    speed = default_speed(scenario)
    origin = START + timedelta(seconds=2)  # the run starts a little after the schedule
    items = [o for o in schedule(scenario, START, speed, origin=origin) if o.kind != "tick"]
    assert items
    for o in items:
        m = (Reading if o.kind == "reading" else Report).model_validate_json(o.value)
        assert m.drill is not None and m.drill.speed == speed and m.drill.origin == origin
        wall = origin + timedelta(seconds=o.at)
        # Due when its drill's clock reaches it (to within float rounding, a wall µs).
        assert m.observed_at - m.drill.at(wall) < timedelta(microseconds=1) * speed
        assert check_time(m.observed_at, wall, TimePolicy(), m.drill) is None
