"""The warning lifecycle at Đáp Cầu, driven reading by reading through tests.helpers.step."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from alerting.directory import Directory
from pipeline.lifecycle import KEPT_DIGESTS, Context, settle_version, warning_id
from pipeline.rules.model import Rule
from tests.helpers import step
from topics.models import LifecycleStatus, Phase, ScopeTier, Severity, Transition, Warning

FLOOD = [3.6, 4.35, 5.38, 6.42, 6.61, 6.15, 5.10, 4.15]
EXPECTED = [
    None,
    (Transition.RAISED, 1),
    (Transition.ESCALATED, 2),
    (Transition.ESCALATED, 3),
    None,
    (Transition.DEESCALATED, 2),
    (Transition.DEESCALATED, 1),
    (Transition.CLEARED, 0),
]


def _drive(rule, ctx, make_reading, values, start_minutes=0, previous=None):
    """Feed readings 10 minutes apart; return (outputs, last state)."""
    outputs: list[Warning | None] = []
    state = previous
    for i, value in enumerate(values):
        out = step(rule, state, make_reading(value, minutes=start_minutes + 10 * i), ctx)
        outputs.append(out)
        if out is not None:
            state = out
    return outputs, state


@pytest.fixture
def flood(dap_cau: Rule, ctx: Context, make_reading) -> list[Warning | None]:
    outputs, _ = _drive(dap_cau, ctx, make_reading, FLOOD)
    return outputs


def test_flood_transitions(flood) -> None:
    got = [None if w is None else (w.transition, w.level) for w in flood]
    assert got == EXPECTED


def test_same_warning_id_throughout(flood) -> None:
    ids = {w.warning_id for w in flood if w is not None}
    assert ids == {"water.flood.dap-cau:dap-cau"}


def test_warning_id_helper(dap_cau: Rule) -> None:
    assert warning_id(dap_cau, "dap-cau") == "water.flood.dap-cau:dap-cau"


def test_version_grows_by_one_per_state_change(flood) -> None:
    assert [w.version for w in flood if w is not None] == [1, 2, 3, 4, 5, 6]


def test_previous_level_is_recorded(flood) -> None:
    states = [w for w in flood if w is not None]
    assert [(w.previous_level, w.level) for w in states] == [
        (0, 1),
        (1, 2),
        (2, 3),
        (3, 2),
        (2, 1),
        (1, 0),
    ]


def test_raised_at_stays_first_raise_time(flood, t0) -> None:
    states = [w for w in flood if w is not None]
    first_raise = flood[1].updated_at
    assert first_raise == t0 + timedelta(minutes=10)
    assert {w.raised_at for w in states} == {first_raise}
    assert [w.updated_at for w in states] == [flood[i].updated_at for i in (1, 2, 3, 5, 6, 7)]
    assert len({w.updated_at for w in states}) == len(states)


def test_level_names_and_severities(flood) -> None:
    states = [w for w in flood if w is not None]
    assert [w.level_name for w in states] == ["I", "II", "III", "II", "I", ""]
    assert [w.severity for w in states[:3]] == [
        Severity.MODERATE,
        Severity.SEVERE,
        Severity.EXTREME,
    ]


def test_evidence_is_the_deciding_reading(flood) -> None:
    w = flood[2]
    (ev,) = w.evidence
    assert ev.station_id == "dap-cau"
    assert ev.value == 5.38
    assert ev.threshold == 5.30
    assert ev.observed_at == w.updated_at


def test_lead_agency_is_snnmt_for_water_phase_one(flood) -> None:
    for w in flood:
        if w is not None:
            assert w.phase is Phase.INCIDENT
            assert w.lead_agency.code == "snnmt"
            assert w.lead_agency.name_vi == "Sở Nông nghiệp và Môi trường"


def test_areas_are_the_communes_the_station_warns(flood) -> None:
    for w in flood:
        if w is not None:
            assert [a.code for a in w.areas] == ["bn-vu-ninh", "bn-kinh-bac"]
            assert [a.name for a in w.areas] == ["Phường Vũ Ninh", "Phường Kinh Bắc"]
            assert {a.province for a in w.areas} == {"Bắc Ninh"}


def test_scope_tier_is_province_for_two_communes(flood) -> None:
    assert {w.scope_tier for w in flood if w is not None} == {ScopeTier.PROVINCE}


def test_labels_carry_rule_labels_domain_and_hazard(flood) -> None:
    w = flood[1]
    assert w.labels["river"] == "Cầu"
    assert w.labels["domain"] == "water"
    assert w.labels["hazard"] == "river_flood"
    assert w.annotations["summary_vi"] == "Mực nước sông Cầu tại Đáp Cầu"


def test_only_the_clear_is_inactive(flood) -> None:
    states = [w for w in flood if w is not None]
    assert [w.active for w in states] == [True] * 5 + [False]


def test_older_reading_is_ignored(dap_cau: Rule, ctx: Context, make_reading) -> None:
    _, state = _drive(dap_cau, ctx, make_reading, [4.35, 5.38])
    assert state is not None and state.level == 2
    # A late reading from before the escalation would de-escalate if it were applied.
    assert step(dap_cau, state, make_reading(3.0, minutes=5), ctx) is None
    assert step(dap_cau, state, make_reading(7.0, minutes=5), ctx) is None


def test_reading_at_same_instant_is_applied(dap_cau: Rule, ctx: Context, make_reading) -> None:
    state = step(dap_cau, None, make_reading(4.35, minutes=0), ctx)
    assert state is not None
    out = step(dap_cau, state, make_reading(5.4, minutes=0), ctx)
    assert out is not None and out.level == 2


def test_new_rise_after_clear_gets_higher_version_and_new_raise_time(
    dap_cau: Rule, ctx: Context, make_reading
) -> None:
    outputs, cleared = _drive(dap_cau, ctx, make_reading, FLOOD)
    assert cleared is not None and cleared.transition is Transition.CLEARED
    again = step(dap_cau, cleared, make_reading(4.5, minutes=500), ctx)
    assert again is not None
    assert again.transition is Transition.RAISED
    assert again.level == 1
    assert again.previous_level == 0
    assert again.warning_id == cleared.warning_id
    assert again.version == cleared.version + 1
    assert again.raised_at == again.updated_at
    assert again.raised_at > cleared.raised_at
    assert again.status is LifecycleStatus.NEW
    pairs = [(w.warning_id, w.version) for w in [*outputs, again] if w is not None]
    assert len(pairs) == len(set(pairs))


def test_quiet_reading_after_clear_changes_nothing(dap_cau: Rule, ctx: Context, make_reading):
    _, cleared = _drive(dap_cau, ctx, make_reading, FLOOD)
    assert step(dap_cau, cleared, make_reading(4.25, minutes=500), ctx) is None


def test_phase_and_status_carry_over_while_active(
    dap_cau: Rule, ctx: Context, make_reading
) -> None:
    raised = step(dap_cau, None, make_reading(4.35), ctx)
    assert raised is not None
    escalated_by_operator = raised.model_copy(
        update={"phase": Phase.EMERGENCY, "status": LifecycleStatus.RESPONDING}
    )
    nxt = step(dap_cau, escalated_by_operator, make_reading(5.4, minutes=10), ctx)
    assert nxt is not None
    assert nxt.phase is Phase.EMERGENCY
    assert nxt.status is LifecycleStatus.RESPONDING
    assert nxt.lead_agency.code == "bchqs"


def test_exercise_flag_comes_from_context(
    dap_cau: Rule, directory: Directory, make_reading
) -> None:
    drill = Context(directory=directory, exercise=True)
    outputs, _ = _drive(dap_cau, drill, make_reading, FLOOD)
    assert all(w.exercise for w in outputs if w is not None)
    real, _ = _drive(dap_cau, replace(drill, exercise=False), make_reading, FLOOD)
    assert not any(w.exercise for w in real if w is not None)


def test_rule_areas_override_station(dap_cau: Rule, ctx: Context, make_reading) -> None:
    rule = dap_cau.model_copy(update={"areas": ["bn-hap-linh"]})
    w = step(rule, None, make_reading(4.35), ctx)
    assert w is not None
    assert [a.code for a in w.areas] == ["bn-hap-linh"]
    assert w.scope_tier is ScopeTier.COMMUNE


def test_unknown_station_falls_back_to_reading_area(
    dap_cau: Rule, ctx: Context, make_reading
) -> None:
    rule = dap_cau.model_copy(
        update={"selector": dap_cau.selector.model_copy(update={"station": None})}
    )
    w = step(rule, None, make_reading(4.35, station_id="new-gauge", area="bn-luc-nam"), ctx)
    assert w is not None
    assert w.warning_id == "water.flood.dap-cau:new-gauge"
    assert [a.code for a in w.areas] == ["bn-luc-nam"]
    assert w.scope_tier is ScopeTier.COMMUNE


def test_station_warning_across_provinces_is_national(
    dap_cau: Rule, ctx: Context, make_reading
) -> None:
    # Phả Lại (Hải Phòng) also warns a Bắc Ninh ward.
    w = step(dap_cau, None, make_reading(4.35, station_id="pha-lai"), ctx)
    assert w is not None
    assert w.scope_tier is ScopeTier.NATIONAL


# -- one version, one content (settle_version) ----------------------------------------


def test_a_state_republished_as_it_was_keeps_its_version(flood) -> None:
    store: dict[str, object] = {}
    states = [w for w in flood if w is not None]
    for w in states:
        assert settle_version(store, w) == (w, None)
    # A replay that reaches v3 with the same content: the same v3, deduplicated downstream.
    assert settle_version(store, states[2]) == (states[2], None)


def test_a_version_reached_again_with_other_content_goes_out_as_the_next_one(flood) -> None:
    store: dict[str, object] = {}
    states = [w for w in flood if w is not None]
    for w in states[:4]:  # up to v4: de-escalated from III to II
        settle_version(store, w)
    # The replay reaches v3 verified at II instead of escalated to III.
    other = states[1].model_copy(update={"version": 3, "status": LifecycleStatus.VERIFIED})
    settled, conflict = settle_version(store, other)
    assert conflict is not None and (conflict.version, conflict.published_as) == (3, 5)
    # Told against v4 (level II), what receivers last got: an update at the same level.
    assert (settled.version, settled.transition, settled.previous_level) == (
        5,
        Transition.UPDATED,
        2,
    )
    assert settled.previous_updated_at == states[3].updated_at
    # v5 now has this content: the replay carries on from there.
    assert settle_version(store, settled) == (settled, None)


def test_a_version_too_old_to_be_remembered_is_never_reused(flood) -> None:
    store: dict[str, object] = {}
    first = next(w for w in flood if w is not None)
    for v in range(1, KEPT_DIGESTS + 5):
        settle_version(store, first.model_copy(update={"version": v, "evidence": []}))
    settled, conflict = settle_version(store, first)  # v1 as it was: forgotten since
    assert conflict is not None and settled.version == KEPT_DIGESTS + 5
