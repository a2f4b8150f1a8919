"""One bad timestamp can never silence a station (issue 15, item 1).

The quality gate and the rules keep per-station state in time order. A reading dated
far ahead (a wrong clock, a forged 2999 reading, an earlier drill in compressed time)
used to leave that state in the future, so every later reading was "out of order" and
nothing was ever raised again. Live, state dated beyond the present is now taken for
an abandoned timeline: the station is judged afresh, whatever it was sent before."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerting.directory import Directory
from feeds.scenarios import get
from feeds.simulate import schedule
from pipeline.engine import Engine, Outputs
from pipeline.quality import Check, QualityConfig, inspect
from pipeline.rules.loader import RuleSet
from topics.models import Reading, Report, Transition, Warning

NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
SKEW = timedelta(minutes=5)
FUEL = "energy.fuel.reserve-days"
FUEL_WID = f"{FUEL}:fuel-bac-ninh"


def fuel(value: float, at: datetime) -> Reading:
    return Reading(
        station_id="fuel-bac-ninh",
        domain="energy",
        metric="fuel_reserve_days",
        value=value,
        observed_at=at,
        source="http-agency",
    )


def engine(ruleset: RuleSet, directory: Directory) -> Engine:
    return Engine(ruleset, directory, max_clock_skew=SKEW)


def last(store: dict[str, Any], wid: str = FUEL_WID) -> Warning | None:
    raw = store.get(f"w|{wid}")
    return Warning.model_validate(raw) if raw else None


def level(store: dict[str, Any], wid: str = FUEL_WID) -> int:
    w = last(store, wid)
    return w.level if w is not None and w.transition is not Transition.CLEARED else 0


# --- The issue's own sequence -----------------------------------------------------------


def test_a_reading_dated_2999_does_not_silence_the_station(
    ruleset: RuleSet, directory: Directory
) -> None:
    """fuel-bac-ninh 20 at 2999-01-01, then 12, 8 and 4 at now: 12 raises level 1."""
    e = engine(ruleset, directory)
    store: dict[str, Any] = {}
    out = e.on_reading(fuel(20, datetime(2999, 1, 1, tzinfo=UTC)), store, now=NOW)
    levels = []
    for i, value in enumerate((12, 8, 4)):
        at = NOW + timedelta(minutes=i)
        e.on_reading(fuel(value, at), store, now=at)
        levels.append(level(store))
    assert levels == [1, 2, 3]
    assert [c.value for c, _ in out.rejected] == ["future"]  # set aside, counted


def test_state_already_poisoned_recovers_at_the_first_reading_of_the_present(
    ruleset: RuleSet, directory: Directory
) -> None:
    """A store poisoned before the clock bounds existed (no clock given, as a build
    without them ran): a 2999 reading had raised level 3 and set the gate's time. The
    first live reading re-anchors the gate, says so, and the warning follows it."""
    e = engine(ruleset, directory)
    store: dict[str, Any] = {}
    e.on_reading(fuel(1, datetime(2999, 1, 1, tzinfo=UTC)), store)
    assert level(store) == 3
    out = e.on_reading(fuel(20, NOW), store, now=NOW)
    assert out.rejected == []
    [(series, why)] = out.reanchored
    assert series.startswith("fuel-bac-ninh|fuel_reserve_days")
    assert "2999-01-01" in why and "new timeline" in why
    cleared = last(store)
    assert cleared is not None and cleared.transition is Transition.CLEARED
    assert cleared.updated_at == NOW
    e.on_reading(fuel(12, NOW + timedelta(minutes=1)), store, now=NOW + timedelta(minutes=1))
    assert level(store) == 1


def test_a_standing_warning_dated_in_the_future_is_re_dated_by_the_present(
    ruleset: RuleSet, directory: Directory
) -> None:
    e = engine(ruleset, directory)
    store: dict[str, Any] = {}
    e.on_reading(fuel(4, datetime(2999, 1, 1, tzinfo=UTC)), store)
    before = last(store)
    assert before is not None and before.level == 3
    e.on_reading(fuel(3, NOW), store, now=NOW)  # the same level, now
    after = last(store)
    assert after is not None
    assert (after.level, after.transition, after.updated_at) == (3, Transition.UPDATED, NOW)
    assert after.version == before.version + 1


def test_a_reading_a_few_minutes_ahead_is_fine_and_holds_nothing_back_for_long(
    ruleset: RuleSet, directory: Directory
) -> None:
    e = engine(ruleset, directory)
    store: dict[str, Any] = {}
    ahead = NOW + timedelta(minutes=4)  # within the skew bound: accepted
    assert e.on_reading(fuel(20, ahead), store, now=NOW).rejected == []
    out = e.on_reading(fuel(12, NOW + timedelta(minutes=1)), store, now=NOW)
    assert [c for c, _ in out.rejected] == [Check.OUT_OF_ORDER]  # as before: older
    later = NOW + timedelta(minutes=5)
    e.on_reading(fuel(12, later), store, now=later)
    assert level(store) == 1


def test_backtests_and_rule_tests_have_no_present_and_keep_their_old_rules(
    ruleset: RuleSet, directory: Directory
) -> None:
    """Without a clock (history) nothing is judged against the present: the order of
    the readings alone decides, as before."""
    e = engine(ruleset, directory)
    store: dict[str, Any] = {}
    e.on_reading(fuel(20, NOW + timedelta(days=400)), store)
    out = e.on_reading(fuel(12, NOW), store)
    assert [c for c, _ in out.rejected] == [Check.OUT_OF_ORDER]
    assert out.reanchored == []


# --- The gate alone ---------------------------------------------------------------------


def test_the_gate_refuses_a_reading_beyond_the_present_and_re_anchors_state_there() -> None:
    config = QualityConfig.model_validate({"metrics": {"fuel_reserve_days": {"min": 0}}})
    state: dict[str, Any] = {}
    far = fuel(20, datetime(2999, 1, 1, tzinfo=UTC))
    verdict = inspect(config, state, far, NOW, SKEW)
    assert (verdict.ok, verdict.check, verdict.fault) == (False, Check.FUTURE, False)
    assert state == {}  # nothing was learnt from it
    assert inspect(config, state, far).ok  # without a clock (an old build) it got in
    verdict = inspect(config, state, fuel(12, NOW), NOW, SKEW)
    assert verdict.ok and "new timeline" in verdict.reanchored
    assert state["ts"] == NOW.timestamp()


FAR = datetime(2999, 1, 1, tzinfo=UTC).timestamp()
BEFORE = NOW.timestamp() - 60


@pytest.mark.parametrize(
    "dated",
    [
        {"ts": FAR},  # the last accepted reading
        {"ts": int(FAR)},  # the same, as an integer (another JSON encoder's changelog)
        {"ts": BEFORE, "same_since": FAR},  # since when the value has not moved
        {"ts": BEFORE, "jump": [FAR, 30.0, 1]},  # a jump waiting to be confirmed
    ],
    ids=["ts", "ts-int", "same_since", "jump"],
)
def test_any_time_of_the_gate_dated_beyond_the_present_starts_a_new_timeline(
    dated: dict[str, Any],
) -> None:
    """Whichever of its times is beyond the present, the station is not held back
    (the gate answers the common case without the full check: this holds it to it)."""
    config = QualityConfig.model_validate({"metrics": {"fuel_reserve_days": {"min": 0}}})
    state: dict[str, Any] = {"faults": [], "value": 12.0, **dated}
    verdict = inspect(config, state, fuel(20, NOW), NOW, SKEW)
    assert verdict.ok and verdict.check is None and "new timeline" in verdict.reanchored
    assert state == {"faults": [], "ts": NOW.timestamp(), "value": 20.0,
                     "same_since": NOW.timestamp()}  # fmt: skip


# --- Drills: a second run of the same scenario raises its warnings again ---------------------


def play(
    e: Engine, store: dict[str, Any], start: datetime, speed: float, name: str = "flood"
) -> list[Warning]:
    """Feed one drill run through the engine as the pipeline would: every reading and
    report at its send time, judged with the wall clock of that moment."""
    out = Outputs()
    for item in schedule(get(name), start, speed, clock=False):
        wall = start + timedelta(seconds=item.at)
        if item.kind == "reading":
            out.extend(e.on_reading(Reading.model_validate_json(item.value), store, now=wall))
        else:
            report = Report.model_validate_json(item.value)
            out.extend(e.on_report(report, report.areas[0], store))
    return out.warnings


def flood_levels(warnings: Iterable[Warning]) -> list[tuple[str, int]]:
    return [
        (w.transition.value, w.level)
        for w in warnings
        if w.warning_id == "water.flood.dap-cau:dap-cau"
        and w.transition in (Transition.RAISED, Transition.ESCALATED, Transition.CLEARED)
    ]


def test_a_second_drill_on_the_same_cluster_raises_the_flood_again(
    ruleset: RuleSet, directory: Directory
) -> None:
    """Issue 15: the first `canhbao simulate flood` dated readings up to three days
    ahead, so a second run a minute later raised no flood warning. Each run carries its
    drill's clock; state the first left beyond the second's present is abandoned."""
    e = engine(ruleset, directory)
    store: dict[str, Any] = {}
    speed = 5760.0  # 72 h in 45 s, as `canhbao simulate flood` plays it
    first = flood_levels(play(e, store, NOW, speed))
    second = flood_levels(play(e, store, NOW + timedelta(seconds=60), speed))
    expected = [("raised", 1), ("escalated", 2), ("escalated", 3)]
    assert first[:3] == expected and first[-1] == ("cleared", 0)
    assert second == first


def test_a_drill_reading_is_judged_on_its_drill_clock(
    ruleset: RuleSet, directory: Directory
) -> None:
    """Ahead of the wall clock by a day, but on time by its drill's clock: accepted."""
    [item] = [i for i in schedule(get("flood"), NOW, 5760.0, clock=False) if i.at > 15][:1]
    reading = Reading.model_validate_json(item.value)
    assert reading.observed_at - NOW > timedelta(days=1)
    e = engine(ruleset, directory)
    wall = NOW + timedelta(seconds=item.at)
    assert e.on_reading(reading, {}, now=wall).rejected == []
    # Too early for its own drill clock (sent before it was due): refused as future.
    early = NOW + timedelta(seconds=item.at - 60)
    assert [c for c, _ in e.on_reading(reading, {}, now=early).rejected] == [Check.FUTURE]


