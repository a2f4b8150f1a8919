"""`canhbao rules backtest` reports the official disaster risk level over time next to
the alarm levels (text, --json, HTML): a river rising through alarm levels I, II, III
and III + 1 m shows, at each step, the risk level Decision 18/2021/QĐ-TTg (Article 45)
gives for its station's zone. Run as engineers run it, on a history file."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from alerting import palette
from tests.test_rules_cli import canhbao

ICT = timezone(timedelta(hours=7))
START = datetime(2025, 10, 7, tzinfo=ICT)
# Alarm levels I / II / III and III + 1 m, a little above each, an hour apart (no spike).
RISE = {
    "luc-nam": [4.0, 4.35, 5.35, 6.35, 7.0, 7.35],  # 4.30 / 5.30 / 6.30 m
    "phu-lang-thuong": [4.0, 4.35, 5.35, 6.35, 7.0, 7.35],
    "dap-cau": [4.0, 4.35, 5.35, 6.35, 7.0, 7.35],
    "thuong-cat": [8.5, 9.05, 10.05, 11.05, 11.7, 12.05],  # 9 / 10 / 11 m
}
# (alarm level, risk level) at I, II, III, then what III + 0.3 m / III + 1 m change:
# the sample zones of config/geography.yaml are 1, 2, 3 and 4.
EXPECTED = {
    "luc-nam": [(1, 1), (2, 1), (3, 2), (3, 3)],  # zone 1: III + 1 m is level 3
    "phu-lang-thuong": [(1, 1), (2, 2), (3, 2), (3, 3)],  # zone 2
    "dap-cau": [(1, 1), (2, 2), (3, 3)],  # zone 3: nothing changes above III
    "thuong-cat": [(1, 2), (2, 3), (3, 3), (3, 4)],  # zone 4: III + 0.3 m is level 4
}


def _history(tmp_path: Path, station: str) -> Path:
    path = tmp_path / f"{station}.csv"
    lines = ["observed_at,station_id,metric,value"]
    for i, value in enumerate(RISE[station]):
        lines.append(f"{(START + timedelta(hours=i)).isoformat()},{station},water_level_m,{value}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("station", sorted(RISE))
def test_backtest_shows_the_risk_level_of_each_step_for_the_stations_zone(
    tmp_path: Path, station: str
) -> None:
    data = _history(tmp_path, station)
    out = canhbao("rules", "backtest", "--rules", "rules/", "--data", str(data), "--json",
                  "--no-html")  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    flood = [r for r in rows if r["rule"] == f"water.flood.{station}"]
    assert [(r["level"], r["risk_level"]) for r in flood] == EXPECTED[station]

    text = canhbao("rules", "backtest", "--rules", "rules/", "--data", str(data), "--html",
                   str(tmp_path / "report.html"))  # fmt: skip
    assert text.returncode == 0, text.stderr
    block = text.stdout.split(f"water.flood.{station}:")[1].split("\n\n")[0]
    risks = [line.split("risk ")[1][0] for line in block.splitlines() if "  risk " in line]
    assert [int(r) for r in risks] == [risk for _, risk in EXPECTED[station]]
    assert "QĐ 18/2021/QĐ-TTg Điều 45" in block
    assert "time at disaster risk level:" in block
    # which station attributes are samples, to replace with official values
    assert f"the risk levels at {station} rest on SAMPLE flood_zone" in text.stdout
    # the HTML report draws the risk level over time in its colours, with a legend
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Disaster risk level (Decision 18/2021/QĐ-TTg)" in html
    assert "level 5 – catastrophic" in html
    for _, risk in EXPECTED[station]:
        assert f'fill="{palette.colour(risk)}"' in html
