"""The rules' hot reload without a broker: a rule set applied by an operator takes
effect at once on the next reading; one that does not compile is refused and the
running set stays in force; ``canhbao_rules_active_info`` names the set in force.
A refused control record (poison, a set that does not compile, a silence under another
key) is judged by the same functions the followers apply, and the check stage
dead-letters it with the reason."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from alerting.directory import Directory
from alerting.routes import Silence
from pipeline.engine import Engine
from pipeline.rules.loader import RuleSet
from pipeline.validate import Code
from pipeline.worker.stages.control import (
    ControlCheckStage,
    RulesControl,
    check_control,
    last_in_force,
    read_silence,
)
from pipeline.worker.stages.evaluate import EngineHolder
from pipeline.worker.stages.route import Views
from tests.unit.conftest import FLOOD_RULE_YAML
from tests.unit.stage_kit import Msg, Outputs
from topics.catalogue import CONTROL_RULES, CONTROL_SILENCES
from topics.models import Domain, Reading, RuleSetDoc

NOW = datetime(2025, 10, 7, 5, 0, tzinfo=UTC)
LOWER = FLOOD_RULE_YAML.replace("value: 4.30", "value: 3.50")


def doc(rules: RuleSet) -> bytes:
    return RuleSetDoc(
        version=rules.version, sources=rules.sources, applied_by="Trực ban A"
    ).to_bytes()


def warnings_at(holder: EngineHolder, value: float) -> list[int]:
    reading = Reading(
        station_id="dap-cau", domain=Domain.WATER, metric="water_level_m", value=value,
        observed_at=NOW - timedelta(minutes=1), source="test",
    )  # fmt: skip
    out = holder.engine.on_reading(reading, {}, now=NOW, mode="station")
    return [w.level for w in out.warnings]


def test_an_applied_rule_set_takes_effect_on_the_next_reading(
    compile_yaml: Callable[..., RuleSet], directory: Directory
) -> None:
    out = Outputs()
    old, new = compile_yaml(FLOOD_RULE_YAML), compile_yaml(LOWER)
    holder = EngineHolder(Engine(old, directory))
    control = RulesControl(holder, out.metrics)
    assert out.sample("canhbao_rules_active_info", version=old.version) == 1
    assert warnings_at(holder, 3.8) == []  # under level I (4.30)
    assert control.apply_doc(doc(new)) is True
    assert warnings_at(holder, 3.8) == [1]  # level I is 3.50 now
    assert out.sample("canhbao_rules_active_info", version=new.version) == 1
    assert out.sample("canhbao_rules_active_info", version=old.version) == 0
    assert out.sample("canhbao_rules_reloads_total", outcome="applied") == 1
    assert control.apply_doc(doc(new)) is False  # the same set again changes nothing


def test_a_rule_set_that_does_not_compile_is_refused_and_the_old_one_stays(
    compile_yaml: Callable[..., RuleSet], directory: Directory
) -> None:
    out = Outputs()
    old = compile_yaml(FLOOD_RULE_YAML)
    holder = EngineHolder(Engine(old, directory))
    control = RulesControl(holder, out.metrics)
    broken = RuleSetDoc(
        version="broken", sources={"rules.yaml": "rules:\n  - id: x\n"}, applied_by="Trực ban A"
    ).to_bytes()
    assert control.apply_doc(broken) is False
    assert control.apply_doc(b"not a rule set") is False
    assert holder.engine.rules is old
    assert warnings_at(holder, 5.38) == [2]
    assert out.sample("canhbao_rules_reloads_total", outcome="invalid") == 2
    assert out.sample("canhbao_rules_active_info", version=old.version) == 1


def test_its_status_names_the_rule_set_in_force(
    compile_yaml: Callable[..., RuleSet], directory: Directory
) -> None:
    # canhbao.state.services: the console's health page shows each worker's version.
    old, new = compile_yaml(FLOOD_RULE_YAML), compile_yaml(LOWER)
    control = RulesControl(EngineHolder(Engine(old, directory)), Outputs().metrics)
    assert control.status("w-1").rules_version == old.version
    control.apply_doc(doc(new))
    status = control.status("w-1")
    assert (status.service, status.instance, status.rules_version) == ("worker", "w-1", new.version)


# --- refused control records: judged once, dead-lettered by one owner ---------------------

SILENCE = Silence(
    id="maint-dap-cau", matchers=["station=dap-cau"], starts_at=NOW,
    ends_at=NOW + timedelta(hours=2), created_by="Trực ban A", comment="bảo trì trạm đo",
)  # fmt: skip
POISON = {
    "bad bytes": b"\xff\xfe\x00not json",
    "wrong schema version": b'{"schema_version": 99, "station_id": "dap-cau"}',
    "huge value": b'{"station_id": "' + b"x" * 600_000 + b'"}',
}


@pytest.mark.parametrize("topic", [CONTROL_RULES, CONTROL_SILENCES])
@pytest.mark.parametrize("kind", sorted(POISON))
def test_poison_on_a_control_topic_is_refused_with_a_reason(topic: str, kind: str) -> None:
    refused = check_control(topic, b"active", POISON[kind])
    assert refused is not None
    assert refused.code is (Code.MALFORMED if kind == "bad bytes" else Code.INVALID)
    assert refused.reason.startswith(
        "not a rule set" if topic == CONTROL_RULES else "not a silence"
    )
    assert refused.errors  # each field named, as in every dead letter
    assert len(refused.reason) < 2_000  # the 600 kB value is not repeated in the reason


def test_a_rule_set_that_does_not_compile_is_refused_with_every_problem() -> None:
    broken = RuleSetDoc(
        version="broken", sources={"rules.yaml": "rules:\n  - id: x\n"}, applied_by="Trực ban A"
    ).to_bytes()
    refused = check_control(CONTROL_RULES, b"active", broken)
    assert refused is not None and refused.code is Code.INVALID
    assert "rule set broken (applied by Trực ban A) does not compile" in refused.reason
    assert any("rules.yaml" in e for e in refused.errors)
    tombstone = check_control(CONTROL_RULES, b"active", None)
    assert tombstone is not None and "never deleted" in tombstone.reason


def test_what_the_followers_apply_is_not_refused(compile_yaml: Callable[..., RuleSet]) -> None:
    assert check_control(CONTROL_RULES, b"active", doc(compile_yaml(FLOOD_RULE_YAML))) is None
    set_ = SILENCE.model_dump_json().encode()
    assert check_control(CONTROL_SILENCES, b"maint-dap-cau", set_) is None
    assert check_control(CONTROL_SILENCES, b"maint-dap-cau", None) is None  # lifted
    assert read_silence(b"maint-dap-cau", set_) == SILENCE


def test_a_silence_keyed_by_another_id_is_refused_and_not_applied() -> None:
    # Its lift (a tombstone of its id) would leave the record under the other key in
    # the compacted topic: a restarted worker would silence again.
    raw = SILENCE.model_dump_json().encode()
    refused = check_control(CONTROL_SILENCES, b"other", raw)
    assert refused is not None and refused.code is Code.KEY_MISMATCH
    views = Views()
    views.apply(CONTROL_SILENCES, b"other", raw)
    views.apply(CONTROL_SILENCES, b"maint-dap-cau", POISON["bad bytes"])
    assert views.silences == {}  # refused, and the silences in force are kept
    views.apply(CONTROL_SILENCES, b"maint-dap-cau", raw)
    views.apply(CONTROL_SILENCES, b"maint-dap-cau", POISON["huge value"])
    assert views.silences == {"maint-dap-cau": SILENCE}


async def test_the_check_stage_dead_letters_what_the_followers_refuse_once_counted() -> None:
    out = Outputs()
    stage = ControlCheckStage(out.dead)
    good = SILENCE.model_dump_json().encode()
    await stage.handle(Msg(CONTROL_SILENCES, 0, 4, b"maint-dap-cau"), good)
    await stage.handle(Msg(CONTROL_SILENCES, 0, 5, b"maint-dap-cau"), None)
    await stage.handle(Msg(CONTROL_SILENCES, 0, 6, b"poison"), POISON["bad bytes"])
    await stage.handle(Msg(CONTROL_RULES, 0, 9, b"active"), POISON["wrong schema version"])
    letters = out.letters()
    assert [(d.source_topic, d.offset, d.stage) for d in letters] == [
        (CONTROL_SILENCES, 6, "control"),
        (CONTROL_RULES, 9, "control"),
    ]
    assert letters[0].original == POISON["bad bytes"] and letters[0].key == b"poison"
    assert letters[0].reason == "not a silence: not valid JSON"
    assert "schema_version" in letters[1].reason
    for topic in (CONTROL_RULES, CONTROL_SILENCES):
        labels = {"source_topic": topic, "stage": "control"}
        assert out.sample("canhbao_messages_rejected_total", **labels) == 1


def test_a_starting_worker_takes_the_last_set_that_compiles(
    compile_yaml: Callable[..., RuleSet],
) -> None:
    # A refused record last on the topic (poison, a set that does not compile) must
    # neither stop a worker from starting nor send it back to the rule files.
    old, new = compile_yaml(FLOOD_RULE_YAML), compile_yaml(LOWER)
    broken = RuleSetDoc(
        version="broken", sources={"rules.yaml": "rules:\n  - id: x\n"}, applied_by="Trực ban A"
    ).to_bytes()
    values = [doc(old), doc(new), broken, *POISON.values(), None]
    found = last_in_force(values)
    assert found is not None
    assert (found[0].version, found[1].version) == (new.version, new.version)
    assert last_in_force([broken, POISON["bad bytes"]]) is None
    assert last_in_force([]) is None
