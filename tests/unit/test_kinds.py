"""What each numeric rule kind measures (pipeline.rules.kinds) and how a level is
decided when it must be sustained (pipeline.rules.threshold.decide_level)."""

from __future__ import annotations

import json
import statistics
from datetime import datetime, timedelta
from typing import Any

import pytest

from pipeline.rules.kinds import Baseline, ears, endemic_z, measure, rate_of_change, window
from pipeline.rules.model import (
    EarsCondition,
    EndemicCondition,
    RateCondition,
    Rule,
    WindowCondition,
)
from pipeline.rules.threshold import decide_level
from tests.unit.conftest import T0
from topics.models import Reading


def _reading(value: float, at: datetime, metric: str = "water_level_m", **kw: Any) -> Reading:
    return Reading(
        station_id=kw.pop("station_id", "dap-cau"),
        domain=kw.pop("domain", "water"),
        metric=metric,
        value=value,
        observed_at=at,
        **kw,
    )


def _at(minutes: float = 0, hours: float = 0, days: float = 0) -> datetime:
    return T0 + timedelta(minutes=minutes, hours=hours, days=days)


# --- rate of change ---


def _rate(cond: RateCondition, points: list[tuple[float, float]]) -> list[float | None]:
    """Feed (minutes, value) points; the rate after each one."""
    state: dict[str, Any] = {}
    return [rate_of_change(cond, state, _reading(v, _at(minutes=m))) for m, v in points]


def test_rate_is_none_until_the_readings_span_min_span() -> None:
    cond = RateCondition.model_validate({"window": "1h", "min_span": "30m"})
    rates = _rate(cond, [(0, 4.0), (10, 4.05), (20, 4.1), (30, 4.3)])
    assert rates[:3] == [None, None, None]
    assert rates[3] == pytest.approx(0.6)  # 0.3 m in half an hour


def test_rate_is_in_metres_per_hour() -> None:
    cond = RateCondition.model_validate({"window": "3h", "min_span": "1h"})
    rates = _rate(cond, [(0, 4.0), (60, 4.25), (120, 4.9)])
    assert rates[1] == pytest.approx(0.25)
    assert rates[2] == pytest.approx(0.45)  # (4.9 - 4.0) over 2 h


def test_a_falling_river_has_a_negative_rate() -> None:
    cond = RateCondition.model_validate({"window": "1h", "min_span": "30m"})
    assert _rate(cond, [(0, 5.0), (30, 4.8)])[-1] == pytest.approx(-0.4)


def test_rate_min_span_defaults_to_half_the_window() -> None:
    cond = RateCondition.model_validate({"window": "2h"})
    rates = _rate(cond, [(0, 4.0), (30, 4.1), (59, 4.2), (60, 4.3)])
    assert rates[:3] == [None, None, None]
    assert rates[3] == pytest.approx(0.3)


def test_rate_forgets_points_older_than_the_window() -> None:
    cond = RateCondition.model_validate({"window": "1h", "min_span": "30m"})
    # A 1 m rise in the first half hour, then the river stays flat.
    rates = _rate(cond, [(0, 4.0), (30, 5.0), (60, 5.0), (100, 5.0)])
    assert rates[1] == pytest.approx(2.0)
    assert rates[2] == pytest.approx(1.0)  # the 00:00 point is still in the window
    assert rates[3] == pytest.approx(0.0)  # the rise is more than an hour old


def test_rate_measures_from_the_oldest_point_inside_the_window() -> None:
    cond = RateCondition.model_validate({"window": "1h", "min_span": "30m"})
    rates = _rate(cond, [(0, 4.0), (10, 4.1), (30, 4.3), (90, 4.5)])
    # At 01:30 the window starts at 00:30: (4.5 - 4.3) over one hour.
    assert rates[3] == pytest.approx(0.2)


# --- windowed aggregates ---


def _window(cond: WindowCondition, points: list[tuple[datetime, float]]) -> list[float | None]:
    state: dict[str, Any] = {}
    return [window(cond, state, _reading(v, at, metric="rain_mm")) for at, v in points]


