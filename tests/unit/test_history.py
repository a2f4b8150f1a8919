"""One history loader for backtests and replays: the same file reads the same in
both, bad lines are told by their physical line, and nothing readable is dropped."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from feeds.file_replay import read_history as replay_history
from pipeline.backtest import load_history
from pipeline.history import BadLine, MissingColumns, parse
from pipeline.rules.loader import RuleSet
from tests.unit.conftest import FLOOD_RULE_YAML
from topics.errors import field_errors
from topics.models import Domain, Reading

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


# -- the CSV reader against the DictReader + pydantic it replaced (for speed) -----------

_TIMES = st.sampled_from([
    "2025-10-07T00:00:00+07:00", "2025-10-07T00:00:00Z", "2025-10-07 06:30:00.25-03:00",
    "2025-10-07T00:00:00", "2025-13-07T00:00:00Z", "2025-10-07T00:00:00+24:00",
    "2025-10-07T23:59:60Z", "2025-10-07", "1759795200", "", "soon",
])  # fmt: skip
_CELLS = st.sampled_from(["dap-cau", "water_level_m", "4.5", "nan", "", "m", "bulletin 7"])


def _reference(path: Path, text: str) -> list[object]:
    """What the reader did before: csv.DictReader, every cell handed to pydantic."""
    out: list[object] = []
    reader = csv.DictReader(io.StringIO(text))
    for row in reader:
        try:
            out.append(Reading(station_id=row["station_id"], domain=row.get("domain") or "water",
                               metric=row["metric"], value=row["value"],
                               observed_at=row["observed_at"], unit=row.get("unit") or None,
                               area=row.get("area") or None,
                               source=row.get("source") or None))  # fmt: skip
        except ValidationError as exc:
            out.append(BadLine(path, reader.line_num, "; ".join(field_errors(exc))))
    return out


@settings(max_examples=150, deadline=None)
@given(
    header=st.permutations(["observed_at", "station_id", "metric", "value", "unit", "source"]),
    extra=st.sampled_from(["", ",domain", ",source", ",value"]),
    rows=st.lists(st.tuples(_TIMES, st.lists(_CELLS, max_size=7)), max_size=6),
)
def test_the_csv_reader_reads_every_row_as_pydantic_did(
    header: list[str], extra: str, rows: list[tuple[str, list[str]]]
) -> None:
    """Same readings (the same instant and offset, written the same), same bad lines
    with the same reasons, for short and long rows, blank lines and repeated columns."""
    path = Path("h.csv")
    lines = [",".join(header) + extra]
    for when, cells in rows:
        cells = list(cells)
        cells.insert(min(header.index("observed_at"), len(cells)), when)
        lines.append(",".join(cells))
    text = "\n".join(lines) + "\n"
    got = list(parse(path, text, default=Domain.WATER))
    want = _reference(path, text)
    assert got == want
    times = [r.observed_at.isoformat() for r in got if isinstance(r, Reading)]
    assert times == [r.observed_at.isoformat() for r in want if isinstance(r, Reading)]
