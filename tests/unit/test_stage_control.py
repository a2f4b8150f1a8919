"""The rules' hot reload without a broker: a rule set applied by an operator takes
effect at once on the next reading; one that does not compile is refused and the
running set stays in force; ``canhbao_rules_active_info`` names the set in force."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from alerting.directory import Directory
from pipeline.engine import Engine
from pipeline.rules.loader import RuleSet
from pipeline.worker.stages.control import RulesControl
from pipeline.worker.stages.evaluate import EngineHolder
from tests.unit.conftest import FLOOD_RULE_YAML
from tests.unit.stage_kit import Outputs
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