def test_sliding_sum_over_24h_drops_readings_older_than_the_window() -> None:
    cond = WindowCondition.model_validate({"aggregate": "sum", "window": "24h"})
    points = [(_at(), 10.0)] + [(_at(hours=h), 1.0) for h in range(1, 24)]
    points.append((_at(hours=25, minutes=30), 1.0))
    sums = _window(cond, points)
    assert sums[0] == pytest.approx(10.0)
    assert sums[22] == pytest.approx(10.0 + 22)  # at 22:00 everything is inside
    assert sums[23] == pytest.approx(10.0 + 23)
    # At 01:30 the next day the 10 mm of 00:00 and the 1 mm of 01:00 are gone.
    assert sums[24] == pytest.approx(22 + 1)


def test_sliding_count_per_5_minutes() -> None:
    cond = WindowCondition.model_validate({"aggregate": "count", "window": "5m"})
    events = [(T0 + timedelta(seconds=20 * i), 1.0) for i in range(12)]  # 12 in 4 min
    events.append((T0 + timedelta(minutes=10), 1.0))
    counts = _window(cond, events)
    assert counts[:12] == list(range(1, 13))
    assert counts[12] == 1  # the burst is more than 5 minutes old


def test_sliding_rate_is_sum_per_second_of_the_window() -> None:
    cond = WindowCondition.model_validate({"aggregate": "rate", "window": "5m"})
    got = _window(cond, [(_at(minutes=0), 10.0), (_at(minutes=1), 10.0), (_at(minutes=2), 10.0)])
    assert got[-1] == pytest.approx(30.0 / 300.0)


@pytest.mark.parametrize(("aggregate", "expected"), [("mean", 5.0), ("max", 8.0), ("min", 2.0)])
def test_sliding_mean_max_min(aggregate: str, expected: float) -> None:
    cond = WindowCondition.model_validate({"aggregate": aggregate, "window": "24h"})
    got = _window(cond, [(_at(hours=0), 2.0), (_at(hours=1), 8.0), (_at(hours=2), 5.0)])
    assert got[-1] == pytest.approx(expected)


def test_sliding_max_forgets_a_peak_older_than_the_window() -> None:
    cond = WindowCondition.model_validate({"aggregate": "max", "window": "24h"})
    got = _window(cond, [(_at(hours=0), 8.0), (_at(hours=20), 2.0), (_at(hours=25), 3.0)])
    assert got == [8.0, 8.0, 3.0]


def test_tumbling_window_resets_at_the_boundary() -> None:
    cond = WindowCondition.model_validate({"aggregate": "sum", "window": "1h", "mode": "tumbling"})
    got = _window(cond, [(_at(minutes=10), 2.0), (_at(minutes=50), 3.0), (_at(minutes=65), 1.0)])
    assert got == [2.0, 5.0, 1.0]


def test_tumbling_day_runs_midnight_to_midnight_utc() -> None:
    """Documented: 24 h tumbling windows are aligned to the epoch, i.e. to 07:00 in Vietnam."""
    cond = WindowCondition.model_validate({"aggregate": "sum", "window": "24h", "mode": "tumbling"})
    got = _window(
        cond,
        [(_at(hours=1), 5.0), (_at(hours=6, minutes=59), 5.0), (_at(hours=7, minutes=1), 1.0)],
    )
    assert got == [5.0, 10.0, 1.0]


def test_sliding_window_does_not_reset_at_a_boundary() -> None:
    cond = WindowCondition.model_validate({"aggregate": "sum", "window": "1h"})
    got = _window(cond, [(_at(minutes=10), 2.0), (_at(minutes=50), 3.0), (_at(minutes=65), 1.0)])
    assert got == [2.0, 5.0, 6.0]


# --- endemic channel ---

BASELINE_CSV = """\
area,year,week,count
bn-vu-ninh,2021,41,10
bn-vu-ninh,2022,41,14
bn-vu-ninh,2023,41,12
bn-vu-ninh,2021,42,30
bn-vu-ninh,2022,42,30
bn-kinh-bac,2023,41,7
"""


