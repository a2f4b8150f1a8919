"""Rule unit tests written in YAML (pipeline.ruletest): the ``values`` notation and
the failures ``run_case`` reports."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerting.directory import Directory
from pipeline.rules.loader import RuleSet
from pipeline.ruletest import Case, expand_values, run_case, run_file
from tests.unit.conftest import FLOOD_RULE_YAML

FLOOD = "water.flood.dap-cau"

REPORT_YAML = """\
  - id: water.report.flooding
    domain: water
    hazard: reported_flooding
    group_by: area
    condition: {kind: report, categories: [flooding]}
    levels:
      - {level: 1, name: reported, severity: Moderate}
      - {level: 2, name: serious, severity: Severe}
"""


# --- expand_values ---


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ("1 2 _ 3", [1.0, 2.0, None, 3.0]),
        ("1+1x3", [1.0, 2.0, 3.0, 4.0]),
        ("5-1x2", [5.0, 4.0, 3.0]),
        ("_x2", [None, None]),
        ("4.2+0.1x3", [4.2, 4.3, 4.4, 4.5]),
        ("-1+1x2", [-1.0, 0.0, 1.0]),
        ("-1-0.5x2", [-1.0, -1.5, -2.0]),
        ("7x0", None),  # not an expansion: rejected below
        ("3.9 4.35+0x2 _x1 -2", [3.9, 4.35, 4.35, 4.35, None, -2.0]),
        ("", []),
    ],
)
def test_expand_values(values: str, expected: list[float | None] | None) -> None:
    if expected is None:
        with pytest.raises(ValueError):
            expand_values(values)
        return
    assert expand_values(values) == expected


def test_expand_values_accepts_a_yaml_list() -> None:
    assert expand_values([1, "_", 2.5, "3+1x1"]) == [1.0, None, 2.5, 3.0, 4.0]


def test_expansions_do_not_accumulate_float_error() -> None:
    got = expand_values("0.1+0.1x9")
    assert got[-1] == 1.0
    assert got == [round(0.1 * i, 10) for i in range(1, 11)]


# --- run_case ---


def _case(**fields: Any) -> Case:
    data: dict[str, Any] = {
        "name": "Đáp Cầu rises through I and II, then recedes",
        "start": "2025-10-07T00:00:00+07:00",
        "interval": "1h",
        "series": [
            {
                "station": "dap-cau",
                "domain": "water",
                "metric": "water_level_m",
                "values": "3.9 4.35 5.4 4.1",
            }
        ],
        "expect": [
            {"at": "1h", "rule": FLOOD, "transition": "raised", "level": 1},
            {"at": "2h", "rule": FLOOD, "transition": "escalated", "level": 2},
            {"at": "3h", "rule": FLOOD, "transition": "cleared", "level": 0},
        ],
    }
    data.update(fields)
    return Case.model_validate(data)


@pytest.fixture
def flood_rules(compile_yaml: Callable[..., RuleSet]) -> RuleSet:
    return compile_yaml(FLOOD_RULE_YAML)


def _expect(i: int, **change: Any) -> list[dict[str, Any]]:
    expect = [dict(e) for e in _case().model_dump(mode="json")["expect"]]
    expect[i].update(change)
    return [{k: v for k, v in e.items() if v is not None} for e in expect]


def test_matching_expectations_pass(flood_rules: RuleSet, directory: Directory) -> None:
    assert run_case(_case(), flood_rules, directory) == []


def test_wrong_level_is_described(flood_rules: RuleSet, directory: Directory) -> None:
    failures = run_case(_case(expect=_expect(1, level=3)), flood_rules, directory)
    assert failures == [f"expected #2 {FLOOD} escalated level 3 at +2:00:00, got level 2"]


def test_wrong_transition_is_described(flood_rules: RuleSet, directory: Directory) -> None:
    failures = run_case(_case(expect=_expect(2, transition="deescalated")), flood_rules, directory)
    assert failures == [
        f"expected #3 {FLOOD} deescalated level 0 at +3:00:00, got transition cleared"
    ]


def test_wrong_time_is_described(flood_rules: RuleSet, directory: Directory) -> None:
    failures = run_case(_case(expect=_expect(0, at="90m")), flood_rules, directory)
    assert failures == [f"expected #1 {FLOOD} raised level 1 at +1:30:00, got at +1:00:00"]


def test_an_absolute_time_is_accepted(flood_rules: RuleSet, directory: Directory) -> None:
    case = _case(expect=_expect(0, at="2025-10-06T18:00:00Z"))
    assert run_case(case, flood_rules, directory) == []


def test_missing_and_unexpected_transitions(flood_rules: RuleSet, directory: Directory) -> None:
    short = _case(expect=_expect(0)[:2])
    assert run_case(short, flood_rules, directory) == [
        f"unexpected {FLOOD} dap-cau cleared level 0 at +3:00:00"
    ]
    long = _case(expect=[*_expect(0), {"rule": FLOOD, "transition": "raised"}])
    assert run_case(long, flood_rules, directory) == [
        f"expected #4 {FLOOD} raised, got nothing more"
    ]


def test_absent_catches_a_rule_that_fired(flood_rules: RuleSet, directory: Directory) -> None:
    case = _case(expect=[], absent=[FLOOD])
    assert run_case(case, flood_rules, directory) == [
        f"{FLOOD} must not fire, but raised level 1 at +1:00:00"
    ]


def test_absent_passes_when_the_rule_stays_quiet(
    compile_yaml: Callable[..., RuleSet], directory: Directory
) -> None:
    rules = compile_yaml(
        "quality:\n  metrics:\n    water_level_m: {max: 30}\nrules:\n" + FLOOD_RULE_YAML
    )
    assert run_case(_case(absent=["quality.out_of_range"]), rules, directory) == []
    spiky = _case(
        series=[
            {
                "station": "dap-cau",
                "domain": "water",
                "metric": "water_level_m",
                "values": "3.9 99 3.9",
            }
        ],
        expect=[],
        absent=["quality.out_of_range"],
    )
    assert run_case(spiky, rules, directory) == [
        "quality.out_of_range must not fire, but raised level 1 at +1:00:00"
    ]


def test_missing_samples_and_the_end_of_the_clock(
    compile_yaml: Callable[..., RuleSet], directory: Directory
) -> None:
    gap = """\
  - id: water.gap
    domain: water
    hazard: data_gap
    selector: {metric: water_level_m}
    condition: {kind: staleness, silent_for: 90m}
    levels: [{level: 1, name: gap, severity: Minor}]
