"""``canhbao rules test`` counts cases, as the files write them, not files: an engineer
reading "7 passed" took it for seven tests (issue 15, item 10)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

RULE = """\
rules:
  - id: water.flood.dap-cau
    domain: water
    hazard: river_flood
    selector: {station: dap-cau, metric: water_level_m}
    condition: {kind: threshold, direction: rising, hysteresis: 0.10}
    levels:
      - {level: 1, name: "I", value: 4.30, severity: Moderate}
      - {level: 2, name: "II", value: 5.30, severity: Severe}
"""


def case(name: str, level: int) -> str:
    return f"""\
  - name: {name}
    start: 2025-10-07T00:00:00+07:00
    interval: 1h
    series:
      - {{station: dap-cau, domain: water, metric: water_level_m, values: "3.9 4.35 5.4"}}
    expect:
      - {{at: 1h, rule: water.flood.dap-cau, transition: raised, level: 1}}
      - {{at: 2h, rule: water.flood.dap-cau, transition: escalated, level: {level}}}
"""


def rules_test(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "canhbao", "rules", "test", str(path)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_summary_counts_cases_passed_and_failed(tmp_path: Path) -> None:
    (tmp_path / "water.yaml").write_text(RULE, encoding="utf-8")
    (tmp_path / "a.test.yaml").write_text(
        "tests:\n" + case("rises", 2) + case("also rises", 2) + case("wrong level", 3),
        encoding="utf-8",
    )
    (tmp_path / "b.test.yaml").write_text("tests:\n" + case("rises again", 2), encoding="utf-8")
    out = rules_test(tmp_path)
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert lines[0] == f"FAIL  {tmp_path / 'a.test.yaml'}  (3 cases, 1 failed)"
    assert f"ok    {tmp_path / 'b.test.yaml'}  (1 case)" in lines
    assert lines[-1] == "4 cases in 2 files: 3 passed, 1 failed"


def test_a_file_that_cannot_run_is_named_in_the_summary(tmp_path: Path) -> None:
    (tmp_path / "water.yaml").write_text(RULE, encoding="utf-8")
    (tmp_path / "ok.test.yaml").write_text("tests:\n" + case("rises", 2), encoding="utf-8")
    (tmp_path / "z.test.yaml").write_text("tests: [{name: 1}]\n", encoding="utf-8")
    out = rules_test(tmp_path)
    assert out.returncode == 1
    assert f"FAIL  {tmp_path / 'z.test.yaml'}  (could not run)" in out.stdout
    assert out.stdout.splitlines()[-1] == (
        "1 case in 2 files: 1 passed, 0 failed, 1 file(s) could not run"
    )
