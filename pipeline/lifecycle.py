"""The warning lifecycle: from a decided level to the next ``Warning`` state.

One active warning per (rule, subject). A level change is an update of that
warning (same id, next version), not a new one; dropping to level 0 produces
an all-clear and ends the episode. Versions never repeat for a warning id, even
across episodes, so (warning, version, receiver) identifies a notification.
Operator commands move the status (new → verified → responding → recovering →
closed) and the phase; only they can set phase 2 or 3.

One version, one content: ``settle_version`` keeps, per warning, the versions
published and a digest of each (state key ``p|<warning_id>``), so that a replay
that reaches an already published version with another content publishes it
under the next unused version instead (see the README, "State and restarts").
"""

from __future__ import annotations

import hashlib
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from alerting import risk
from alerting.directory import Directory
from alerting.governance import lead_agency, scope_tier
from pipeline import state as sk  # the store's keys
from pipeline.rules.model import Rule
from topics import ids
from topics.models import (
    Action,
    Agency,
    Area,
    Command,
    Domain,
    Evidence,
    LifecycleStatus,
    Phase,
    Reading,
    RiskAdjustment,
    Severity,
    Transition,
    Warning,
)

STATUS_ORDER = [
    LifecycleStatus.NEW,
    LifecycleStatus.VERIFIED,
    LifecycleStatus.RESPONDING,
    LifecycleStatus.RECOVERING,
    LifecycleStatus.CLOSED,
]
_ACTION_STATUS = {
    Action.VERIFY: LifecycleStatus.VERIFIED,
    Action.RESPOND: LifecycleStatus.RESPONDING,
    Action.RECOVER: LifecycleStatus.RECOVERING,
    Action.CLOSE: LifecycleStatus.CLOSED,
}


def warning_id(rule: Rule, subject: str) -> str:
    return ids.warning_id(rule.id, subject)


@dataclass(frozen=True)
class Context:
    directory: Directory
    exercise: bool = False
    # The official disaster risk levels (Decision 18/2021/QĐ-TTg) stated on warnings.
    risk_table: risk.RiskTable = field(default_factory=risk.table)


@dataclass(frozen=True)
class Spec:
    """What the warning is: from a rule, or from the quality gate for sensor faults."""

    rule_id: str
    domain: Domain
    hazard: str
    level_names: dict[int, tuple[str, Severity]]
    scope_province: bool = False
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    lead_override: str | None = None
    # The rule's level values and hysteresis: the risk level reads the quantity against them.
    thresholds: tuple[tuple[int, float], ...] = ()
    hysteresis: float = 0.0

    @classmethod
    def of(cls, rule: Rule) -> Spec:
        return cls(
            rule_id=rule.id,
            domain=rule.domain,
            hazard=rule.hazard,
            level_names={lv.level: (lv.name, lv.severity) for lv in rule.levels},
            scope_province=rule.scope == "province",
            labels=tuple(sorted({**rule.labels, "notify": str(rule.notify).lower()}.items())),
            annotations=tuple(sorted(rule.annotations.items())),
            thresholds=tuple((lv.level, lv.value) for lv in rule.levels),
            hysteresis=float(getattr(rule.condition, "hysteresis", 0.0) or 0.0),
        )


def is_active(previous: Warning | None) -> bool:
    return (
        previous is not None and previous.active and previous.status is not LifecycleStatus.CLOSED
    )


def _areas(directory: Directory, codes: list[str]) -> tuple[list[Area], set[str]]:
    areas: list[Area] = []
    provinces: set[str] = set()
    for code in codes:
        try:
            areas.append(directory.area(code))
            provinces.add(directory.province_of(code))
        except KeyError:
            areas.append(Area(code=code, name=code, province=""))
    return areas, provinces


def _lead(ctx: Context, spec: Spec, phase: Phase) -> Agency:
    if spec.lead_override is not None and phase is Phase.INCIDENT:
        entry = ctx.directory.agency(spec.lead_override)
        return Agency(code=entry.code, name_vi=entry.name_vi, name_en=entry.name_en)
    return lead_agency(ctx.directory, spec.domain, phase)


@dataclass(frozen=True)
class Risk:
    """A warning state's risk level: the level stated, its basis, an operator's raise."""

    level: int | None = None
    basis: str | None = None
    adjustment: RiskAdjustment | None = None

    @classmethod
    def of(cls, w: Warning) -> Risk:
        return cls(w.risk_level, w.risk_basis, w.risk_adjustment)

    def fields(self) -> dict[str, Any]:
        return {"risk_level": self.level, "risk_basis": self.basis,
                "risk_adjustment": self.adjustment}  # fmt: skip