"""
    rules = compile_yaml(FLOOD_RULE_YAML + gap)
    case = _case(
        series=[
            {
                "station": "dap-cau",
                "domain": "water",
                "metric": "water_level_m",
                "values": "4 _x2 4",
            }
        ],
        expect=[
            {"at": "5401s", "rule": "water.gap", "transition": "raised"},
            {"at": "3h", "rule": "water.gap", "transition": "cleared"},
            {"at": "16201s", "rule": "water.gap", "transition": "raised"},
        ],
        end="6h",
    )
    assert run_case(case, rules, directory) == []


def test_commands_in_a_case_and_refusals(flood_rules: RuleSet, directory: Directory) -> None:
    wid = f"{FLOOD}:dap-cau"
    case = _case(
        commands=[
            {"at": "90m", "warning_id": wid, "action": "verify"},
            {"at": "100m", "warning_id": wid, "action": "verify"},
        ],
        expect=[
            {"at": "1h", "rule": FLOOD, "transition": "raised", "status": "new"},
            {"at": "90m", "rule": FLOOD, "transition": "updated", "status": "verified"},
            {"at": "2h", "rule": FLOOD, "transition": "escalated", "status": "verified"},
            {"at": "3h", "rule": FLOOD, "transition": "cleared"},
        ],
    )
    assert run_case(case, flood_rules, directory) == [
        f"command refused: {wid} is verified; it cannot go back to verified"
    ]


def test_reports_in_a_case(compile_yaml: Callable[..., RuleSet], directory: Directory) -> None:
    rules = compile_yaml(FLOOD_RULE_YAML + REPORT_YAML)
    case = _case(
        series=[],
        reports=[
            {
                "at": "30m",
                "report_id": "rp-1",
                "domain": "water",
                "category": "flooding",
                "severity": "Severe",
                "areas": ["bn-hap-linh"],
            }
        ],
        expect=[
            {
                "at": "30m",
                "rule": "water.report.flooding",
                "subject": "bn-hap-linh",
                "transition": "raised",
                "level": 2,
                "scope": "commune",
                "areas": ["bn-hap-linh"],
                "lead": "snnmt",
            }
        ],
    )
    assert run_case(case, rules, directory) == []


def test_a_second_report_at_the_same_level_can_be_expected(
    compile_yaml: Callable[..., RuleSet], directory: Directory
) -> None:
    rules = compile_yaml(FLOOD_RULE_YAML + REPORT_YAML)
    report = {
        "domain": "water",
        "category": "flooding",
        "severity": "Severe",
        "areas": ["bn-hap-linh"],
    }
    case = _case(
        series=[],
        reports=[
            {"at": "30m", "report_id": "rp-1", **report},
            {"at": "50m", "report_id": "rp-2", **report},
        ],
        expect=[
            {"at": "30m", "rule": "water.report.flooding", "transition": "raised", "level": 2},
            {"at": "50m", "rule": "water.report.flooding", "transition": "updated", "level": 2},
        ],
    )
    assert run_case(case, rules, directory) == []


# --- test files ---


def test_run_file_with_its_own_rule_file(tmp_path: Path, directory: Directory) -> None:
    (tmp_path / "water.yaml").write_text("rules:\n" + FLOOD_RULE_YAML, encoding="utf-8")
    spec = {
        "rule_files": ["water.yaml"],
        "tests": [
            _case().model_dump(mode="json", exclude_none=True, exclude_defaults=True),
            _case(name="wrong", expect=_expect(1, level=3)).model_dump(
                mode="json", exclude_none=True, exclude_defaults=True
            ),
        ],
    }
    path = tmp_path / "water.test.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    result = run_file(path, directory)
    assert (result.cases, result.failed) == (2, 1)
    assert result.failures == [
        f"{path}: wrong: expected #2 {FLOOD} escalated level 3 at +2:00:00, got level 2"
    ]


def test_run_file_reports_an_invalid_test_file(tmp_path: Path, directory: Directory) -> None:
    path = tmp_path / "bad.test.yaml"
    path.write_text("tests: []\n", encoding="utf-8")
    result = run_file(path, directory)
    assert (result.cases, result.failed) == (0, 0)
    assert len(result.failures) == 1 and result.failures[0].startswith(f"{path}: tests:")