def test_baseline_mean_and_sd_per_area_and_week() -> None:
    b = Baseline.parse(BASELINE_CSV)
    mean, sd = b.stats[("bn-vu-ninh", 41)]
    assert mean == pytest.approx(12.0)
    assert sd == pytest.approx(2.0)  # sample SD of 10, 14, 12
    assert b.stats[("bn-vu-ninh", 42)] == pytest.approx((30.0, 0.0))
    assert b.stats[("bn-kinh-bac", 41)] == pytest.approx((7.0, 0.0))  # one season: SD 0
    assert set(b.stats) == {("bn-vu-ninh", 41), ("bn-vu-ninh", 42), ("bn-kinh-bac", 41)}


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("bn-vu-ninh,2024,forty,3", "line 3"),
        ("bn-vu-ninh,2024,41,many", "line 3"),
        ("bn-vu-ninh,twenty,41,3", "line 3"),
        ("bn-vu-ninh,2024,54,3", "line 3: week must be 1..53"),
        ("bn-vu-ninh,2024", "line 3"),
    ],
)
def test_baseline_errors_name_the_source_and_line(bad_line: str, message: str) -> None:
    text = f"area,year,week,count\nbn-vu-ninh,2023,41,4\n{bad_line}\n"
    with pytest.raises(ValueError, match=message) as exc:
        Baseline.parse(text, "health/dengue.csv")
    assert str(exc.value).startswith("health/dengue.csv: ")


def test_baseline_missing_columns_are_named() -> None:
    with pytest.raises(ValueError, match="needs columns area, count, week, year"):
        Baseline.parse("area,week,count\nbn-vu-ninh,41,3\n", "b.csv")
    with pytest.raises(ValueError, match="needs columns"):
        Baseline.parse("", "b.csv")


def test_endemic_z_against_the_same_iso_week() -> None:
    assert T0.isocalendar().week == 41
    cond = EndemicCondition.model_validate({"baseline": "b.csv"})
    b = Baseline.parse(BASELINE_CSV)
    z = endemic_z(cond, b, "bn-vu-ninh", _reading(18, T0, metric="dengue_cases"))
    assert z == pytest.approx(3.0)  # (18 - 12) / 2
    z_next_week = endemic_z(
        cond, b, "bn-vu-ninh", _reading(33, T0 + timedelta(days=7), metric="dengue_cases")
    )
    assert z_next_week == pytest.approx(3.0)  # (33 - 30) / max(0, min_sd=1)


def test_endemic_z_sd_floor() -> None:
    cond = EndemicCondition.model_validate({"baseline": "b.csv", "min_sd": 2.5})
    b = Baseline.parse(BASELINE_CSV)
    z = endemic_z(cond, b, "bn-kinh-bac", _reading(12, T0, metric="dengue_cases"))
    assert z == pytest.approx((12 - 7) / 2.5)


def test_endemic_z_is_none_without_a_baseline_for_the_area_or_week() -> None:
    cond = EndemicCondition.model_validate({"baseline": "b.csv"})
    b = Baseline.parse(BASELINE_CSV)
    assert endemic_z(cond, b, "bn-hap-linh", _reading(50, T0, metric="dengue_cases")) is None
    later = T0 + timedelta(days=21)
    assert endemic_z(cond, b, "bn-vu-ninh", _reading(50, later, metric="dengue_cases")) is None


# --- EARS C1 / C2 / C3 ---


def _ears(method: str, counts: list[float], min_sd: float = 0.2) -> list[float | None]:
    """One daily count per day (the last one is 'today'); the statistic after each."""
    cond = EarsCondition.model_validate({"method": method, "min_sd": min_sd})
    state: dict[str, Any] = {}
    return [
        ears(cond, state, _reading(c, _at(days=i), metric="ili_visits", domain="health"))
        for i, c in enumerate(counts)
    ]


def _c(base: list[float], today: float, min_sd: float = 0.2) -> float:
    return (today - statistics.fmean(base)) / max(statistics.stdev(base), min_sd)


# Days t-9 .. t-3 (mean 4, SD 1), then t-2, t-1, then today.
BASE = [3.0, 5.0, 3.0, 5.0, 3.0, 5.0, 4.0]