def assess_risk(
    spec: Spec,
    subject: str,
    previous: Warning | None,
    level: int,
    evidence: list[Evidence],
    ctx: Context,
) -> Risk:
    """The risk level the Decision gives the next state (alerting.risk), with the
    operator's raise carried over from ``previous`` while the episode lasts."""
    if level == 0:
        return Risk()  # the all-clear ends the episode, and any raise with it
    station_id = evidence[0].station_id if evidence else subject
    attrs = ctx.directory.station_risk(station_id)
    station = risk.StationAttributes(attrs.flood_zone, attrs.historical_peak_m) if attrs else None
    adjustment = previous.risk_adjustment if is_active(previous) and previous else None
    before: int | None = None
    if is_active(previous) and previous is not None and previous.risk_level is not None:
        before = adjustment.from_level if adjustment else previous.risk_level
    found = ctx.risk_table.assess(
        spec.hazard,
        level,
        dict(spec.thresholds),
        [(e.metric, e.value) for e in evidence],
        station,
        hysteresis=spec.hysteresis,
        previous=before,
    )
    if found is None:
        return Risk()
    if adjustment is None:
        return Risk(found.level, found.basis)
    adjustment = adjustment.model_copy(update={"from_level": found.level})
    return Risk(risk.adjusted(found.level, adjustment.by), found.basis, adjustment)


def build(
    spec: Spec,
    subject: str,
    previous: Warning | None,
    level: int,
    at: datetime,
    evidence: list[Evidence],
    area_codes: list[str],
    ctx: Context,
    note: str = "",
) -> Warning | None:
    """The next state when the rule now says ``level``; None when nothing changed."""
    active = is_active(previous)
    current = previous.level if active and previous is not None else 0
    if level == 0 and not active:
        return None
    areas, provinces = _areas(ctx.directory, area_codes)
    stated = assess_risk(spec, subject, previous, level, evidence, ctx)
    if active and previous is not None and level == current:
        same_risk = (stated.level, stated.basis) == (previous.risk_level, previous.risk_basis)
        if [a.code for a in previous.areas] == [a.code for a in areas] and same_risk:
            return None
        # Same level: the affected communes changed, or the risk level did (a river
        # above alarm level III reaching III + 1 m, say).
        transition = Transition.UPDATED
    elif not active:
        transition = Transition.RAISED
    elif level == 0:
        transition = Transition.CLEARED
    elif level > current:
        transition = Transition.ESCALATED
    else:
        transition = Transition.DEESCALATED

    if level == 0 and previous is not None:
        # An all-clear repeats the last level's identity and the communes it covered.
        name, severity = "", previous.severity
        areas = areas if areas else list(previous.areas)
        provinces = {a.province for a in areas}
    else:
        name, severity = spec.level_names[level]
    phase = previous.phase if active and previous is not None else Phase.INCIDENT
    annotations = dict(spec.annotations)
    if note:
        annotations["note"] = note
    return Warning(
        warning_id=ids.warning_id(spec.rule_id, subject),
        version=(previous.version + 1) if previous is not None else 1,
        rule_id=spec.rule_id,
        domain=spec.domain,
        hazard=spec.hazard,
        subject=subject,
        transition=transition,
        level=level,
        level_name=name,
        previous_level=current,
        severity=severity,
        areas=areas,
        scope_tier=scope_tier(
            {p for p in provinces if p}, {a.code for a in areas}, spec.scope_province
        ),
        phase=phase,
        lead_agency=_lead(ctx, spec, phase),
        status=previous.status if active and previous is not None else LifecycleStatus.NEW,
        evidence=evidence,
        raised_at=previous.raised_at if active and previous is not None else at,
        updated_at=at,
        previous_updated_at=previous.updated_at if previous is not None else None,
        exercise=ctx.exercise,
        labels={**dict(spec.labels), "domain": spec.domain.value, "hazard": spec.hazard},
        annotations=annotations,
        **stated.fields(),
    )


class CommandRejected(ValueError):
    """An operator command that cannot apply; the reason goes to the dead-letter topic."""


def apply_command(previous: Warning | None, command: Command, ctx: Context) -> Warning:
    """The warning after an operator command, or ``CommandRejected`` with the reason."""
    if previous is None:
        raise CommandRejected(f"no warning {command.warning_id} on record")
    update: dict[str, object] = {
        "version": previous.version + 1,
        # A status step after the all-clear keeps it an all-clear: it must not
        # bring the episode back to life at level 0.
        "transition": Transition.UPDATED if is_active(previous) else previous.transition,
        "previous_level": previous.level,
        "updated_at": max(command.at, previous.updated_at),
        "previous_updated_at": previous.updated_at,
    }
    annotations = dict(previous.annotations)
    if command.action is Action.CORROBORATE:
        if not is_active(previous):
            raise CommandRejected(f"{command.warning_id} is not active")
        update["evidence"] = [*previous.evidence, *command.evidence][-10:]
        update["labels"] = {**previous.labels, "corroborated": "true"}
        annotations["corroborated_by"] = command.actor
    elif command.action is Action.RAISE_RISK:
        update.update(_raise_risk(previous, command))
    elif command.action is Action.SET_PHASE:
        assert command.phase is not None
        if not is_active(previous):
            raise CommandRejected(f"{command.warning_id} is not active; its phase is final")
        if command.phase == previous.phase:
            raise CommandRejected(f"{command.warning_id} is already in phase {command.phase}")
        update["phase"] = command.phase
        update["lead_agency"] = lead_agency(ctx.directory, previous.domain, command.phase)
        annotations["phase_reason"] = command.reason
        annotations["phase_set_by"] = command.actor
    else:
        target = _ACTION_STATUS[command.action]
        if STATUS_ORDER.index(target) <= STATUS_ORDER.index(previous.status):
            raise CommandRejected(
                f"{command.warning_id} is {previous.status.value}; "
                f"it cannot go back to {target.value}"
            )
        update["status"] = target
        annotations[f"{target.value}_by"] = command.actor
        if command.reason:
            annotations[f"{target.value}_reason"] = command.reason
    update["annotations"] = annotations
    return previous.model_copy(update=update)


