"""Pure evaluation of a multi-level threshold with hysteresis."""

from __future__ import annotations

from pipeline.rules.model import Direction, Rule


def _reached(direction: Direction, value: float, bound: float) -> bool:
    return value >= bound if direction is Direction.RISING else value <= bound


def next_level(rule: Rule, current: int, value: float) -> int:
    """The level after observing ``value`` when the warning stands at ``current``.

    Going up needs the value to reach a level; going down needs it to pass the
    level minus the hysteresis margin (plus, for a falling rule), one level at a
    time as far as the value allows.
    """
    cond = rule.condition
    raised = 0
    for lv in rule.levels:
        if _reached(cond.direction, value, lv.value):
            raised = lv.level
    if raised >= current:
        return raised
    # Dropping: hold each level until the value is clear of it by the margin.
    sign = 1.0 if cond.direction is Direction.RISING else -1.0
    held = 0
    for lv in rule.levels:
        if lv.level > current:
            break
        if _reached(cond.direction, value, lv.value - sign * cond.hysteresis):
            held = lv.level
    return held
