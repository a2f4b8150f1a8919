"""The engineers' commands, run as engineers run them: check, test, backtest."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

HISTORY = REPO / "examples/history/flood-2025-10.csv"


def canhbao(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "canhbao", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_shipped_rules_check_and_their_tests_pass() -> None:
    check = canhbao("rules", "check", "rules/")
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("ok: ")
    tests = canhbao("rules", "test", "rules/")
    assert tests.returncode == 0, tests.stdout
    # The summary counts cases, not files (it said "7 passed" for 7 files).
    files = len(list((REPO / "rules").glob("*.test.yaml")))
    cases = sum(int(n) for n in re.findall(r"\((\d+) cases?\)", tests.stdout))
    assert cases > files
    assert f"{cases} cases in {files} files: {cases} passed, 0 failed" in tests.stdout
    # Every rule kind is exercised by the shipped rule tests.
    text = "".join(p.read_text(encoding="utf-8") for p in (REPO / "rules").glob("*.test.yaml"))
    for rule_id in (
        "water.flood.",
        "water.rain.24h",
        "water.gap.",
        "env.aqi",
        "health.dengue",
        "health.ili",
        "cyber.bruteforce",
        "water.report",
        "geology.landslide",
    ):
        assert rule_id in text, f"no rule test mentions {rule_id}"


def test_a_typo_and_a_negative_window_are_named_by_file_rule_and_field(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        """
rules:
  - id: typo.rule
    domain: water
    hazard: river_flood
    selector: {station: dap-cau, metric: water_level_m}
    condition: {kind: threshold, hysteresys: 0.1}
    levels: [{level: 1, name: "I", value: 4.3, severity: Moderate}]
  - id: negative.window
    domain: water
    hazard: heavy_rain
    selector: {metric: rain_mm}
    condition: {kind: window, aggregate: sum, window: -24h}
    levels: [{level: 1, name: "heavy", value: 50, severity: Moderate}]
