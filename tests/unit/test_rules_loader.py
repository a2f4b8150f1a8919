"""Loading rule files: the shipped rules load; mistakes are reported with file, rule and field."""

from __future__ import annotations

import itertools
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from alerting.directory import Directory
from pipeline.rules import loader
from pipeline.rules.loader import RuleError, RuleSet, _matches, load_file, load_rules, rule_files
from pipeline.rules.model import Rule
from tests.conftest import REPO
from tests.unit.conftest import FLOOD_RULE_YAML
from topics.models import Domain, Reading

GOOD = """\
rules:
  - id: {id}
    domain: water
    hazard: river_flood
    selector: {{station: {station}, metric: water_level_m}}
    condition: {{kind: threshold, direction: rising, hysteresis: 0.10}}
    levels:
      - {{level: 1, name: "I", value: 4.30, severity: Moderate}}
      - {{level: 2, name: "II", value: 5.30, severity: Severe}}
"""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _problems(exc: pytest.ExceptionInfo[RuleError]) -> list[str]:
    return exc.value.problems


def test_shipped_rules_directory_loads(repo: Path) -> None:
    rs = load_rules(repo / "rules")
    ids = [r.id for r in rs.rules]
    assert "water.flood.dap-cau" in ids
    assert len(ids) == len(set(ids))