def test_c1_uses_the_seven_days_before_today() -> None:
    counts = [*BASE, 4.0, 4.0, 10.0]
    got = _ears("C1", counts)[-1]
    assert got == pytest.approx(_c(counts[-8:-1], 10.0))


def test_c2_ignores_the_two_most_recent_days() -> None:
    quiet = [*BASE, 4.0, 4.0, 10.0]
    rising = [*BASE, 9.0, 12.0, 10.0]  # an outbreak already under way on t-2 and t-1
    c2 = _ears("C2", quiet)[-1], _ears("C2", rising)[-1]
    assert c2[0] == pytest.approx(6.0)  # (10 - 4) / 1
    assert c2[1] == pytest.approx(6.0)  # t-2 and t-1 do not dilute the baseline
    c1 = _ears("C1", quiet)[-1], _ears("C1", rising)[-1]
    assert c1[1] is not None and c1[0] is not None
    assert c1[1] < c1[0]  # C1's baseline includes them


def test_ears_sd_floor() -> None:
    counts = [4.0] * 9 + [6.0]
    assert _ears("C2", counts, min_sd=0.5)[-1] == pytest.approx((6 - 4) / 0.5)


def test_ears_is_none_while_history_is_short() -> None:
    counts = [*BASE, 4.0, 4.0, 10.0]
    c1 = _ears("C1", counts)
    assert c1[:7] == [None] * 7  # needs 7 days before today
    assert all(v is not None for v in c1[7:])
    c2 = _ears("C2", counts)
    assert c2[:9] == [None] * 9  # needs 7 days ending 3 days ago
    assert c2[9] is not None
    assert _ears("C3", counts)[:9] == [None] * 9


def test_ears_needs_a_count_for_every_day() -> None:
    """A day without a reading is missing history, not a zero count."""
    cond = EarsCondition.model_validate({"method": "C1"})
    state: dict[str, Any] = {}
    got = None
    for i in [0, 1, 2, 4, 5, 6, 7, 8]:  # day 3 missing
        got = ears(cond, state, _reading(4.0, _at(days=i), metric="ili_visits", domain="health"))
    assert got is None


def test_ears_adds_up_several_counts_on_one_day() -> None:
    cond = EarsCondition.model_validate({"method": "C1"})
    state: dict[str, Any] = {}
    for i, c in enumerate(BASE):
        ears(cond, state, _reading(c, _at(days=i), metric="ili_visits", domain="health"))
    first = ears(cond, state, _reading(6.0, _at(days=7), metric="ili_visits", domain="health"))
    second = ears(
        cond,
        state,
        _reading(4.0, _at(days=7, hours=2), metric="ili_visits", domain="health"),
    )
    assert first == pytest.approx(_c(BASE, 6.0))
    assert second == pytest.approx(_c(BASE, 10.0))


def _c2_series(counts: list[float]) -> list[float | None]:
    out: list[float | None] = []
    for t in range(len(counts)):
        out.append(None if t < 9 else _c(counts[t - 9 : t - 2], counts[t]))
    return out


def test_c3_accumulates_the_excess_of_the_two_previous_days() -> None:
    counts = [4.0, 3.0, 5.0, 3.0, 5.0, 3.0, 5.0, 4.0, 3.0, 9.0, 10.0, 12.0]
    c2 = _c2_series(counts)
    c3 = _ears("C3", counts)[-1]
    assert c2[9] is not None and c2[10] is not None and c2[11] is not None
    expected = c2[11] + max(0.0, c2[10] - 1) + max(0.0, c2[9] - 1)
    assert c3 == pytest.approx(expected)
    assert c3 > c2[11]  # elevated days before today add up
    assert _ears("C2", counts)[-1] == pytest.approx(c2[11])


def test_c3_equals_c2_when_the_previous_days_were_normal() -> None:
    counts = [4.0, 3.0, 5.0, 3.0, 5.0, 3.0, 5.0, 4.0, 3.0, 4.0, 4.0, 12.0]
    assert _ears("C3", counts)[-1] == pytest.approx(_ears("C2", counts)[-1])


# --- measure (per-commune scores of a province rule) ---


