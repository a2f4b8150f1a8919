"""Pure level logic shared by every kind that yields a number: levels with
hysteresis on the way down and an optional sustained duration on the way up."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pipeline.rules.model import Direction, Rule, _Levelled


def _cond(rule: Rule) -> _Levelled:
    cond = rule.condition
    if not isinstance(cond, _Levelled):
        raise TypeError(f"rule {rule.id} ({cond.kind}) has no numeric levels")
    return cond


def _reached(direction: Direction, value: float, bound: float) -> bool:
    return value >= bound if direction is Direction.RISING else value <= bound


def next_level(rule: Rule, current: int, value: float) -> int:
    """The level after observing ``value`` when the warning stands at ``current``.

    Going up needs the value to reach a level; going down needs it to pass the
    level minus the hysteresis margin (plus, for a falling rule), one level at a
    time as far as the value allows.
    """
    cond = _cond(rule)
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


def decide_level(
    rule: Rule, state: dict[str, Any], current: int, value: float, at: datetime
) -> int:
    """``next_level`` plus the sustained duration: a higher level is raised only
    once the value has reached it continuously for ``sustained``. ``state`` keeps,
    per level, since when it has been reached (JSON-safe, for a Faust table)."""
    cond = _cond(rule)
    candidate = next_level(rule, current, value)
    if cond.sustained is None:
        return candidate
    since: dict[str, float] = state.setdefault("since", {})
    ts = at.timestamp()
    for lv in rule.levels:
        key = str(lv.level)
        if _reached(cond.direction, value, lv.value):
            since.setdefault(key, ts)
        else:
            since.pop(key, None)
    if candidate <= current:
        return candidate
    hold = cond.sustained.total_seconds()
    eligible = [
        lv.level
        for lv in rule.levels
        if current < lv.level <= candidate
        and str(lv.level) in since
        and ts - since[str(lv.level)] >= hold
    ]
    return max(eligible, default=current)


def level_for(rule: Rule, value: float) -> int:
    """The highest level ``value`` reaches, ignoring hysteresis (for reporting)."""
    return next_level(rule, 0, value)
