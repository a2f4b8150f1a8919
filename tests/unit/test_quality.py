"""The data-quality gate (pipeline.quality.inspect), reading by reading."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from pipeline.quality import Check, QualityConfig, Verdict, inspect
from tests.unit.conftest import T0
from topics.models import Reading


def _config(**limits: Any) -> QualityConfig:
    extra = {k: limits.pop(k) for k in ("max_lateness", "confirm_after") if k in limits}
    return QualityConfig.model_validate({"metrics": {"water_level_m": limits}, **extra})


def _reading(value: float, minutes: float, metric: str = "water_level_m") -> Reading:
    return Reading(
        station_id="dap-cau",
        domain="water",
        metric=metric,
        value=value,
        observed_at=T0 + timedelta(minutes=minutes),
    )


def _feed(
    config: QualityConfig,
    points: list[tuple[float, float]],
    state: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> list[Verdict]:
    state = {} if state is None else state
    return [inspect(config, state, _reading(v, m), now) for m, v in points]


def _checks(verdicts: list[Verdict]) -> list[Check | None]:
    return [v.check for v in verdicts]


def test_plausible_readings_pass() -> None:
    got = _feed(_config(min=0, max=30, max_step_per_hour=2), [(0, 4.0), (10, 4.1), (20, 4.2)])
    assert all(v.ok and v.check is None and not v.fault for v in got)


def test_duplicate_time_is_set_aside_but_is_not_a_fault() -> None:
    got = _feed(_config(), [(0, 4.0), (0, 4.0)])
    assert got[1].check is Check.DUPLICATE
    assert not got[1].ok and not got[1].fault


def test_older_reading_is_out_of_order() -> None:
    got = _feed(_config(), [(10, 4.0), (5, 4.1), (20, 4.2)])
    assert _checks(got) == [None, Check.OUT_OF_ORDER, None]
    assert not got[1].fault


def test_late_only_when_now_is_given() -> None:
    config = _config(max_lateness="10m")
    now = T0 + timedelta(minutes=30)
    assert inspect(config, {}, _reading(4.0, 0), now).check is Check.LATE
    assert inspect(config, {}, _reading(4.0, 25), now).ok
    # Replays and backtests pass no clock: old data is not late.
    assert inspect(config, {}, _reading(4.0, 0)).ok


def test_late_is_not_a_fault() -> None:
    verdict = inspect(_config(max_lateness="10m"), {}, _reading(4.0, 0), T0 + timedelta(hours=1))
    assert not verdict.ok and not verdict.fault
    assert "old" in verdict.detail


@pytest.mark.parametrize("value", [99.0, -6.0])
def test_out_of_range_is_a_fault(value: float) -> None:
    verdict = inspect(_config(min=-5, max=30), {}, _reading(value, 0))
    assert verdict.check is Check.OUT_OF_RANGE
    assert verdict.fault and not verdict.ok
    assert "-5..30" in verdict.detail


def test_out_of_range_does_not_advance_the_state() -> None:
    config = _config(max=30, max_step_per_hour=2)
    state: dict[str, Any] = {}
    got = _feed(config, [(0, 4.0), (10, 99.0), (10, 4.05)], state)
    # The corrected reading for 00:10 is neither a duplicate nor a spike from 99.
    assert _checks(got) == [None, Check.OUT_OF_RANGE, None]
    assert got[2].cleared == (Check.OUT_OF_RANGE,)


def test_metric_without_limits_is_not_range_checked() -> None:
    config = _config(max=30)
    assert inspect(config, {}, _reading(500.0, 0, metric="rain_mm")).ok


def test_spike_then_back_is_rejected_and_cleared() -> None:
    config = _config(max_step_per_hour=2)
    got = _feed(config, [(0, 4.0), (10, 4.05), (20, 9.0), (30, 4.1)])
    assert _checks(got) == [None, None, Check.SPIKE, None]
    assert got[2].fault
    assert "jumps" in got[2].detail
    # 4.1 is compared with the last accepted 4.05, not with the spike.
    assert got[3].ok and got[3].cleared == (Check.SPIKE,)


def test_genuine_jump_is_accepted_after_confirm_after_consistent_readings() -> None:
    config = _config(max_step_per_hour=2, confirm_after=3)
    got = _feed(config, [(0, 4.0), (10, 8.0), (20, 8.02), (30, 8.05), (40, 8.1)])
    assert _checks(got) == [None, Check.SPIKE, Check.SPIKE, None, None]
    assert got[3].ok and got[3].cleared == (Check.SPIKE,)
    assert got[4].ok and got[4].cleared == ()


def test_confirm_after_two() -> None:
    config = _config(max_step_per_hour=2, confirm_after=2)
    got = _feed(config, [(0, 4.0), (10, 8.0), (20, 8.02)])
    assert _checks(got) == [None, Check.SPIKE, None]


def test_inconsistent_jumps_are_never_confirmed() -> None:
    config = _config(max_step_per_hour=2, confirm_after=3)
    got = _feed(config, [(0, 4.0), (10, 8.0), (20, 12.0), (30, 8.0), (40, 12.0)])
    assert _checks(got)[1:] == [Check.SPIKE] * 4


def test_stuck_after_the_same_value_for_stuck_after_then_clears() -> None:
    config = _config(stuck_after="2h")
    got = _feed(config, [(0, 4.2), (60, 4.2), (120, 4.2), (180, 4.2), (240, 4.3)])
    assert _checks(got) == [None, None, Check.STUCK, Check.STUCK, None]
    assert got[2].fault and "unchanged" in got[2].detail
    assert Check.STUCK in got[4].cleared
    assert got[4].ok


def test_stuck_tolerance() -> None:
    config = _config(stuck_after="1h", stuck_tolerance=0.01)
    got = _feed(config, [(0, 4.200), (30, 4.205), (60, 4.201)])
    assert got[2].check is Check.STUCK


def test_a_moving_value_is_never_stuck() -> None:
    config = _config(stuck_after="1h")
    got = _feed(config, [(i * 30, 4.0 + (i % 2) * 0.01) for i in range(10)])
    assert all(v.ok for v in got)


def test_stuck_clock_restarts_after_a_change() -> None:
    config = _config(stuck_after="1h")
    got = _feed(config, [(0, 4.0), (50, 4.0), (55, 4.1), (100, 4.1), (115, 4.1)])
    assert _checks(got) == [None, None, None, None, Check.STUCK]


def test_cleared_lists_every_fault_the_good_reading_ends() -> None:
    config = _config(max=30, max_step_per_hour=2)
    got = _feed(config, [(0, 4.0), (10, 99.0), (20, 9.0), (30, 4.1)])
    assert _checks(got) == [None, Check.OUT_OF_RANGE, Check.SPIKE, None]
    assert set(got[3].cleared) == {Check.OUT_OF_RANGE, Check.SPIKE}


def test_state_is_json_safe() -> None:
    import json

    state: dict[str, Any] = {}
    config = _config(max=30, max_step_per_hour=2, stuck_after="1h")
    _feed(config, [(0, 4.0), (10, 99.0), (20, 9.0), (30, 9.0)], state)
    json.dumps(state)


def test_out_of_range_detail_shows_a_zero_limit() -> None:
    verdict = inspect(_config(min=0, max=30), {}, _reading(-2.0, 0))
    assert verdict.check is Check.OUT_OF_RANGE
    assert verdict.detail == "-2 is outside 0..30"