def test_measure_keeps_the_worst_commune_and_each_communes_score() -> None:
    rule = Rule.model_validate(
        {
            "id": "health.dengue.province",
            "domain": "health",
            "hazard": "dengue",
            "selector": {"metric": "dengue_cases"},
            "group_by": "province",
            "condition": {"kind": "endemic_channel", "baseline": "b.csv"},
            "levels": [{"level": 1, "name": "alert", "value": 2, "severity": "Moderate"}],
        }
    )
    baselines = {"b.csv": Baseline.parse(BASELINE_CSV)}
    state: dict[str, Any] = {}
    r1 = _reading(18, T0, metric="dengue_cases", domain="health")
    m1 = measure(rule, state, r1, "bn-vu-ninh", baselines)
    assert m1 is not None and m1.value == pytest.approx(3.0)
    r2 = _reading(8, T0 + timedelta(hours=1), metric="dengue_cases", domain="health")
    m2 = measure(rule, state, r2, "bn-kinh-bac", baselines)
    assert m2 is not None
    assert m2.value == pytest.approx(3.0)  # the worst commune decides
    assert m2.by_area == pytest.approx({"bn-vu-ninh": 3.0, "bn-kinh-bac": 1.0})
    assert measure(rule, state, r2, None, baselines) is None  # no commune, no count
    json.dumps(state)  # lives in a Faust table


# --- sustained levels (decide_level) ---


def _flood_rule(sustained: str | None = "30m") -> Rule:
    cond: dict[str, Any] = {"kind": "threshold", "hysteresis": 0.1}
    if sustained:
        cond["sustained"] = sustained
    return Rule.model_validate(
        {
            "id": "water.flood.sustained",
            "domain": "water",
            "hazard": "river_flood",
            "selector": {"station": "dap-cau", "metric": "water_level_m"},
            "condition": cond,
            "levels": [
                {"level": 1, "name": "I", "value": 4.3, "severity": "Moderate"},
                {"level": 2, "name": "II", "value": 5.3, "severity": "Severe"},
            ],
        }
    )


def _decide(rule: Rule, points: list[tuple[float, float]], start: int = 0) -> list[int]:
    state: dict[str, Any] = {}
    level, out = start, []
    for minutes, value in points:
        level = decide_level(rule, state, level, value, _at(minutes=minutes))
        out.append(level)
    json.dumps(state)
    return out


def test_sustained_level_is_raised_only_after_holding() -> None:
    got = _decide(_flood_rule(), [(0, 4.5), (10, 4.5), (29, 4.6), (30, 4.5), (40, 4.5)])
    assert got == [0, 0, 0, 1, 1]


def test_without_sustained_the_level_is_raised_at_once() -> None:
    assert _decide(_flood_rule(None), [(0, 4.5)]) == [1]


def test_a_dip_below_the_level_restarts_the_clock() -> None:
    got = _decide(
        _flood_rule(),
        [(0, 4.5), (20, 4.5), (25, 4.2), (30, 4.5), (50, 4.5), (59, 4.5), (60, 4.5)],
    )
    assert got == [0, 0, 0, 0, 0, 0, 1]


def test_sustained_jump_straight_to_level_two() -> None:
    assert _decide(_flood_rule(), [(0, 5.5), (15, 5.6), (30, 5.5)]) == [0, 0, 2]


def test_each_level_has_its_own_clock() -> None:
    got = _decide(_flood_rule(), [(0, 4.5), (20, 5.5), (30, 5.5), (49, 5.5), (50, 5.5)])
    assert got == [0, 0, 1, 1, 2]


def test_deescalation_is_immediate_but_respects_hysteresis() -> None:
    rule = _flood_rule()
    assert _decide(rule, [(0, 5.25)], start=2) == [2]  # within 0.1 of level II: held
    assert _decide(rule, [(0, 5.1)], start=2) == [1]  # clear of II by the margin: at once
    assert _decide(rule, [(0, 4.0)], start=2) == [0]
    assert _decide(rule, [(0, 5.5), (10, 4.0), (20, 5.5)], start=2) == [2, 0, 0]
