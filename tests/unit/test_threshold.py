"""Multi-level thresholds with hysteresis (pipeline.rules.threshold.next_level)."""

from __future__ import annotations

import pytest

from pipeline.rules.model import Direction, Level, Rule, Selector, ThresholdCondition
from pipeline.rules.threshold import next_level
from topics.models import Domain, Severity


@pytest.fixture(scope="module")
def grid() -> Rule:
    """Lower is worse: grid frequency levels 49.8 / 49.5 / 49.0 Hz, hysteresis 0.05."""
    return Rule(
        id="energy.grid.frequency",
        domain=Domain.ENERGY,
        hazard="grid_underfrequency",
        selector=Selector(metric="grid_frequency_hz"),
        condition=ThresholdCondition(direction=Direction.FALLING, hysteresis=0.05),
        levels=[
            Level(level=1, name="I", value=49.8, severity=Severity.MODERATE),
            Level(level=2, name="II", value=49.5, severity=Severity.SEVERE),
            Level(level=3, name="III", value=49.0, severity=Severity.EXTREME),
        ],
    )


def _walk(rule: Rule, values: list[float], start: int = 0) -> list[int]:
    levels, level = [], start
    for v in values:
        level = next_level(rule, level, v)
        levels.append(level)
    return levels


def _transitions(levels: list[int], start: int = 0) -> list[tuple[int, int]]:
    out, prev = [], start
    for lv in levels:
        if lv != prev:
            out.append((prev, lv))
        prev = lv
    return out


def test_shipped_rule_has_expected_levels(dap_cau: Rule) -> None:
    assert [(lv.level, lv.name, lv.value) for lv in dap_cau.levels] == [
        (1, "I", 4.30),
        (2, "II", 5.30),
        (3, "III", 6.30),
    ]
    assert dap_cau.condition.hysteresis == pytest.approx(0.10)
    assert dap_cau.condition.direction is Direction.RISING


def test_exact_boundary_raises_level_one(dap_cau: Rule) -> None:
    assert next_level(dap_cau, 0, 4.30) == 1


def test_just_below_boundary_does_not_raise(dap_cau: Rule) -> None:
    assert next_level(dap_cau, 0, 4.29) == 0


@pytest.mark.parametrize(("value", "level"), [(5.30, 2), (6.30, 3), (5.29, 1), (6.29, 2)])
def test_each_level_boundary_from_quiet(dap_cau: Rule, value: float, level: int) -> None:
    assert next_level(dap_cau, 0, value) == level


def test_jump_from_zero_straight_to_three(dap_cau: Rule) -> None:
    assert next_level(dap_cau, 0, 6.5) == 3


def test_escalation_does_not_wait_for_hysteresis(dap_cau: Rule) -> None:
    assert next_level(dap_cau, 1, 5.30) == 2
    assert next_level(dap_cau, 1, 7.0) == 3


def test_level_two_held_within_hysteresis(dap_cau: Rule) -> None:
    assert next_level(dap_cau, 2, 5.25) == 2


def test_level_two_drops_to_one_below_hysteresis(dap_cau: Rule) -> None:
    assert next_level(dap_cau, 2, 5.19) == 1


def test_drop_from_three_to_zero_in_one_step(dap_cau: Rule) -> None:
    assert next_level(dap_cau, 3, 3.0) == 0


def test_drop_from_three_stops_at_the_level_the_value_still_holds(dap_cau: Rule) -> None:
    assert next_level(dap_cau, 3, 5.25) == 2  # within II's margin
    assert next_level(dap_cau, 3, 4.25) == 1  # within I's margin


def test_value_at_a_lower_level_does_not_raise_above_it(dap_cau: Rule) -> None:
    # Standing at level I, a reading of 5.25 must not raise II (it needs 5.30).
    assert next_level(dap_cau, 1, 5.25) == 1


def test_oscillation_around_level_one_raises_once_and_never_clears(dap_cau: Rule) -> None:
    levels = _walk(dap_cau, [4.28, 4.32, 4.25, 4.31, 4.22, 4.30, 4.21])
    assert _transitions(levels) == [(0, 1)]
    assert levels[-1] == 1


def test_oscillation_transitions_only_once_over_many_cycles(dap_cau: Rule) -> None:
    levels = _walk(dap_cau, [4.28, 4.32, 4.25, 4.31] * 25)
    assert _transitions(levels) == [(0, 1)]


def test_full_flood_sequence(dap_cau: Rule) -> None:
    values = [3.6, 4.35, 5.38, 6.42, 6.61, 6.15, 5.10, 4.15]
    assert _walk(dap_cau, values) == [0, 1, 2, 3, 3, 2, 1, 0]


# Falling rule: the mirror image.


def test_falling_exact_boundary_raises(grid: Rule) -> None:
    assert next_level(grid, 0, 49.8) == 1
    assert next_level(grid, 0, 49.81) == 0


def test_falling_jump_straight_to_three(grid: Rule) -> None:
    assert next_level(grid, 0, 48.7) == 3


def test_falling_hold_within_hysteresis_and_drop_beyond(grid: Rule) -> None:
    assert next_level(grid, 2, 49.53) == 2
    assert next_level(grid, 2, 49.56) == 1


def test_falling_drop_from_three_to_zero(grid: Rule) -> None:
    assert next_level(grid, 3, 50.0) == 0


def test_falling_oscillation_raises_once_and_never_clears(grid: Rule) -> None:
    levels = _walk(grid, [49.82, 49.78, 49.84, 49.79] * 10)
    assert _transitions(levels) == [(0, 1)]


def test_falling_full_sequence(grid: Rule) -> None:
    values = [50.0, 49.79, 49.45, 48.9, 48.8, 49.2, 49.6, 49.9]
    assert _walk(grid, values) == [0, 1, 2, 3, 3, 2, 1, 0]