def _raise_risk(previous: Warning, command: Command) -> dict[str, Any]:
    """Article 4 clause 4: the operator raises the risk level by 1 or 2 (at most 5), or
    withdraws a raise (``risk_by`` 0). Recorded on the warning with who and why."""
    assert command.risk_by is not None
    wid = command.warning_id
    if not is_active(previous):
        raise CommandRejected(f"{wid} is not active; its risk level is final")
    if previous.risk_level is None:
        raise CommandRejected(
            f"{wid} has no disaster risk level to raise: the Decision gives none for "
            f"{previous.hazard} at this level (or the station's zone is not configured)"
        )
    current = previous.risk_adjustment
    computed = current.from_level if current else previous.risk_level
    if command.risk_by == 0:
        if current is None:
            raise CommandRejected(f"{wid}: its risk level was not raised; nothing to withdraw")
        return Risk(computed, previous.risk_basis).fields()
    if current is not None and current.by == command.risk_by:
        raise CommandRejected(f"{wid}: its risk level is already raised by {current.by}")
    if risk.adjusted(computed, command.risk_by) == previous.risk_level:
        raise CommandRejected(
            f"{wid} is at risk level {previous.risk_level}, the highest: raising it changes nothing"
        )
    adjustment = RiskAdjustment(
        by=command.risk_by,
        from_level=computed,
        actor=command.actor,
        reason=command.reason,
        at=command.at,
    )
    return Risk(risk.adjusted(computed, command.risk_by), previous.risk_basis, adjustment).fields()


def station_areas(rule: Rule, reading: Reading, directory: Directory) -> list[str]:
    if rule.areas:
        return list(rule.areas)
    station = directory.station(reading.station_id)
    if station is not None:
        return list(station.warns or [station.commune])
    return [reading.area] if reading.area else []


# -- one version, one content ------------------------------------------------------

PUBLISHED = sk.PUBLISHED
#: How many recent versions' digests a warning keeps: more than one batch of the
#: evaluate stage can produce for one warning. An older version reached again
#: counts as a conflict (a new version is never wrong; a repeated one can be).
KEPT_DIGESTS = 32


def digest(w: Warning) -> str:
    """The content of one warning state (every field: a state has no wall-clock time)."""
    return hashlib.sha256(w.to_bytes()).hexdigest()[:32]


@dataclass(frozen=True)
class Conflict:
    """A replay reached ``version``, already published with other content; the new
    content went out as ``published_as``."""

    warning_id: str
    version: int
    published_as: int


def settle_version(store: MutableMapping[str, Any], w: Warning) -> tuple[Warning, Conflict | None]:
    """The state to publish for ``w`` and record as published: ``w`` itself, unless
    its version was already published with another content (a replay after a
    restart read the same events in another order). Then it is the next unused
    version, its transition and previous level told against what receivers last
    got, and the conflict is returned to be counted."""
    key = sk.published_key(w.warning_id)
    record = dict(store.get(key) or {})
    top: int = record.get("top", 0)
    digests: dict[str, str] = dict(record.get("digests", {}))
    conflict: Conflict | None = None
    if w.version <= top and digests.get(str(w.version)) != digest(w):
        was_active, was_level = record.get("active", False), record.get("level", 0)
        if not w.active:
            transition = Transition.CLEARED
        elif not was_active:
            transition = Transition.RAISED
        elif w.level > was_level:
            transition = Transition.ESCALATED
        elif w.level < was_level:
            transition = Transition.DEESCALATED
        else:
            transition = Transition.UPDATED
        settled = w.model_copy(
            update={
                "version": top + 1,
                "transition": transition,
                "previous_level": was_level if was_active else 0,
                "previous_updated_at": datetime.fromisoformat(record["updated_at"])
                if record.get("updated_at")
                else w.previous_updated_at,
            }
        )
        conflict = Conflict(w.warning_id, w.version, settled.version)
        w = settled
    digests[str(w.version)] = digest(w)
    if w.version >= top:
        top = w.version
        record.update(active=w.active, level=w.level, updated_at=w.updated_at.isoformat())
    kept = sorted(digests, key=int)[-KEPT_DIGESTS:]
    record.update(top=top, digests={v: digests[v] for v in kept})
    store[key] = record
    return w, conflict