# --- The property: whatever it was sent, a station recovers ------------------------------

# Times anywhere from year 1 to 9999, as a broken or hostile sender might stamp them,
# and many near the present, where ordering and the skew bound matter.
ANY_TIME = st.one_of(
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
    st.integers(min_value=-3 * 1440, max_value=3 * 1440).map(lambda m: NOW + timedelta(minutes=m)),
)
HISTORY = st.lists(
    st.tuples(
        st.floats(min_value=-50, max_value=500, allow_nan=False),
        ANY_TIME,
        st.booleans(),  # whether the pipeline that took it had a clock
    ),
    max_size=12,
)
# Values that decide the fuel rule's level whatever level it stood at (away from the
# hysteresis bands): 20 → none, 12 → 1, 8 → 2, 4 → 3.
CLEAR_VALUES = st.sampled_from([20.0, 12.0, 8.0, 4.0])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=HISTORY, values=st.lists(CLEAR_VALUES, min_size=1, max_size=4))
def test_a_station_recovers_whatever_it_was_sent(
    ruleset: RuleSet,
    directory: Directory,
    history: list[tuple[float, datetime, bool]],
    values: list[float],
) -> None:
    """After any history (far future, far past, out of range, duplicates, with or
    without a clock), readings of the present decide the station's warning exactly as
    they would for a station that was sent nothing before. The readings come a minute
    apart, each value held for more than the clock-skew bound (a reading dated within
    the bound ahead may hold later ones back that long, no longer)."""
    e = engine(ruleset, directory)
    poisoned: dict[str, Any] = {}
    for value, at, clocked in history:
        e.on_reading(fuel(value, at), poisoned, now=NOW if clocked else None)
    fresh: dict[str, Any] = {}
    hold = int(SKEW / timedelta(minutes=1)) + 2
    t = NOW
    for value in values:
        for _ in range(hold):
            t += timedelta(minutes=1)
            e.on_reading(fuel(value, t), poisoned, now=t)
            e.on_reading(fuel(value, t), fresh, now=t)
        assert level(poisoned) == level(fresh), (value, t)