def test_rule_files_skips_test_fixtures(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", GOOD.format(id="a", station="s1"))
    _write(tmp_path / "sub" / "b.yaml", GOOD.format(id="b", station="s2"))
    _write(tmp_path / "c.test.yaml", GOOD.format(id="c", station="s3"))
    _write(tmp_path / "notes.txt", "not a rule")
    assert [p.relative_to(tmp_path).as_posix() for p in rule_files(tmp_path)] == [
        "a.yaml",
        "sub/b.yaml",
    ]
    assert [r.id for r in load_rules(tmp_path).rules] == ["a", "b"]


def test_single_file_path_loads(tmp_path: Path) -> None:
    f = _write(tmp_path / "one.yaml", GOOD.format(id="one", station="s1"))
    assert [r.id for r in load_rules(f).rules] == ["one"]


def test_empty_file_has_no_rules(tmp_path: Path) -> None:
    f = _write(tmp_path / "empty.yaml", "")
    assert load_file(f) == []


def test_typo_in_field_names_file_rule_and_field(tmp_path: Path) -> None:
    text = GOOD.format(id="water.typo", station="s1").replace("hysteresis", "hysteresys")
    f = _write(tmp_path / "typo.yaml", text)
    with pytest.raises(RuleError) as exc:
        load_rules(tmp_path)
    msg = str(exc.value)
    assert str(f) in msg
    assert "water.typo" in msg
    assert "hysteresys" in msg
    assert any(p.startswith(f"{f}: rule water.typo: condition.hysteresys") for p in _problems(exc))


def test_levels_out_of_order_are_rejected(tmp_path: Path) -> None:
    _write(
        tmp_path / "order.yaml",
        """\
        rules:
          - id: water.order
            domain: water
            hazard: river_flood
            selector: {metric: water_level_m}
            condition: {kind: threshold}
            levels:
              - {level: 1, name: "I", value: 5.30, severity: Moderate}
              - {level: 2, name: "II", value: 4.30, severity: Severe}
        """,
    )
    with pytest.raises(RuleError) as exc:
        load_rules(tmp_path)
    assert "water.order" in str(exc.value)
    assert "higher than the one before" in str(exc.value)


def test_level_numbers_out_of_order_are_rejected(tmp_path: Path) -> None:
    _write(
        tmp_path / "numbers.yaml",
        """\
        rules:
          - id: water.numbers
            domain: water
            hazard: river_flood
            selector: {metric: water_level_m}
            condition: {kind: threshold}
            levels:
              - {level: 2, name: "II", value: 4.30, severity: Moderate}
              - {level: 1, name: "I", value: 5.30, severity: Severe}
        """,
    )
    with pytest.raises(RuleError, match="in increasing order"):
        load_rules(tmp_path)


def test_falling_rule_needs_decreasing_values(tmp_path: Path) -> None:
    _write(
        tmp_path / "falling.yaml",
        """\
        rules:
          - id: energy.freq
            domain: energy
            hazard: underfrequency
            selector: {metric: grid_frequency_hz}
            condition: {kind: threshold, direction: falling}
            levels:
              - {level: 1, name: "I", value: 49.0, severity: Moderate}
              - {level: 2, name: "II", value: 49.5, severity: Severe}
        """,
    )
    with pytest.raises(RuleError, match="lower than the one before"):
        load_rules(tmp_path)


def test_duplicate_rule_id_across_files_names_both(tmp_path: Path) -> None:
    first = _write(tmp_path / "a.yaml", GOOD.format(id="water.dup", station="s1"))
    second = _write(tmp_path / "b.yaml", GOOD.format(id="water.dup", station="s2"))
    with pytest.raises(RuleError) as exc:
        load_rules(tmp_path)
    (problem,) = _problems(exc)
    assert str(first) in problem
    assert str(second) in problem
    assert "water.dup" in problem
    assert "already defined" in problem


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    f = _write(tmp_path / "broken.yaml", "rules:\n  - id: x\n    levels: [1, 2\n")
    with pytest.raises(RuleError) as exc:
        load_rules(tmp_path)
    (problem,) = _problems(exc)
    assert problem.startswith(f"{f}: not valid YAML")


def test_missing_path_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(RuleError) as exc:
        load_rules(missing)
    assert _problems(exc) == [f"{missing}: no such file or directory"]


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", "rules: [\n")
    _write(tmp_path / "b.yaml", GOOD.format(id="ok", station="s").replace("domain: water", "x: 1"))
    with pytest.raises(RuleError) as exc:
        load_rules(tmp_path, tmp_path / "missing")
    problems = _problems(exc)
    assert any("a.yaml" in p and "not valid YAML" in p for p in problems)
    assert any("b.yaml: rule ok: domain" in p for p in problems)
    assert any("b.yaml: rule ok: x" in p for p in problems)
    assert any("missing: no such file or directory" in p for p in problems)


def _rule(rule_id: str, metric: str = "water_level_m", domain: str = "water", **sel) -> Rule:
    return Rule.model_validate(
        {
            "id": rule_id,
            "domain": domain,
            "hazard": "h",
            "selector": {"metric": metric, **sel},
            "condition": {"kind": "threshold"},
            "levels": [{"level": 1, "name": "I", "value": 1.0, "severity": "Minor"}],
        }
    )


def test_ruleset_matching_selects_by_domain_metric_station(make_reading) -> None:
    rs = RuleSet(
        (
            _rule("dap-cau", station="dap-cau"),
            _rule("any-station"),
            _rule("other-station", station="luc-nam"),
            _rule("other-metric", metric="rain_24h_mm"),
            _rule("other-domain", domain="environment"),
            _rule("area", area="bn-vu-ninh"),
            _rule("other-area", area="bn-kinh-bac"),
            _rule("source", source="test"),
            _rule("other-source", source="manual"),
        )
    )
    matched = [r.id for r in rs.matching(make_reading(4.0))]
    assert matched == ["dap-cau", "any-station", "area", "source"]

    luc_nam = make_reading(4.0, station_id="luc-nam", area="bn-luc-nam")
    assert [r.id for r in rs.matching(luc_nam)] == ["any-station", "other-station", "source"]


def test_shipped_rules_match_by_station_and_metric(ruleset: RuleSet, make_reading) -> None:
    assert [r.id for r in ruleset.matching(make_reading(4.0))] == [
        "water.flood.dap-cau",
        "water.gap.rivers",
    ]
    luc_nam = {r.id for r in ruleset.matching(make_reading(4.0, station_id="luc-nam"))}
    assert "water.flood.luc-nam" in luc_nam and "water.flood.dap-cau" not in luc_nam
    assert ruleset.matching(make_reading(4.0, metric="no_such_metric")) == []


def _select_by_scan(ruleset: RuleSet, reading: Reading) -> list[str]:
    """What ``matching`` chose before it kept an index: every rule, in written order."""
    return [
        r.id
        for r in ruleset.rules
        if r.condition.kind not in ("report", "compound") and _matches(r, reading)
    ]


def test_the_selection_index_chooses_as_a_scan_of_the_shipped_packs(
    directory: Directory, make_reading: Callable[..., Reading]
) -> None:
    ruleset = load_rules(REPO / "rules")
    metrics = {r.selector.metric for r in ruleset.rules if r.selector.metric} | {"other"}
    stations = [s.id for s in directory.geography.stations] + ["unknown-station"]
    areas = [None, *sorted({r.selector.area for r in ruleset.rules if r.selector.area})]
    sources = [None, *sorted({r.selector.source for r in ruleset.rules if r.selector.source})]
    chosen = 0
    for _ in range(2):  # the second time from the index
        for domain in Domain:
            for metric in sorted(metrics):
                for station in stations:
                    for area, source in itertools.product(areas, sources):
                        reading = make_reading(station_id=station, domain=domain,
                                               metric=metric, area=area, source=source)  # fmt: skip
                        found = [r.id for r in ruleset.matching(reading)]
                        assert found == _select_by_scan(ruleset, reading), reading
                        chosen += bool(found)
    assert chosen > 20  # the shipped packs do watch these stations


def test_the_selection_index_is_bounded_and_its_lists_are_the_callers(
    monkeypatch: pytest.MonkeyPatch, compile_yaml: Callable[..., RuleSet],
    make_reading: Callable[..., Reading],
) -> None:  # fmt: skip
    monkeypatch.setattr(loader, "MAX_SERIES_CACHED", 5)
    ruleset = compile_yaml(FLOOD_RULE_YAML)
    for i in range(50):
        assert [r.id for r in ruleset.matching(make_reading(station_id=f"s{i}"))] == []
        assert len(ruleset._chosen) <= 5
    found = ruleset.matching(make_reading())
    found.clear()  # the caller's own list: the index is untouched
    assert (
        [r.id for r in ruleset.matching(make_reading())]
        == [r.id for r in compile_yaml(FLOOD_RULE_YAML).matching(make_reading())]
        != []
    )
