"""The warning lifecycle, as a pure step: (rule, previous state, reading) -> next state.

One active warning per (rule, subject). A level change is an update of that
warning (same id, next version), not a new one; dropping below the lowest
level (after hysteresis) produces an all-clear and ends it.
"""

from __future__ import annotations

from dataclasses import dataclass

from alerting.directory import Directory
from alerting.governance import lead_agency, scope_tier
from pipeline.rules.model import Rule
from pipeline.rules.threshold import next_level
from topics.models import Evidence, LifecycleStatus, Phase, Reading, Transition, Warning


def warning_id(rule: Rule, subject: str) -> str:
    return f"{rule.id}:{subject}"


@dataclass(frozen=True)
class Context:
    directory: Directory
    exercise: bool = False


def _areas(rule: Rule, reading: Reading, ctx: Context) -> list[str]:
    if rule.areas:
        return list(rule.areas)
    station = ctx.directory.station(reading.station_id)
    if station is not None:
        return list(station.warns or [station.commune])
    return [reading.area] if reading.area else []


def step(rule: Rule, previous: Warning | None, reading: Reading, ctx: Context) -> Warning | None:
    """The new warning state after ``reading``, or None when nothing changes."""
    if previous is not None and reading.observed_at < previous.updated_at:
        return None  # an older reading must not undo a newer decision
    current = previous.level if previous is not None and previous.active else 0
    level = next_level(rule, current, reading.value)
    if level == current:
        return None

    if current == 0:
        transition = Transition.RAISED
    elif level == 0:
        transition = Transition.CLEARED
    elif level > current:
        transition = Transition.ESCALATED
    else:
        transition = Transition.DEESCALATED

    decisive = rule.level(level) if level else rule.level(current)
    evidence = Evidence(
        station_id=reading.station_id,
        metric=reading.metric,
        value=reading.value,
        observed_at=reading.observed_at,
        threshold=decisive.value,
    )
    codes = _areas(rule, reading, ctx)
    directory = ctx.directory
    areas = [directory.area(code) for code in codes]
    provinces = {directory.province_of(code) for code in codes}
    phase = previous.phase if previous is not None and previous.active else Phase.INCIDENT
    active_before = previous is not None and previous.active
    return Warning(
        warning_id=warning_id(rule, reading.station_id),
        version=(previous.version + 1) if previous is not None else 1,
        rule_id=rule.id,
        domain=rule.domain,
        hazard=rule.hazard,
        subject=reading.station_id,
        transition=transition,
        level=level,
        level_name=rule.level(level).name if level else "",
        previous_level=current,
        severity=decisive.severity,
        areas=areas,
        scope_tier=scope_tier(provinces, set(codes), rule.scope == "province"),
        phase=phase,
        lead_agency=lead_agency(directory, rule.domain, phase),
        status=previous.status if previous is not None and active_before else LifecycleStatus.NEW,
        evidence=[evidence],
        raised_at=previous.raised_at
        if previous is not None and active_before
        else reading.observed_at,
        updated_at=reading.observed_at,
        exercise=ctx.exercise,
        labels={**rule.labels, "domain": rule.domain.value, "hazard": rule.hazard},
        annotations=dict(rule.annotations),
    )
