"""Replays in event-time order (pipeline.replay), backtests over history
(pipeline.backtest) and the HTML backtest report (canhbao.htmlreport)."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alerting.directory import Directory
from canhbao.htmlreport import RuleSetRun, nice_ticks, render, unit_of
from pipeline.backtest import (
    BacktestResult,
    compare,
    load_history,
    run_backtest,
    summarise,
    transitions_json,
)
from pipeline.engine import Engine
from pipeline.replay import Replay
from pipeline.rules.loader import RuleSet
from tests.unit.conftest import FLOOD_RULE_YAML, T0
from topics.models import Domain, Reading, Report, Transition

FLOOD = "water.flood.dap-cau"

GAP_YAML = """\
  - id: water.gap
    domain: water
    hazard: data_gap
    selector: {metric: water_level_m}
    condition: {kind: staleness, silent_for: 30m}
    levels: [{level: 1, name: gap, severity: Minor}]
"""

REPORT_YAML = """\
  - id: water.report.flooding
    domain: water
    hazard: reported_flooding
    group_by: area
    condition: {kind: report, categories: [flooding], expires_after: 24h}
    levels:
      - {level: 1, name: reported, severity: Moderate}
      - {level: 2, name: serious, severity: Severe}
"""

SOIL_AND_LANDSLIDE_YAML = """\
  - id: geology.soil.dap-cau
    domain: geology
    hazard: soil_saturation
    selector: {station: dap-cau, metric: soil_moisture_pct}
    condition: {kind: threshold}
    levels: [{level: 1, name: wet, value: 80, severity: Moderate}]
    notify: false
  - id: geology.landslide
    domain: geology
    hazard: landslide
    group_by: area
    condition:
      kind: compound
      all_of: [{rule: water.flood.dap-cau}, {hazard: soil_saturation}]
    levels: [{level: 1, name: risk, severity: Severe}]
