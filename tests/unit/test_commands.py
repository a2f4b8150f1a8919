"""Operator commands on a warning (lifecycle.apply_command via Engine.on_command)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from pipeline.engine import Engine
from tests.unit.conftest import FLOOD_RULE_YAML, T0
from topics.models import Command, LifecycleStatus, Phase, Reading, Transition, Warning

WID = "water.flood.dap-cau:dap-cau"


def _level(value: float, minutes: float) -> Reading:
    return Reading(
        station_id="dap-cau",
        domain="water",
        metric="water_level_m",
        value=value,
        observed_at=T0 + timedelta(minutes=minutes),
    )


def _cmd(action: str, minutes: float = 15, **kw: Any) -> Command:
    fields: dict[str, Any] = {
        "command_id": f"c-{action}-{minutes}",
        "warning_id": WID,
        "action": action,
        "actor": "op.nguyen",
        "at": T0 + timedelta(minutes=minutes),
    }
    fields.update(kw)
    return Command(**fields)


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine(FLOOD_RULE_YAML)


@pytest.fixture
def store(engine: Engine) -> dict[str, Any]:
    """A raised level-I flood warning at Đáp Cầu."""
    store: dict[str, Any] = {}
    (w,) = engine.on_reading(_level(4.5, 0), store).warnings
    assert w.transition is Transition.RAISED
    return store


def _apply(engine: Engine, store: dict[str, Any], command: Command) -> Warning:
    out = engine.on_command(command, store)
    assert out.errors == []
    (w,) = out.warnings
    return w


def _stored(store: dict[str, Any]) -> Warning:
    return Warning.model_validate(store[f"w|{WID}"])


def test_verify_moves_status_to_verified(engine: Engine, store: dict[str, Any]) -> None:
    w = _apply(engine, store, _cmd("verify", reason="confirmed by phone"))
    assert w.status is LifecycleStatus.VERIFIED
    assert w.version == 2
    assert w.transition is Transition.UPDATED
    assert w.level == 1  # a command does not change the level
    assert w.annotations["verified_by"] == "op.nguyen"
    assert w.annotations["verified_reason"] == "confirmed by phone"
    assert _stored(store).status is LifecycleStatus.VERIFIED


def test_the_whole_lifecycle_in_order(engine: Engine, store: dict[str, Any]) -> None:
    statuses = []
    for i, action in enumerate(["verify", "respond", "recover", "close"]):
        statuses.append(_apply(engine, store, _cmd(action, minutes=15 + i)).status)
    assert statuses == [
        LifecycleStatus.VERIFIED,
        LifecycleStatus.RESPONDING,
        LifecycleStatus.RECOVERING,
        LifecycleStatus.CLOSED,
    ]
    assert _stored(store).version == 5


def test_a_step_may_be_skipped_forward(engine: Engine, store: dict[str, Any]) -> None:
    assert _apply(engine, store, _cmd("respond")).status is LifecycleStatus.RESPONDING


def test_verifying_twice_is_refused(engine: Engine, store: dict[str, Any]) -> None:
    _apply(engine, store, _cmd("verify", minutes=15))
    before = dict(store)
    out = engine.on_command(_cmd("verify", minutes=16), store)
    assert out.warnings == []
    assert out.errors == [f"{WID} is verified; it cannot go back to verified"]
    assert store == before


def test_a_closed_warning_cannot_go_back_to_responding(
    engine: Engine, store: dict[str, Any]
) -> None:
    _apply(engine, store, _cmd("close", minutes=15))
    out = engine.on_command(_cmd("respond", minutes=16), store)
    assert out.warnings == []
    assert out.errors == [f"{WID} is closed; it cannot go back to responding"]
    assert _stored(store).status is LifecycleStatus.CLOSED


def test_set_phase_two_hands_the_lead_to_the_police(engine: Engine, store: dict[str, Any]) -> None:
    assert _stored(store).lead_agency.code == "snnmt"
    w = _apply(
        engine,
        store,
        _cmd("set_phase", phase=2, reason="crowds blocking the dyke road", actor="chu-tich"),
    )
    assert w.phase is Phase.SECURITY
    assert w.lead_agency.code == "ca-tinh"
    assert w.annotations["phase_reason"] == "crowds blocking the dyke road"
    assert w.annotations["phase_set_by"] == "chu-tich"
    assert w.status is LifecycleStatus.NEW


def test_phase_and_lead_survive_a_level_change(engine: Engine, store: dict[str, Any]) -> None:
    _apply(engine, store, _cmd("set_phase", phase=2, reason="public order"))
    (w,) = engine.on_reading(_level(5.5, 20), store).warnings
    assert w.transition is Transition.ESCALATED
    assert w.phase is Phase.SECURITY
    assert w.lead_agency.code == "ca-tinh"


def test_set_phase_three_for_a_flood_goes_to_the_military(
    engine: Engine, store: dict[str, Any]
) -> None:
    w = _apply(engine, store, _cmd("set_phase", phase=3, reason="state of emergency"))
    assert w.lead_agency.code == "bchqs"


def test_set_phase_to_the_current_phase_is_refused(engine: Engine, store: dict[str, Any]) -> None:
    out = engine.on_command(_cmd("set_phase", phase=1, reason="no change"), store)
    assert out.warnings == []
    assert out.errors == [f"{WID} is already in phase 1"]


def test_set_phase_on_a_cleared_warning_is_refused(engine: Engine, store: dict[str, Any]) -> None:
    engine.on_reading(_level(4.0, 10), store)
    out = engine.on_command(_cmd("set_phase", phase=2, reason="too late"), store)
    assert out.errors == [f"{WID} is not active; its phase is final"]


@pytest.mark.parametrize("reason", ["", "   "])
def test_set_phase_without_a_reason_is_rejected_by_the_model(reason: str) -> None:
    with pytest.raises(ValidationError, match="a phase change needs a reason"):
        _cmd("set_phase", phase=2, reason=reason)


def test_set_phase_without_a_phase_is_rejected_by_the_model() -> None:
    with pytest.raises(ValidationError, match="set_phase needs a phase"):
        _cmd("set_phase", reason="why not")


def test_phase_on_another_action_is_rejected_by_the_model() -> None:
    with pytest.raises(ValidationError, match="phase is only for set_phase"):
        _cmd("verify", phase=2)


def test_command_on_an_unknown_warning_is_refused(engine: Engine, store: dict[str, Any]) -> None:
    out = engine.on_command(_cmd("verify", warning_id="water.flood.dap-cau:pha-lai"), store)
    assert out.warnings == []
    assert out.errors == ["no warning water.flood.dap-cau:pha-lai on record"]
    assert "w|water.flood.dap-cau:pha-lai" not in store


def test_corroborating_a_cleared_warning_is_refused(engine: Engine, store: dict[str, Any]) -> None:
    engine.on_reading(_level(4.0, 10), store)
    out = engine.on_command(_cmd("corroborate", reason="report r1"), store)
    assert out.errors == [f"{WID} is not active"]


def test_a_command_older_than_the_warning_keeps_its_updated_at(
    engine: Engine, store: dict[str, Any]
) -> None:
    engine.on_reading(_level(5.5, 30), store)
    w = _apply(engine, store, _cmd("verify", minutes=20))
    assert w.updated_at == T0 + timedelta(minutes=30)


def test_closing_after_the_all_clear_then_a_new_flood_is_a_new_episode(
    engine: Engine, store: dict[str, Any]
) -> None:
    engine.on_reading(_level(4.0, 10), store)
    _apply(engine, store, _cmd("close", minutes=20))
    (w,) = engine.on_reading(_level(4.6, 120), store).warnings
    assert w.transition is Transition.RAISED
    assert w.status is LifecycleStatus.NEW
    assert w.raised_at == T0 + timedelta(minutes=120)


@pytest.mark.parametrize("action", ["verify", "respond", "recover"])
def test_a_status_command_after_the_all_clear_does_not_revive_the_warning(
    engine: Engine, store: dict[str, Any], action: str
) -> None:
    engine.on_reading(_level(4.0, 10), store)  # all-clear
    out = engine.on_command(_cmd(action, minutes=20), store)
    # Refusing the command or keeping the warning cleared would both be fine.
    assert all(not w.active for w in out.warnings)
    (nxt,) = engine.on_reading(_level(4.6, 120), store).warnings
    assert nxt.transition is Transition.RAISED
    assert nxt.status is LifecycleStatus.NEW
    assert nxt.raised_at == T0 + timedelta(minutes=120)


def test_a_reading_taken_before_a_verify_but_arriving_after_it_still_escalates(
    engine: Engine, store: dict[str, Any]
) -> None:
    """The operator verifies at 00:15; the gauge's 00:10 reading (level II) arrives a
    moment later, delayed by its link. The verify moved the warning's time, not the
    river's: the reading is newer than anything the rule decided on, and must count."""
    _apply(engine, store, _cmd("verify", minutes=15))
    (w,) = engine.on_reading(_level(5.5, 10), store).warnings
    assert w.level == 2
    assert w.transition is Transition.ESCALATED
    assert w.status is LifecycleStatus.VERIFIED  # the verify still stands


def test_a_reading_older_than_the_one_that_decided_is_still_ignored(
    engine: Engine, store: dict[str, Any]
) -> None:
    (w,) = engine.on_reading(_level(5.5, 20), store).warnings
    assert w.level == 2
    # A late reading from before the escalation cannot undo it.
    assert engine.on_reading(_level(3.0, 10), store).warnings == []
