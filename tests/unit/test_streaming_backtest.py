"""Backtests of any length: history streamed in time order (or sorted out of core),
the replay's clock kept per key, memory that does not grow with the history."""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alerting.directory import Directory
from pipeline import history
from pipeline.backtest import (
    ChartSample,
    StationGaps,
    Tally,
    _median,
    run_backtest,
    sort_history,
    stream_backtest,
    stream_history,
)
from pipeline.engine import Engine
from pipeline.replay import Replay, TrackedStore
from pipeline.rules.loader import RuleSet, load_rules
from tests.conftest import REPO
from tests.unit.conftest import FLOOD_RULE_YAML
from topics.models import Domain, Reading

Compile = Callable[..., RuleSet]
FLOOD = REPO / "examples/history/flood-2025-10.csv"  # per station, not in time order
HOURLY = REPO / "examples/history/bac-ninh-rivers-2025-10-hourly.csv"  # in time order
T0 = datetime(2025, 10, 6, tzinfo=UTC)


def _csv(path: Path, rows: list[str]) -> Path:
    path.write_text("observed_at,station_id,metric,value\n" + "".join(rows), encoding="utf-8")
    return path


def _row(hour: float, station: str = "dap-cau", value: float = 3.0) -> str:
    return f"{(T0 + timedelta(hours=hour)).isoformat()},{station},water_level_m,{value}\n"


def test_a_file_out_of_time_order_is_refused_at_its_first_older_line(tmp_path: Path) -> None:
    path = _csv(tmp_path / "h.csv", [_row(0), _row(2), _row(1)])
    rows = history.stream(path, {"water_level_m": Domain.WATER}, ordered=True)
    assert [r.observed_at.hour for r in [next(rows), next(rows)]] == [0, 2]  # type: ignore[union-attr]
    with pytest.raises(history.OutOfOrder) as caught:
        next(rows)
    assert caught.value.line == 4
    assert str(caught.value).startswith(f"{path}:4: observed at 2025-10-06T01:00:00+00:00")
    assert "not in time order" in str(caught.value)


def test_readings_of_the_same_time_are_in_order(tmp_path: Path) -> None:
    path = _csv(tmp_path / "h.csv", [_row(0, "a"), _row(0, "b"), _row(1, "a")])
    rows = list(history.stream(path, {"water_level_m": Domain.WATER}, ordered=True))
    assert [r.station_id for r in rows if isinstance(r, Reading)] == ["a", "b", "a"]


def test_the_stream_reads_the_file_as_it_is_consumed(tmp_path: Path) -> None:
    # A tail that is not UTF-8, a few MB on: reading the whole file first would fail
    # before the first reading; a stream yields what comes before it.
    path = _csv(tmp_path / "h.csv", [_row(h / 60) for h in range(60_000)])
    with path.open("ab") as f:
        f.write(b"\xff\xfe not text\n")
    rows = history.stream(path, {"water_level_m": Domain.WATER}, ordered=True)
    first = [next(rows) for _ in range(100)]
    assert all(isinstance(r, Reading) for r in first)
    with pytest.raises(UnicodeDecodeError):
        path.read_text(encoding="utf-8")


def test_bad_lines_are_named_by_their_line_and_the_rest_is_read(
    tmp_path: Path, compile_yaml: Compile
) -> None:
    path = _csv(tmp_path / "h.csv", [_row(0), "not-a-time,dap-cau,water_level_m,3\n", _row(1)])
    tally = Tally()
    readings = list(stream_history(path, compile_yaml(FLOOD_RULE_YAML), tally))
    assert len(readings) == 2 and tally.read == 2 and tally.skipped == 1
    assert tally.errors[0].startswith(f"{path}:3: ")


def test_sorting_out_of_core_is_the_stable_sort_of_the_whole_file(
    tmp_path: Path, compile_yaml: Compile
) -> None:
    rules = compile_yaml(FLOOD_RULE_YAML)
    rows = [_row(h % 7, f"s{h % 3}", h) for h in range(20)] + ["garbage,x,y,z\n"]
    path = _csv(tmp_path / "h.csv", rows)
    expected = sorted(
        (r for r in history.parse(path, path.read_text(), history.rule_domains(rules))
         if isinstance(r, Reading)),
        key=lambda r: r.observed_at,
    )  # fmt: skip
    bad: list[history.BadLine] = []
    out = history.sort_by_time(path, tmp_path, history.rule_domains(rules), chunk=3,
                               on_bad=bad.append)  # fmt: skip
    got = [r for r in history.stream(out, ordered=True) if isinstance(r, Reading)]
    assert got == expected
    assert [b.line for b in bad] == [22]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.csv", "sorted.jsonl"]  # runs gone


