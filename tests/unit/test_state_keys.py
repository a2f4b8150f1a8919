"""The engine's state keys keep their form (a restarted worker reads its compacted
changelog by them) and read back to their parts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerting.directory import Directory
from pipeline import state as sk
from pipeline.engine import Engine
from pipeline.rules.loader import RuleSet

RULE = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True)
SUBJECT = st.text(min_size=1, max_size=30)


def test_the_forms_a_stored_changelog_already_holds() -> None:
    assert sk.rule_warning_key("water.dap_cau", "dap-cau") == "w|water.dap_cau:dap-cau"
    assert sk.evaluator_key("water.dap_cau", "dap-cau") == "e|water.dap_cau|dap-cau"
    series = sk.quality_series("dap-cau", "water_level", None)
    assert sk.quality_key(series, "sensor") == "q|dap-cau|water_level||sensor"
    assert sk.quality_key(sk.quality_series("s", "m", "a"), None) == "q|s|m|a|"
    assert sk.heard_key("dap-cau") == "l|dap-cau"
    assert sk.area_key("bn-luc-nam") == "x|bn-luc-nam"
    assert sk.command_key("cmd-1") == "c|cmd-1"
    assert sk.published_key("r:s") == "p|r:s"


@given(RULE, SUBJECT)
def test_keys_read_back_to_their_parts(rule: str, subject: str) -> None:
    ekey = sk.evaluator_key(rule, subject)
    assert sk.kind_of(ekey) is sk.Kind.EVALUATOR
    assert sk.evaluator_of(ekey) == (rule, subject)
    assert ekey.startswith(sk.evaluators_prefix(rule))
    wkey = sk.rule_warning_key(rule, subject)
    assert sk.kind_of(wkey) is sk.Kind.WARNING
    assert sk.warning_of(wkey) == f"{rule}:{subject}"
    assert wkey.startswith(sk.rule_warnings_prefix(rule))
    assert sk.heard_station(sk.heard_key(subject)) == subject


def test_a_key_of_another_kind_is_refused() -> None:
    assert sk.kind_of("z|x") is None
    assert sk.kind_of("nokey") is None
    says = r"expected a state key e\|\.\.\. \(evaluator\), got 'w\|r:s'"
    with pytest.raises(sk.InvalidKey, match=says):
        sk.evaluator_of("w|r:s")
    with pytest.raises(sk.InvalidKey, match="heard"):
        sk.heard_station("x|a")


def test_a_tick_clears_a_warning_of_a_removed_rule_found_by_its_key(directory: Directory) -> None:
    """The tick reads the kind of each key it owns: a stored warning of a rule no
    longer in the set is found and cleared."""
    from datetime import UTC, datetime

    from topics.models import Agency, Domain, Severity, Transition, Warning

    at = datetime(2026, 9, 1, 8, tzinfo=UTC)
    w = Warning(warning_id="gone.rule:dap-cau", version=1, rule_id="gone.rule",
                domain=Domain.WATER, hazard="flood", subject="dap-cau",
                transition=Transition.RAISED, level=1, level_name="I", severity=Severity.MINOR,
                scope_tier="commune", lead_agency=Agency(code="a", name_vi="a", name_en="a"),
                raised_at=at, updated_at=at)  # fmt: skip
    store = {sk.warning_key(w.warning_id): w.model_dump(mode="json")}
    out = Engine(RuleSet(()), directory).on_tick(at, store)
    assert [x.transition for x in out.warnings] == [Transition.CLEARED]
