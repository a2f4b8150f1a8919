"""File replay: time order, time compression on a fake clock, shift-to-now, bad lines."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from canhbao.cli import main
from feeds.file_replay import plan, read_history, replay
from feeds.sink import MemorySink
from topics.catalogue import INGEST_READINGS
from topics.models import Domain, Reading

ICT = timezone(timedelta(hours=7))
T0 = datetime(2025, 10, 6, 0, 0, tzinfo=ICT)


def csv_file(tmp_path: Path, rows: list[str], name: str = "h.csv") -> Path:
    path = tmp_path / name
    path.write_text("observed_at,station_id,metric,value\n" + "\n".join(rows) + "\n")
    return path


def row(minutes: int, value: float, station: str = "dap-cau") -> str:
    return f"{(T0 + timedelta(minutes=minutes)).isoformat()},{station},water_level_m,{value}"


WATER = {"water_level_m": Domain.WATER}


class FakeTime:
    """A monotonic clock that only moves when the replay sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class TimedSink(MemorySink):
    def __init__(self, time: FakeTime) -> None:
        super().__init__()
        self.time = time
        self.batches: list[tuple[float, list[float]]] = []

    async def send_many(self, messages: list[tuple[str, bytes | None, bytes]]) -> None:
        await super().send_many(messages)
        values = [json.loads(v)["value"] for _, _, v in messages]
        self.batches.append((self.time.now - 100.0, values))


async def test_speed_compresses_history_into_wall_time(tmp_path: Path) -> None:
    # 0, 15, 30 and 60 minutes of history at 900x: sent at 0, 1, 2 and 4 seconds.
    path = csv_file(tmp_path, [row(60, 4.0), row(0, 3.0), row(15, 3.1), row(30, 3.5)])
    loaded = read_history([path], WATER)
    time = FakeTime()
    sink = TimedSink(time)
    sent = await replay(plan(loaded.readings, 900), sink, clock=time.clock, sleep=time.sleep)
    assert sent == 4
    assert sink.batches == [(0.0, [3.0]), (1.0, [3.1]), (2.0, [3.5]), (4.0, [4.0])]
    assert sum(time.slept) == pytest.approx(4.0)
    assert all(t == INGEST_READINGS and k == b"dap-cau" for t, k, _ in sink.sent)


async def test_speed_zero_sends_at_once_in_batches(tmp_path: Path) -> None:
    path = csv_file(tmp_path, [row(m, 3.0 + m / 1000) for m in range(0, 7 * 15, 15)])
    time = FakeTime()
    sink = TimedSink(time)
    planned = plan(read_history([path], WATER).readings, 0)
    await replay(planned, sink, clock=time.clock, sleep=time.sleep, batch=3)
    assert time.slept == []
    assert [len(values) for _, values in sink.batches] == [3, 3, 1]


def test_shift_to_now_stamps_the_first_reading_now_and_keeps_the_gaps(tmp_path: Path) -> None:
    path = csv_file(tmp_path, [row(0, 3.0), row(15, 3.1), row(120, 3.4)])
    now = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
    planned = plan(read_history([path], WATER).readings, 3600, shift_to=now)
    stamps = [p.reading.observed_at for p in planned]
    assert stamps == [now, now + timedelta(minutes=15), now + timedelta(hours=2)]
    assert [p.due for p in planned] == [0.0, 0.25, 2.0]  # wall time compressed, stamps not
    # Without it, a backfill keeps the original times.
    kept = plan(read_history([path], WATER).readings, 3600)
    assert kept[0].reading.observed_at == T0


def test_files_are_merged_in_time_order_csv_and_jsonl(tmp_path: Path) -> None:
    csv_path = csv_file(tmp_path, [row(0, 3.0), row(30, 3.2)])
    jsonl = tmp_path / "more.jsonl"
    r = Reading(
        station_id="luc-nam",
        domain=Domain.WATER,
        metric="water_level_m",
        value=2.5,
        observed_at=T0 + timedelta(minutes=10),
    )
    jsonl.write_text(r.model_dump_json() + "\n")
    planned = plan(read_history([csv_path, jsonl], WATER).readings, 0)
    assert [p.reading.station_id for p in planned] == ["dap-cau", "luc-nam", "dap-cau"]