def test_a_streamed_backtest_equals_the_in_memory_one(tmp_path: Path, directory: Directory) -> None:
    rules = load_rules(REPO / "rules")
    for path in (FLOOD, HOURLY):
        every = [r for r in history.parse(path, path.read_text(), history.rule_domains(rules))
                 if isinstance(r, Reading)]  # fmt: skip
        in_memory = run_backtest(every, rules, directory)
        tally = Tally()
        try:
            streamed = stream_backtest(stream_history(path, rules, tally), rules, directory)
        except history.OutOfOrder:
            assert path == FLOOD  # sorted per station: sorted out of core first
            ordered = sort_history(path, rules, tmp_path, Tally())
            streamed = stream_backtest(stream_history(ordered, rules, tally), rules, directory)
        assert streamed.transitions() == in_memory.transitions()
        assert streamed.rejected == in_memory.rejected
        assert [f.message() for f in streamed.flapping] == [f.message() for f in in_memory.flapping]
        assert (streamed.start, streamed.end) == (in_memory.start, in_memory.end)


class _Checked(Replay):
    """A replay that checks its kept clock against a scan of the whole store."""

    checked = 0

    def _due(self) -> datetime | None:
        kept = super()._due()
        assert kept == self._due_scan()
        type(self).checked += 1
        return kept


def test_the_replay_clock_kept_per_key_agrees_with_a_full_scan(directory: Directory) -> None:
    rules = load_rules(REPO / "rules")
    replay = _Checked(Engine(rules, directory))
    assert isinstance(replay.store, TrackedStore)
    path = FLOOD
    rows = [r for r in history.parse(path, path.read_text(), history.rule_domains(rules))
            if isinstance(r, Reading)]  # fmt: skip
    for r in sorted(rows, key=lambda r: r.observed_at):
        replay.reading(r)
    replay.finish(rows[-1].observed_at + timedelta(days=2))  # silent stations, expiries
    assert _Checked.checked > 100
    assert any(w.rule_id.startswith("water.gap") for w in replay.warnings)


def test_the_tracked_store_reports_every_write() -> None:
    store = TrackedStore({"a": 1})
    assert store.take_written() == {"a"}
    store["b"] = 2
    store.pop("a")
    store.setdefault("c", 3)
    store.update(d=4)
    del store["b"]
    assert store.take_written() == {"a", "b", "c", "d"} and store.take_written() == set()


def test_station_gaps_give_the_median_and_last_gaps_of_distinct_times() -> None:
    gaps = StationGaps()
    times = [0, 900, 900, 1800, 5400, 6300, 7200, 7200, 8100]
    for t in times:
        gaps.add("s", float(t))
    counts, recent = gaps.of("s")
    distinct = sorted(set(times))
    expected = [b - a for a, b in itertools.pairwise(distinct)]
    assert sorted(counts.elements()) == sorted(expected) and recent == expected
    assert _median(counts) == statistics.median(expected)
    assert gaps.of("unknown") == (Counter(), [])


@pytest.mark.parametrize("values", [[1.0], [1.0, 2.0], [3.0, 1.0, 2.0, 2.0], [5.0, 1.0, 9.0, 9.0]])
def test_median_of_counts_is_the_median(values: list[float]) -> None:
    assert _median(Counter(values)) == statistics.median(values)


def test_the_chart_sample_is_bounded_and_keeps_the_peak_and_the_trough() -> None:
    sample = ChartSample(per_series=50)
    values: list[Any] = [2.0 + 0.01 * (i % 5) for i in range(10_000)]
    values[7_777], values[3_333] = 9.5, -1.0
    for i, v in enumerate(values):
        sample.add(
            Reading(station_id="s", domain=Domain.WATER, metric="water_level_m", value=v,
                    observed_at=T0 + timedelta(minutes=15 * i))
        )  # fmt: skip
    kept = sample.readings()
    assert len(kept) < 100
    assert max(r.value for r in kept) == 9.5 and min(r.value for r in kept) == -1.0
    assert kept == sorted(kept, key=lambda r: r.observed_at)