""",
        encoding="utf-8",
    )
    out = canhbao("rules", "check", str(tmp_path))
    assert out.returncode == 1
    assert f"{tmp_path / 'bad.yaml'}: rule typo.rule: condition.hysteresys" in out.stderr
    assert f"{tmp_path / 'bad.yaml'}: rule negative.window: condition.window" in out.stderr
    assert "must be positive" in out.stderr


def test_backtest_replays_a_flood_and_ignores_faulty_sensors(tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    out = canhbao(
        "rules", "backtest", "--rules", "rules/", "--data", str(HISTORY), "--json",
        "--html", str(report),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    keys = {"rule", "subject", "level", "transition", "at", "risk_level"}
    assert all(set(r) == keys for r in rows)
    flood = [(r["transition"], r["level"], r["at"]) for r in rows
             if r["rule"] == "water.flood.dap-cau"]  # fmt: skip
    # The wave at 15-minute steps crosses 4.30, 5.30 and 6.30 m, peaks at 6.80 m and
    # recedes; hysteresis (0.10 m) delays each step down until 10 cm below the level.
    assert flood == [
        ("raised", 1, "2025-10-06T21:30:00+07:00"),
        ("escalated", 2, "2025-10-07T02:15:00+07:00"),
        ("escalated", 3, "2025-10-07T06:45:00+07:00"),
        ("deescalated", 2, "2025-10-07T18:00:00+07:00"),
        ("deescalated", 1, "2025-10-07T22:30:00+07:00"),
        ("cleared", 0, "2025-10-08T03:15:00+07:00"),
    ]
    # The 99 m spike and the frozen Lục Nam sensor raise sensor faults, no flood warning.
    faults = {(r["rule"], r["subject"]) for r in rows if r["transition"] == "raised"}
    assert ("quality.out_of_range", "dap-cau") in faults
    assert ("quality.stuck", "luc-nam") in faults
    assert not any(r["rule"] == "water.flood.luc-nam" for r in rows)
    html = report.read_text(encoding="utf-8")
    assert "<svg" in html and "dap-cau" in html and "water.flood.dap-cau" in html


def test_backtest_compare_shows_the_effect_of_lower_thresholds(tmp_path: Path) -> None:
    import shutil

    lower = tmp_path / "lower"
    shutil.copytree(REPO / "rules", lower)
    water = lower / "water.yaml"
    water.write_text(water.read_text("utf-8").replace("value: 4.30,", "value: 4.00,"), "utf-8")
    out = canhbao(
        "rules", "backtest", "--rules", "rules/", "--compare", str(lower),
        "--data", str(HISTORY), "--no-html",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    diff = out.stdout.split("compared with", 1)[1]
    line = next(x for x in diff.splitlines() if x.strip().startswith("water.flood.dap-cau:"))
    # Same one flood, raised earlier: level I at 4.00 m comes before 4.30 m on the rise.
    assert "raised 1 → 1" in line and "first raise -" in line


HOURLY = REPO / "examples/history/bac-ninh-rivers-2025-10-hourly.csv"


def test_a_bare_html_flag_writes_the_default_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README shows ``--html`` bare; it used to need an argument (exit 2)."""
    monkeypatch.setenv("CANHBAO_GEOGRAPHY_PATH", str(REPO / "config/geography.yaml"))
    monkeypatch.setenv("CANHBAO_DIRECTORY_PATH", str(REPO / "config/directory.yaml"))
    out = canhbao(
        "rules", "backtest", "--rules", str(REPO / "rules"), "--data", str(HISTORY), "--html",
        cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "HTML report: backtest-report.html" in out.stderr
    html = (tmp_path / "backtest-report.html").read_text(encoding="utf-8")
    assert "99 m (out_of_range)" in html


def test_backtest_warns_about_a_flapping_rule_and_names_the_cause(tmp_path: Path) -> None:
    import shutil

    fixed = tmp_path / "fixed"
    shutil.copytree(REPO / "rules", fixed)
    water = fixed / "water.yaml"
    text = water.read_text("utf-8")
    assert "silent_for: 3 intervals, at_least: 30m" in text
    water.write_text(text.replace("silent_for: 3 intervals, at_least: 30m", "silent_for: 30m"))
    out = canhbao("rules", "backtest", "--rules", str(fixed), "--data", str(HOURLY), "--no-html")
    assert out.returncode == 0, out.stderr
    assert "flapping (more than 3 raises a day):" in out.stdout
    warning = next(x for x in out.stdout.splitlines() if "flaps on luc-nam" in x)
    assert warning.strip().startswith("warning: water.gap.rivers flaps on luc-nam: raised")
    assert "Likely cause: luc-nam reports every 1h" in warning
    # JSON lines stay JSON: the warnings go to stderr.
    js = canhbao(
        "rules", "backtest", "--rules", str(fixed), "--data", str(HOURLY), "--json", "--no-html"
    )
    assert all(json.loads(line) for line in js.stdout.splitlines())
    assert "warning: water.gap.rivers flaps on luc-nam" in js.stderr
    # The shipped rules, judged in each station's own interval, do not flap.
    shipped = canhbao("rules", "backtest", "--rules", "rules/", "--data", str(HOURLY), "--no-html")
    assert shipped.returncode == 0 and "flapping" not in shipped.stdout
    assert "water.gap.rivers" not in shipped.stdout


def test_a_failing_case_and_a_broken_file_are_counted(tmp_path: Path) -> None:
    import shutil

    shutil.copy(REPO / "rules/water.yaml", tmp_path / "water.yaml")
    shutil.copy(REPO / "rules/quality.yaml", tmp_path / "quality.yaml")
    (tmp_path / "a.test.yaml").write_text(
        """
tests:
  - name: passes
    start: 2025-10-07T00:00:00+07:00
    interval: 1h
    series: [{station: dap-cau, domain: water, metric: water_level_m, values: "4.0 4.4"}]
    expect: [{at: 1h, rule: water.flood.dap-cau, transition: raised, level: 1}]
  - name: fails
    start: 2025-10-07T00:00:00+07:00
    interval: 1h
    series: [{station: dap-cau, domain: water, metric: water_level_m, values: "4.0 4.4"}]
    expect: [{at: 1h, rule: water.flood.dap-cau, transition: raised, level: 2}]
""",
        encoding="utf-8",
    )
    (tmp_path / "b.test.yaml").write_text("tests: []\n", encoding="utf-8")
    out = canhbao("rules", "test", str(tmp_path))
    assert out.returncode == 1
    assert "2 cases in 2 files: 1 passed, 1 failed, 1 file(s) could not run" in out.stdout