def test_bad_lines_are_reported_with_file_and_line_and_the_rest_is_replayed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = csv_file(
        tmp_path,
        [
            row(0, 3.0),
            f"{T0.isoformat()},dap-cau,water_level_m,high",
            "2025-10-06T01:00:00,dap-cau,water_level_m,3.1",  # no offset
            f"{T0.isoformat()},dap-cau,pm10_mystery,3",
            row(60, 3.2),
        ],
    )
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text('{"station_id": "x"}\n\n{not json\n')
    code = main(
        ["feed", "replay", str(path), str(jsonl), "--dry-run", "--shift-to-now", "--speed", "60"]
    )
    out, err = capsys.readouterr()
    assert code == 1  # some lines were bad
    assert len(out.splitlines()) == 2  # the two good readings are still sent
    assert f"{path}:3: value:" in err
    assert f"{path}:4: observed_at:" in err
    assert f"{path}:5: no domain for metric 'pm10_mystery'" in err
    assert f"{jsonl}:1: " in err
    assert f"{jsonl}:3: " in err
    assert "5 bad line(s)" in err


def test_csv_without_the_needed_columns_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("time,station,level\n2025-10-06T00:00:00+07:00,dap-cau,3.0\n")
    loaded = read_history([path], WATER)
    assert loaded.readings == []
    assert str(loaded.bad[0]).startswith(f"{path}:1: CSV needs columns")


def test_dry_run_of_the_shipped_history_prints_every_reading(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = repo / "examples" / "history" / "flood-2025-10.csv"
    rows = len(history.read_text().splitlines()) - 1
    code = main(["feed", "replay", str(history), "--dry-run", "--speed", "3600", "--shift-to-now"])
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert code == 0, err
    assert len(lines) == rows
    first, last = lines[0].split(), lines[-1].split()
    assert (first[0], first[1], first[2]) == ("+0.000s", INGEST_READINGS, "key=dap-cau")
    stamp = Reading.model_validate_json(first[3]).observed_at
    assert abs(stamp - datetime.now(UTC)) < timedelta(minutes=1)
    assert float(last[0].strip("+s")) > 0  # later readings wait their (compressed) turn


def test_negative_speed_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["feed", "replay", "x.csv", "--speed", "-1"])
    assert "--speed" in capsys.readouterr().err


# --- History is not played live; drills carry their clock (issue 15) ------------------


def test_a_backfill_does_not_send_history_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 15: replaying old data sent live warnings. Readings older than the live
    lateness bound are not sent (the pipeline would refuse them too), the replay says
    how many and why, counts them, and exits 1; the recent ones still go."""
    from topics.metrics import Metrics

    FEED_REFUSED = Metrics.default().feed_refused

    now = datetime.now(UTC)
    rows = [
        f"{(now - timedelta(days=400)).isoformat()},dap-cau,water_level_m,6.9",
        f"{(now - timedelta(hours=7)).isoformat()},dap-cau,water_level_m,6.5",
        f"{(now - timedelta(hours=1)).isoformat()},dap-cau,water_level_m,4.1",
        f"{(now - timedelta(minutes=30)).isoformat()},cau-xe,water_level_m,4.1",
    ]
    path = csv_file(tmp_path, rows)
    before = FEED_REFUSED.labels("replay", "historical")._value.get()
    code = main(["feed", "replay", str(path), "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 1
    [sent] = out.splitlines()
    assert Reading.model_validate_json(sent.split()[3]).value == 4.1
    assert "1 not sent" not in err and "2 not sent" not in err and "3 not sent" in err
    assert "2 readings older than the live lateness bound (6 h): not sent" in caplog.text
    assert "canhbao rules backtest" in caplog.text
    assert "unknown station 'cau-xe'" in caplog.text
    assert FEED_REFUSED.labels("replay", "historical")._value.get() == before + 2


def test_a_drill_carries_its_clock_and_needs_a_speed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = csv_file(tmp_path, [row(0, 3.0), row(60, 3.2)])
    assert main(["feed", "replay", str(path), "--dry-run", "--shift-to-now"]) == 2
    assert "--speed" in capsys.readouterr().err
    shifted = plan(read_history([path], WATER).readings, 3600, T0 + timedelta(days=400))
    drill = shifted[1].reading.drill
    assert drill is not None and drill.speed == 3600
    # On the drill's clock, the second reading is due one wall second after the first.
    assert drill.at(drill.origin + timedelta(seconds=1)) == shifted[1].reading.observed_at
    assert all(p.reading.drill is None for p in plan(read_history([path], WATER).readings, 0))
