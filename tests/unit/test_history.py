"""One history loader for backtests and replays: the same file reads the same in
both, bad lines are told by their physical line, and nothing readable is dropped."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from feeds.file_replay import read_history as replay_history
from pipeline.backtest import load_history
from pipeline.history import MissingColumns, parse
from pipeline.rules.loader import RuleSet
from tests.unit.conftest import FLOOD_RULE_YAML
from topics.models import Domain

Compile = Callable[..., RuleSet]

# A quoted newline in a source name: row numbers and line numbers part ways after it.
HISTORY = (
    "observed_at,station_id,metric,value,source,unit\n"
    '2025-10-07T00:00:00+07:00,dap-cau,water_level_m,4.0,"bulletin\nno. 7",m\n'
    "2025-10-07T01:00:00+07:00,dap-cau,water_level_m,abc,,m\n"
    "2025-10-07T02:00:00+07:00,dap-cau,water_level_m,4.5,,m\n"
)


def test_backtest_and_replay_read_a_file_alike(tmp_path: Path, compile_yaml: Compile) -> None:
    path = tmp_path / "history.csv"
    path.write_text(HISTORY, encoding="utf-8")
    backtest = load_history(path, compile_yaml(FLOOD_RULE_YAML))
    replay = replay_history([path], {"water_level_m": Domain.WATER})
    assert backtest.readings == replay.readings
    assert [r.value for r in backtest.readings] == [4.0, 4.5]
    # The unit column is kept by both (the backtest used to drop it).
    assert {r.unit for r in backtest.readings} == {"m"}
    # The bad value is on line 4 of the file (line 3 counted rows, not lines).
    assert backtest.errors == [str(b) for b in replay.bad]
    assert backtest.errors[0].startswith(f"{path}:4: ")
    assert backtest.skipped == 1


def test_a_csv_without_its_columns_is_refused_whole(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    text = "observed_at,station_id,value\n2025-10-07T00:00:00+07:00,dap-cau,4\n"
    with pytest.raises(MissingColumns, match=r"h.csv: CSV needs columns .*missing \['metric'\]"):
        list(parse(path, text))
    path.write_text(text, encoding="utf-8")
    (bad,) = replay_history([path]).bad
    columns = "observed_at, station_id, metric, value"
    assert str(bad) == f"{path}:1: CSV needs columns {columns}; missing ['metric']"


def test_a_row_without_a_domain_says_how_to_give_one(tmp_path: Path, compile_yaml: Compile) -> None:
    path = tmp_path / "h.csv"
    row = "2025-10-07T00:00:00+07:00,aq-1,pm10_mystery,30\n"
    path.write_text("observed_at,station_id,metric,value\n" + row, encoding="utf-8")
    (err,) = load_history(path, compile_yaml(FLOOD_RULE_YAML)).errors
    assert err == (f"{path}:2: no domain for metric 'pm10_mystery': no rule watches it and "
                   "the row has no domain column")  # fmt: skip
    (bad,) = replay_history([path]).bad
    assert bad.reason.endswith("add a domain column or --domain, or a rule that watches it")


def test_progress_is_told_to_the_end(tmp_path: Path, compile_yaml: Compile) -> None:
    rows = "".join(f"2025-10-07T00:{m % 60:02d}:00+07:00,s{m},water_level_m,4\n"
                   for m in range(2500))  # fmt: skip
    path = tmp_path / "h.csv"
    path.write_text("observed_at,station_id,metric,value\n" + rows, encoding="utf-8")
    seen: list[tuple[int, int]] = []
    result = load_history(path, compile_yaml(FLOOD_RULE_YAML), lambda n, t: seen.append((n, t)))
    assert len(result.readings) == 2500
    assert seen[-1] == (2501, 2501) and [n for n, _ in seen[:-1]] == [1000, 2000]