"""

# The flood rule with level I lowered to 4.0 m (a candidate rule set).
LOWER_FLOOD_YAML = FLOOD_RULE_YAML.replace("value: 4.30", "value: 4.00")

NAMED_FLOOD_YAML = (
    FLOOD_RULE_YAML.replace('name: "I"', 'name: "BĐ-I"')
    .replace('name: "II"', 'name: "BĐ-II"')
    .replace('name: "III"', 'name: "BĐ-III"')
)

Compile = Callable[..., RuleSet]


def _at(hours: float = 0, minutes: float = 0, seconds: float = 0) -> datetime:
    return T0 + timedelta(hours=hours, minutes=minutes, seconds=seconds)


def _level(value: float, at: datetime, **kw: Any) -> Reading:
    fields: dict[str, Any] = {
        "station_id": "dap-cau",
        "domain": "water",
        "metric": "water_level_m",
        "value": value,
        "observed_at": at,
    }
    fields.update(kw)
    return Reading(**fields)


def _hourly(values: list[tuple[float, float]]) -> list[Reading]:
    return [_level(v, _at(hours=h)) for h, v in values]


def _transitions(replay: Replay, rule: str) -> list[tuple[str, int, datetime]]:
    return [
        (w.transition.value, w.level, w.updated_at) for w in replay.warnings if w.rule_id == rule
    ]


# --- replay ---


def test_replay_raises_a_data_gap_when_it_becomes_due_not_at_the_next_reading(
    compile_yaml: Compile, directory: Directory
) -> None:
    replay = Replay(Engine(compile_yaml(FLOOD_RULE_YAML + GAP_YAML), directory))
    for minutes in (0, 10, 120):
        replay.reading(_level(4.0, _at(minutes=minutes)))
    assert _transitions(replay, "water.gap") == [
        ("raised", 1, _at(minutes=40, seconds=1)),  # last seen 00:10 + 30 min + 1 s
        ("cleared", 0, _at(minutes=120)),
    ]


def test_replay_finish_lets_the_clock_run_past_the_last_reading(
    compile_yaml: Compile, directory: Directory
) -> None:
    replay = Replay(Engine(compile_yaml(FLOOD_RULE_YAML + GAP_YAML), directory))
    replay.reading(_level(4.0, _at()))
    replay.finish(_at(minutes=29))
    assert replay.warnings == []
    replay.finish(_at(hours=3))
    assert _transitions(replay, "water.gap") == [("raised", 1, _at(minutes=30, seconds=1))]


def test_replay_regular_readings_never_raise_a_gap(
    compile_yaml: Compile, directory: Directory
) -> None:
    replay = Replay(Engine(compile_yaml(FLOOD_RULE_YAML + GAP_YAML), directory))
    for i in range(12):
        replay.reading(_level(4.0, _at(minutes=20 * i)))
    assert replay.warnings == []


def test_replay_expires_a_report_warning(compile_yaml: Compile, directory: Directory) -> None:
    replay = Replay(Engine(compile_yaml(FLOOD_RULE_YAML + REPORT_YAML), directory))
    replay.report(
        Report(
            report_id="rp-1",
            domain=Domain.WATER,
            category="flooding",
            severity="Severe",
            areas=["bn-hap-linh"],
            observed_at=_at(),
            reporter="citizen-app",
        )
    )
    replay.finish(_at(hours=30))
    assert _transitions(replay, "water.report.flooding") == [
        ("raised", 2, _at()),
        ("cleared", 0, _at(hours=24, seconds=1)),
    ]


def test_replay_feeds_warnings_to_compound_rules_in_every_commune(
    compile_yaml: Compile, directory: Directory
) -> None:
    rules = compile_yaml(FLOOD_RULE_YAML + SOIL_AND_LANDSLIDE_YAML)
    replay = Replay(Engine(rules, directory))
    replay.reading(_level(4.5, _at()))
    replay.reading(_level(85, _at(minutes=5), domain="geology", metric="soil_moisture_pct"))
    replay.reading(_level(4.0, _at(minutes=30)))
    landslide = [w for w in replay.warnings if w.rule_id == "geology.landslide"]
    assert [(w.subject, w.transition.value) for w in landslide] == [
        ("bn-vu-ninh", "raised"),
        ("bn-kinh-bac", "raised"),
        ("bn-vu-ninh", "cleared"),
        ("bn-kinh-bac", "cleared"),
    ]


def test_replay_applies_corroboration_commands(compile_yaml: Compile, directory: Directory) -> None:
    replay = Replay(Engine(compile_yaml(FLOOD_RULE_YAML + REPORT_YAML), directory))
    replay.reading(_level(4.5, _at()))
    replay.report(
        Report(
            report_id="rp-1",
            domain=Domain.WATER,
            category="flooding",
            severity="Moderate",
            areas=["bn-kinh-bac"],
            observed_at=_at(minutes=10),
            reporter="citizen-app",
        )
    )
    last = replay.warnings[-1]
    assert last.warning_id == f"{FLOOD}:dap-cau"
    assert last.labels["corroborated"] == "true"
    assert not [w for w in replay.warnings if w.rule_id == "water.report.flooding"]


# --- loading history ---


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_load_history_csv(tmp_path: Path, compile_yaml: Compile) -> None:
    path = _write(
        tmp_path,
        "history.csv",
        "observed_at,station_id,metric,value\n"
        "2025-10-07T00:00:00+07:00,dap-cau,water_level_m,4.0\n"
        "2025-10-06T18:00:00Z,dap-cau,water_level_m,4.5\n",
    )
    result = load_history(path, compile_yaml(FLOOD_RULE_YAML))
    assert result.errors == [] and result.skipped == 0
    first, second = result.readings
    assert first.observed_at == T0
    assert first.observed_at.utcoffset() == timedelta(hours=7)
    assert second.observed_at == _at(hours=1)
    assert first.domain is Domain.WATER  # inferred: a water rule watches water_level_m
    assert (first.station_id, first.metric, first.value) == ("dap-cau", "water_level_m", 4.0)


def test_load_history_reports_bad_lines_and_keeps_the_rest(
    tmp_path: Path, compile_yaml: Compile
) -> None:
    path = _write(
        tmp_path,
        "history.csv",
        "observed_at,station_id,metric,value\n"
        "2025-10-07T00:00:00+07:00,dap-cau,water_level_m,4.0\n"
        "2025-10-07T01:00:00+07:00,dap-cau,water_level_m,abc\n"
        "2025-10-07T02:00:00+07:00,dap-cau,water_level_m,4.5\n"
        "2025-10-07T03:00:00+07:00,dap-cau,pm25,30\n"
        "2025-10-07T04:00:00,dap-cau,water_level_m,4.6\n"
        "2025-10-07T05:00:00+07:00,dap-cau,water_level_m,4.7\n",
    )
    result = load_history(path, compile_yaml(FLOOD_RULE_YAML))
    assert [r.value for r in result.readings] == [4.0, 4.5, 4.7]
    assert result.skipped == 3
    assert [e.split(": ", 1)[0] for e in result.errors] == [
        f"{path}:3",
        f"{path}:5",
        f"{path}:6",
    ]
    assert "value" in result.errors[0]
    assert "pm25" in result.errors[1] and "domain" in result.errors[1]
    assert "observed_at" in result.errors[2]


def test_load_history_domain_column_wins(tmp_path: Path, compile_yaml: Compile) -> None:
    path = _write(
        tmp_path,
        "history.csv",
        "observed_at,station_id,metric,value,domain,area\n"
        "2025-10-07T00:00:00+07:00,aq-1,pm25,30,environment,bn-vu-ninh\n",
    )
    (reading,) = load_history(path, compile_yaml(FLOOD_RULE_YAML)).readings
    assert reading.domain is Domain.ENVIRONMENT
    assert reading.area == "bn-vu-ninh"


def test_load_history_missing_columns_is_an_error(tmp_path: Path, compile_yaml: Compile) -> None:
    path = _write(
        tmp_path,
        "history.csv",
        "observed_at,station_id,metric\n2025-10-07T00:00:00+07:00,dap-cau,water_level_m\n",
    )
    with pytest.raises(ValueError, match=r"missing \['value'\]"):
        load_history(path, compile_yaml(FLOOD_RULE_YAML))


def test_load_history_jsonl(tmp_path: Path, compile_yaml: Compile) -> None:
    good = [_level(4.0, _at()), _level(4.5, _at(hours=1))]
    lines = [good[0].model_dump_json(), "", '{"station_id": "dap-cau"}', good[1].model_dump_json()]
    path = _write(tmp_path, "history.jsonl", "\n".join(lines) + "\n")
    result = load_history(path, compile_yaml(FLOOD_RULE_YAML))
    assert result.readings == good
    assert result.skipped == 1
    (error,) = result.errors
    assert error.startswith(f"{path}:3: ")
    assert "observed_at" in error


# --- backtests ---

EPISODES = [
    (0, 4.0),
    (1, 4.5),  # raised I
    (2, 5.5),  # escalated II
    (3, 5.5),
    (4, 4.5),  # de-escalated I
    (5, 4.0),  # cleared
    (5.5, 4.5),  # raised again 30 min later: a flap
    (6, 4.0),  # cleared
    (8, 4.5),  # raised two hours later: not a flap
    (9, 4.5),
]


@pytest.fixture
def episodes(compile_yaml: Compile, directory: Directory) -> BacktestResult:
    return run_backtest(_hourly(EPISODES), compile_yaml(FLOOD_RULE_YAML), directory)


def test_backtest_summary(episodes: BacktestResult) -> None:
    s = episodes.summaries[FLOOD]
    assert s.raised == 3
    assert s.flaps == 1
    assert s.time_at_level == pytest.approx({"I": 1 + 1 + 0.5 + 1, "II": 2})
    assert episodes.start == _at() and episodes.end == _at(hours=9)
    assert [(t["transition"], t["level"]) for t in s.transitions] == [
        ("raised", 1),
        ("escalated", 2),
        ("deescalated", 1),
        ("cleared", 0),
        ("raised", 1),
        ("cleared", 0),
        ("raised", 1),
    ]


def test_backtest_reading_order_does_not_matter(
    compile_yaml: Compile, directory: Directory, episodes: BacktestResult
) -> None:
    shuffled = list(reversed(_hourly(EPISODES)))
    again = run_backtest(shuffled, compile_yaml(FLOOD_RULE_YAML), directory)
    assert again.transitions() == episodes.transitions()


def test_backtest_counts_quality_rejections(compile_yaml: Compile, directory: Directory) -> None:
    rules = compile_yaml(
        "quality:\n  metrics:\n    water_level_m: {max: 30}\nrules:\n" + FLOOD_RULE_YAML
    )
    result = run_backtest(_hourly([(0, 4.0), (1, 99.0), (2, 4.1)]), rules, directory)
    assert {k.value: v for k, v in result.rejected.items()} == {"out_of_range": 1}
    assert FLOOD not in result.summaries
    assert result.summaries["quality.out_of_range"].raised == 1


def test_summarise_a_warning_still_active_at_the_end(episodes: BacktestResult) -> None:
    later = summarise(episodes.warnings, _at(hours=12))
    assert later[FLOOD].time_at_level["I"] == pytest.approx(3.5 + 3)


def test_compare_two_rule_sets(compile_yaml: Compile, directory: Directory) -> None:
    readings = _hourly([(0, 3.5), (1, 3.8), (2, 4.1), (3, 4.4), (4, 4.15), (5, 4.35)])
    shipped = run_backtest(readings, compile_yaml(FLOOD_RULE_YAML), directory)
    candidate = run_backtest(readings, compile_yaml(LOWER_FLOOD_YAML), directory)
    (row,) = compare(shipped, candidate)
    assert row["rule"] == FLOOD
    assert row["raised"] == [2, 1]  # 4.3 m flaps around 4.15-4.4; 4.0 m holds
    assert row["flaps"] == [1, 0]
    assert row["first_raise"] == [_at(hours=3).isoformat(), _at(hours=2).isoformat()]
    assert row["first_raise_shift_minutes"] == -60.0
    assert row["hours_at_level"] == [{"I": 1.0}, {"I": 3.0}]


def test_compare_a_rule_only_one_set_raises(compile_yaml: Compile, directory: Directory) -> None:
    readings = _hourly([(0, 3.5), (1, 4.1)])
    shipped = run_backtest(readings, compile_yaml(FLOOD_RULE_YAML), directory)
    candidate = run_backtest(readings, compile_yaml(LOWER_FLOOD_YAML), directory)
    (row,) = compare(shipped, candidate)
    assert row["raised"] == [0, 1]
    assert row["first_raise_shift_minutes"] is None


def test_transitions_json_has_exactly_the_documented_keys(episodes: BacktestResult) -> None:
    lines = list(transitions_json(episodes))
    assert len(lines) == 7
    first = json.loads(lines[0])
    assert first == {
        "rule": FLOOD,
        "subject": "dap-cau",
        "level": 1,
        "transition": "raised",
        "at": _at(hours=1).isoformat(),
        "risk_level": 1,  # Đáp Cầu (zone 3, sample) at alarm level I: Decision 18/2021 Art. 45
    }
    keys = {"rule", "subject", "level", "transition", "at", "risk_level"}
    assert all(set(json.loads(line)) == keys for line in lines)
    labelled = [json.loads(line) for line in transitions_json(episodes, label="candidate")]
    assert all(set(o) == {*keys, "set"} for o in labelled)
    assert {o["set"] for o in labelled} == {"candidate"}


def test_transitions_json_keeps_vietnamese_text(
    compile_yaml: Compile, directory: Directory
) -> None:
    rules = compile_yaml(FLOOD_RULE_YAML)
    result = run_backtest(_hourly([(0, 4.5)]), rules, directory)
    (line,) = transitions_json(result, label="bộ quy tắc mới")
    assert "bộ quy tắc mới" in line  # not \\u-escaped


# --- HTML report ---


def test_html_report(compile_yaml: Compile, directory: Directory) -> None:
    rules = compile_yaml(NAMED_FLOOD_YAML)
    readings = _hourly(EPISODES)
    result = run_backtest(readings, rules, directory)
    html = render(readings, rules, result)
    assert html.startswith("<!doctype html>")
    assert html.count("<svg") == 2  # the chart, and its disaster risk level below it
    for name, value in [("BĐ-I", "4.3"), ("BĐ-II", "5.3"), ("BĐ-III", "6.3")]:
        assert f">{name} {value} m</text>" in html
    assert "<h2>Transitions</h2>" in html
    table = html.split("<h2>Transitions</h2>", 1)[1]
    assert table.count("<tr>") == 1 + len(result.transitions())
    assert f"<td>{_at(hours=1).isoformat()}</td><td>{FLOOD}</td><td>dap-cau</td>" in table
    assert "<td>escalated</td><td>2</td>" in table
    # The warning periods, as a band under the chart: one rectangle per level period.
    assert html.count("water.flood.dap-cau BĐ-") == 5


def test_html_report_escapes_names(compile_yaml: Compile, directory: Directory) -> None:
    rules = compile_yaml(FLOOD_RULE_YAML.replace('name: "I"', 'name: "<b>I</b>"'))
    readings = _hourly([(0, 4.0), (1, 4.5)])
    html = render(readings, rules, run_backtest(readings, rules, directory))
    assert "<b>I</b>" not in html
    assert "&lt;b&gt;I&lt;/b&gt;" in html


def test_html_report_lists_quality_rejections(compile_yaml: Compile, directory: Directory) -> None:
    rules = compile_yaml(
        "quality:\n  metrics:\n    water_level_m: {max: 30}\nrules:\n" + FLOOD_RULE_YAML
    )
    readings = _hourly([(0, 4.0), (1, 99.0), (2, 4.5)])
    html = render(readings, rules, run_backtest(readings, rules, directory))
    assert "set aside by the quality gate: out_of_range 1" in html
    assert "<td>quality.out_of_range</td>" in html
    assert f"<td>{Transition.CLEARED.value}</td>" in html


def test_html_report_for_a_quiet_river(compile_yaml: Compile, directory: Directory) -> None:
    rules = compile_yaml(NAMED_FLOOD_YAML)
    readings = _hourly([(0, 3.5), (1, 3.6), (2, 3.7)])
    result = run_backtest(readings, rules, directory)
    assert result.warnings == []
    html = render(readings, rules, result)
    assert "<svg" in html and ">BĐ-I 4.3 m</text>" in html


# --- the chart (issue 15 item 13) ---


def _y_ticks(svg: str) -> list[float]:
    return [float(v) for v in re.findall(r'text-anchor="end">(-?[\d.]+)</text>', svg)]


def test_a_rejected_reading_is_marked_and_does_not_set_the_axis(
    compile_yaml: Compile, directory: Directory
) -> None:
    """One 99 m reading the gate set aside used to set the y axis: the flood was a flat
    line at the bottom and the I/II/III labels printed over each other."""
    rules = compile_yaml(
        "quality:\n  metrics:\n    water_level_m: {max: 30}\nrules:\n" + FLOOD_RULE_YAML
    )
    readings = _hourly([(0, 3.0), (1, 3.8), (2, 99.0), (3, 4.9), (4, 6.1), (5, 6.8), (6, 5.5)])
    result = run_backtest(readings, rules, directory)
    assert [(r.value, c.value) for r, c in result.set_aside] == [(99.0, "out_of_range")]
    html = render(readings, rules, result)
    ticks = _y_ticks(html)
    assert ticks and max(ticks) < 8 and min(ticks) >= 2
    assert ">99 m (out_of_range)</text>" in html  # marked at the top edge, with its value
    assert "set aside (out_of_range): 99 m" in html
    labels = [float(y) for y in re.findall(r'<text x="\d+" y="([\d.]+)">(?:I|II|III) ', html)]
    assert len(labels) == 3
    assert min(b - a for a, b in itertools.pairwise(sorted(labels))) >= 13  # no overlap


def test_the_chart_has_time_and_value_ticks_with_units(
    compile_yaml: Compile, directory: Directory
) -> None:
    rules = compile_yaml(NAMED_FLOOD_YAML)
    readings = _hourly([(h, 3.0 + h / 10) for h in range(25)])
    html = render(readings, rules, run_backtest(readings, rules, directory))
    assert "water_level_m (m)" in html
    assert len(_y_ticks(html)) >= 4
    assert ">07/10 06:00</text>" in html and ">07/10 12:00</text>" in html  # local time
    assert "time (UTC+07:00)" in html


def test_units_come_from_the_readings_or_the_metric_name() -> None:
    assert unit_of("water_level_m", []) == "m"
    assert unit_of("rain_mm", []) == "mm"
    assert unit_of("pm25_ugm3", []) == "µg/m³"
    assert unit_of("vn_aqi", []) == "VN_AQI"
    assert unit_of("failed_login", []) == ""
    assert unit_of("x", [_level(1.0, _at(), unit="cm")]) == "cm"


def test_nice_ticks_are_round_and_cover_the_range() -> None:
    assert nice_ticks(2.8, 7.9, 8) == [3, 4, 5, 6, 7]
    assert nice_ticks(0.0, 1.0, 6) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]


def test_compare_draws_two_bands_on_one_chart(compile_yaml: Compile, directory: Directory) -> None:
    readings = _hourly(EPISODES)
    a_rules, b_rules = compile_yaml(FLOOD_RULE_YAML), compile_yaml(LOWER_FLOOD_YAML)
    a, b = run_backtest(readings, a_rules, directory), run_backtest(readings, b_rules, directory)
    html = render(
        readings, a_rules, a, name="rules/", compare=RuleSetRun("b", "lower/", b_rules, b)
    )
    # One chart for both sets (and a risk-level row under it for each).
    assert html.count("<svg") - html.count('class="risk"') == 1
    assert ">a</text>" in html and ">b</text>" in html  # the two bands
    assert ">a: I 4.3 m</text>" in html and ">b: I 4 m</text>" in html
    assert 'stroke-dasharray="2 3"' in html  # b's differing level, dotted
    assert html.count(">II 5.3 m</text>") == 1 and ": II" not in html  # shared: one line
    assert html.count("<title>b: water.flood.dap-cau") == len(
        [w for w in b.warnings if w.level > 0]
    )


def test_the_report_counts_raises_and_names_flapping_rules(
    compile_yaml: Compile, directory: Directory
) -> None:
    rules = compile_yaml(FLOOD_RULE_YAML + GAP_YAML)
    hourly = [_level(3.0 + (h % 3) / 100, _at(hours=h)) for h in range(48)]
    result = run_backtest(hourly, rules, directory)
    html = render(hourly, rules, result)
    assert "water.gap: raised 47 <strong>flapping</strong>" in html
    assert "<td class='flap'>24.0</td>" in html
    assert "water.gap flaps on dap-cau: raised 47 times in 2.0 days" in html


# --- flapping (issue 15 item 12) ---

HOURLY_EXAMPLE = (
    Path(__file__).resolve().parents[2] / "examples/history/bac-ninh-rivers-2025-10-hourly.csv"
)


def test_the_hourly_bulletin_series_gets_every_level_and_no_data_gap(
    ruleset: RuleSet, directory: Directory
) -> None:
    history = load_history(HOURLY_EXAMPLE, ruleset)
    assert history.errors == [] and len(history.readings) == 4 * 264
    assert {r.source for r in history.readings} == {"sample:reconstructed-bulletins-2025-10"}
    result = run_backtest(history.readings, ruleset, directory)
    peaks = {
        s.rule.removeprefix("water.flood."): max(t["level"] for t in s.transitions)
        for s in result.summaries.values()
        if s.rule.startswith("water.flood.")
    }
    # As the bulletins had it: Đáp Cầu and Phủ Lạng Thương above III, Lục Nam and
    # Phả Lại between I and II.
    assert peaks == {"dap-cau": 3, "phu-lang-thuong": 3, "luc-nam": 2, "pha-lai": 2}
    assert all(s.raised == 1 and s.flaps == 0 for s in result.summaries.values())
    assert "water.gap.rivers" not in result.summaries
    assert result.flapping == []


def test_a_fixed_silence_limit_flaps_on_hourly_stations_and_the_backtest_says_why(
    ruleset: RuleSet, directory: Directory, compile_yaml: Compile
) -> None:
    history = load_history(HOURLY_EXAMPLE, ruleset)
    fixed = compile_yaml(
        GAP_YAML.replace("water.gap", "water.gap.rivers").replace(
            "selector: {metric: water_level_m}",
            "selector: {stations: [phu-lang-thuong, luc-nam, pha-lai], metric: water_level_m}",
        )
    )
    result = run_backtest(history.readings, fixed, directory)
    assert [(f.rule, f.subject) for f in result.flapping] == [
        ("water.gap.rivers", "luc-nam"),
        ("water.gap.rivers", "pha-lai"),
        ("water.gap.rivers", "phu-lang-thuong"),
    ]
    first = result.flapping[0]
    assert first.raises == 263 and first.per_day > 20
    assert "luc-nam reports every 1h (median gap in the data)" in first.cause
    assert "silent after 30m" in first.cause and "intervals" in first.cause
    # The limit is the caller's: at 30 a day nothing is flapping.
    relaxed = run_backtest(history.readings, fixed, directory, max_raises_per_day=30)
    assert relaxed.flapping == []


def test_a_level_that_flaps_is_blamed_on_its_hysteresis(
    compile_yaml: Compile, directory: Directory
) -> None:
    bare = FLOOD_RULE_YAML.replace(", hysteresis: 0.10", "")
    hover = [_level(4.25 if h % 2 else 4.35, _at(hours=h)) for h in range(24)]
    (flap,) = run_backtest(hover, compile_yaml(bare), directory).flapping
    assert flap.rule == FLOOD and flap.raises == 12
    assert "hover around level I (4.3); hysteresis 0" in flap.cause
    # With the shipped hysteresis (0.10 m) the same data raises once.
    assert run_backtest(hover, compile_yaml(FLOOD_RULE_YAML), directory).flapping == []


def test_a_station_slower_than_its_geography_says_is_named(
    compile_yaml: Compile, directory: Directory
) -> None:
    rules = compile_yaml(
        GAP_YAML.replace("silent_for: 30m", "silent_for: 3 intervals, at_least: 10m")
    )
    stations = [
        replace(s, report_every=timedelta(minutes=15)) if s.id == "dap-cau" else s
        for s in directory.geography.stations
    ]
    fast = Directory(
        directory.geography.model_copy(update={"stations": stations}), directory.agencies
    )
    hourly = [_level(3.0 + h / 100, _at(hours=h)) for h in range(24)]
    (flap,) = run_backtest(hourly, rules, fast).flapping
    assert "its report_every in the geography file (15m) is shorter" in flap.cause
