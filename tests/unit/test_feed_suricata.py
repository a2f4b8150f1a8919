"""Suricata EVE feed (feeds/suricata.py): alerts to cyber readings and reports, and a
tailer that follows a real file through appends, rotation, truncation and restarts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from feeds.sink import MemorySink
from feeds.suricata import EveConfig, EveConverter, EveTailer, parse_sensors, station_areas
from topics.catalogue import DEADLETTER, INGEST_READINGS, INGEST_REPORTS
from topics.models import DeadLetter, Domain, Reading, Report, Severity

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "tests" / "data" / "feeds" / "eve.json"
ICT = timezone(timedelta(hours=7))
# The tailer's clock: an hour after the sample log's events (they are live data then).
NOW = datetime(2025, 11, 10, 3, 0, tzinfo=ICT)


def clock() -> datetime:
    return NOW


@pytest.fixture(scope="module")
def config() -> EveConfig:
    areas = station_areas(REPO / "config" / "geography.yaml", REPO / "config" / "directory.yaml")
    return EveConfig(areas=areas)


def readings(sink: MemorySink) -> list[Reading]:
    return [Reading.model_validate_json(v) for v in sink.on(INGEST_READINGS)]


def alert(n: int, severity: int = 1, *, minute: int = 0, **extra: object) -> bytes:
    """One EVE alert line; ``n`` is carried in the source port to tell lines apart."""
    at = datetime(2025, 11, 10, 2, minute, 0, tzinfo=ICT) + timedelta(seconds=n)
    record = {
        "timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.%f%z"),
        "flow_id": 1000 + n,
        "event_type": "alert",
        "src_ip": "203.0.113.7",
        "src_port": n,
        "dest_ip": "10.10.1.15",
        "alert": {
            "signature_id": 2024897,
            "signature": "ET EXPLOIT test",
            "severity": severity,
            "category": "Attempted Administrator Privilege Gain",
        },
        **extra,
    }
    return json.dumps(record).encode() + b"\n"


def ports(sink: MemorySink) -> list[int]:
    """Which alert lines (by ``n``) reached the sink, in order: the observed seconds."""
    return [r.observed_at.second for r in readings(sink)]


async def until(what: str, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def tailing(
    eve: Path, state: Path, sink: MemorySink, config: EveConfig, **kw: object
) -> AsyncIterator[EveTailer]:
    kw.setdefault("clock", clock)
    tailer = EveTailer(eve, state, sink, config, poll_interval=0.02, **kw)  # type: ignore[arg-type]
    task = asyncio.create_task(tailer.run())
    try:
        yield tailer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def append(path: Path, *lines: bytes) -> None:
    with open(path, "ab") as f:
        for line in lines:
            f.write(line)


# --- What the EVE records become ------------------------------------------------------


async def test_the_sample_log_becomes_the_readings_the_cyber_rules_count(
    config: EveConfig, tmp_path: Path
) -> None:
    sink = MemorySink()
    tailer = EveTailer(SAMPLE, tmp_path / "state.json", sink, config, from_start=True, clock=clock)
    while await tailer.step():
        pass
    tailer.close()
    got = [(r.station_id, r.metric, r.value, r.source) for r in readings(sink)]
    assert got == [
        # line 2: a severity-1 alert; line 3 (severity 2) is not counted
        ("soc-bac-ninh", "ids_alert_high", 1, "suricata:ids-dc1"),
        # line 4: an HTTP 401, per client address as the brute-force rule groups them
        ("portal-bac-ninh", "failed_login", 1, "203.0.113.7"),
        # lines 6 and 8: HTTP transactions between two stats records
        ("portal-bac-ninh", "http_requests", 1500, "suricata:ids-dc1"),
        # line 9: a severity-1 trojan alert
        ("soc-bac-ninh", "ids_alert_high", 1, "suricata:ids-dc1"),
    ]
    assert all(r.domain is Domain.CYBER for r in readings(sink))
    assert readings(sink)[0].observed_at == datetime(2025, 11, 10, 2, 0, 2, 230117, tzinfo=ICT)
    # The trojan is an intrusion that got in: a report for the commune of the data centre.
    (report,) = [Report.model_validate_json(v) for v in sink.on(INGEST_REPORTS)]
    assert (report.domain, report.category, report.severity) == (
        Domain.CYBER,
        "intrusion",
        Severity.SEVERE,
    )
    assert report.areas == ["bn-kinh-bac"]
    assert "Cobalt Strike" in report.text and "10.10.1.15" in report.text
    # The broken line 7 and the alert without a severity (line 10) are dead-lettered.
    letters = [DeadLetter.model_validate_json(v) for v in sink.on(DEADLETTER)]
    assert [(d.reason.split(": ", 1)[0].rsplit(" ", 2)[-2:]) for d in letters] == [
        ["line", "7"],
        ["line", "10"],
    ]
    assert "not valid JSON" in letters[0].reason
    assert "severity" in letters[1].reason
    assert letters[0].original.startswith(b'{"timestamp":"2025-11-10T02:00:09.7712')
    assert tailer.stats.rejected == 2


def test_sensors_map_to_their_own_stations(config: EveConfig) -> None:
    mapped = EveConfig(sensors=parse_sensors(["ids-dc2=soc-dr"]), areas=config.areas)
    out = EveConverter(mapped).convert(alert(1, host="ids-dc2").rstrip())
    assert [r.station_id for r in out.readings] == ["soc-dr"]
    other = EveConverter(mapped).convert(alert(1, host="ids-dc1").rstrip())
    assert [r.station_id for r in other.readings] == ["soc-bac-ninh"]
    with pytest.raises(ValueError, match="HOST=STATION"):
        parse_sensors(["ids-dc2"])


def test_a_burst_of_one_signature_is_one_report_per_ten_minutes(config: EveConfig) -> None:
    conv = EveConverter(EveConfig(report_sids=frozenset({2024897}), areas=config.areas))
    made = [
        len(conv.convert(alert(n, minute=minute).rstrip()).reports)
        for n, minute in [(1, 0), (2, 0), (3, 9), (4, 11)]
    ]
    assert made == [1, 0, 0, 1]


def test_a_suricata_restart_does_not_make_a_negative_request_count(config: EveConfig) -> None:
    conv = EveConverter(config)

    def stats(total: int, second: int) -> bytes:
        return json.dumps(
            {
                "timestamp": f"2025-11-10T02:00:{second:02d}.000000+0700",
                "event_type": "stats",
                "stats": {"app_layer": {"tx": {"http": total}}},
            }
        ).encode()

    values = [
        [r.value for r in conv.convert(stats(t, i)).readings]
        for i, t in enumerate([1000, 1600, 40])
    ]
    assert values == [[], [600], [40]]


# --- Following the file ---------------------------------------------------------------


async def test_lines_appended_while_running_are_sent_complete_lines_only(
    config: EveConfig, tmp_path: Path
) -> None:
    eve, sink = tmp_path / "eve.json", MemorySink()
    eve.write_bytes(alert(1))
    async with tailing(eve, tmp_path / "state.json", sink, config, from_start=True):
        await until("the first alert", lambda: len(readings(sink)) == 1)
        line = alert(2)
        append(eve, line[:40])  # Suricata is half-way through writing a line
        await asyncio.sleep(0.1)  # a few polls: the half line must not be taken
        assert len(readings(sink)) == 1 and not sink.on(DEADLETTER)
        append(eve, line[40:], alert(3))
        await until("the rest", lambda: len(readings(sink)) == 3)
    assert ports(sink) == [1, 2, 3]
    assert not sink.on(DEADLETTER)


async def test_a_rotation_while_running_loses_nothing_and_repeats_nothing(
    config: EveConfig, tmp_path: Path
) -> None:
    eve, sink = tmp_path / "eve.json", MemorySink()
    eve.write_bytes(alert(1))
    async with tailing(eve, tmp_path / "state.json", sink, config, from_start=True) as tailer:
        await until("the first alert", lambda: len(readings(sink)) == 1)
        # logrotate: rename, the writer still appends to the old file for a moment,
        # then reopens the name as a new file.
        os.rename(eve, tmp_path / "eve.json.1")
        append(tmp_path / "eve.json.1", alert(2), alert(3))
        append(eve, alert(4))
        append(eve, alert(5))
        await until("all five alerts", lambda: len(readings(sink)) >= 5)
        await asyncio.sleep(0.1)
        assert tailer.stats.rotations == 1
    assert ports(sink) == [1, 2, 3, 4, 5]


async def test_a_half_written_last_line_of_a_rotated_file_is_dead_lettered(
    config: EveConfig, tmp_path: Path
) -> None:
    """Suricata died mid-line, then the file was rotated: the half line will never be
    completed, so it is dead-lettered rather than waited for or dropped."""
    eve, sink = tmp_path / "eve.json", MemorySink()
    eve.write_bytes(alert(1) + alert(2)[:30])
    async with tailing(eve, tmp_path / "state.json", sink, config, from_start=True):
        await until("the first alert", lambda: len(readings(sink)) == 1)
        os.rename(eve, tmp_path / "eve.json.1")
        eve.write_bytes(alert(3))
        await until("the alert in the new file", lambda: len(readings(sink)) == 2)
    (letter,) = [DeadLetter.model_validate_json(v) for v in sink.on(DEADLETTER)]
    assert letter.original == alert(2)[:30]
    assert "line 2:" in letter.reason
    assert ports(sink) == [1, 3]


async def test_a_truncated_file_is_read_again_from_its_start(
    config: EveConfig, tmp_path: Path
) -> None:
    eve, sink = tmp_path / "eve.json", MemorySink()
    eve.write_bytes(alert(1) + alert(2))
    async with tailing(eve, tmp_path / "state.json", sink, config, from_start=True) as tailer:
        await until("two alerts", lambda: len(readings(sink)) == 2)
        eve.write_bytes(alert(3))  # copytruncate: same file, shorter
        await until("the alert after the truncation", lambda: len(readings(sink)) == 3)
        assert tailer.stats.truncations == 1
    assert ports(sink) == [1, 2, 3]


async def test_a_restart_resumes_at_the_saved_offset(config: EveConfig, tmp_path: Path) -> None:
    eve, state, sink = tmp_path / "eve.json", tmp_path / "state.json", MemorySink()
    eve.write_bytes(alert(1) + alert(2))
    async with tailing(eve, state, sink, config, from_start=True):
        await until("two alerts", lambda: len(readings(sink)) == 2)
    append(eve, alert(3), b"{broken\n", alert(4))  # written while the tailer is down
    async with tailing(eve, state, sink, config):
        await until("the two new alerts", lambda: len(readings(sink)) == 4)
    assert ports(sink) == [1, 2, 3, 4]
    (letter,) = [DeadLetter.model_validate_json(v) for v in sink.on(DEADLETTER)]
    assert "line 4:" in letter.reason  # line numbers go on counting across the restart
    assert json.loads(state.read_text())["offset"] == eve.stat().st_size


async def test_a_file_rotated_while_stopped_is_finished_before_the_new_one(
    config: EveConfig, tmp_path: Path
) -> None:
    eve, state, sink = tmp_path / "eve.json", tmp_path / "state.json", MemorySink()
    eve.write_bytes(alert(1))
    async with tailing(eve, state, sink, config, from_start=True):
        await until("the first alert", lambda: len(readings(sink)) == 1)
    append(eve, alert(2))
    os.rename(eve, tmp_path / "eve.json.1")
    eve.write_bytes(alert(3))
    async with tailing(eve, state, sink, config):
        await until("alerts 2 and 3", lambda: len(readings(sink)) >= 3)
        await asyncio.sleep(0.1)
    assert ports(sink) == [1, 2, 3]


async def test_without_a_saved_offset_the_tail_starts_at_the_end(
    config: EveConfig, tmp_path: Path
) -> None:
    eve, sink = tmp_path / "eve.json", MemorySink()
    eve.write_bytes(alert(1) + alert(2))  # history from before the feed was started
    async with tailing(eve, tmp_path / "state.json", sink, config):
        await until("a saved offset", lambda: (tmp_path / "state.json").exists())
        append(eve, alert(3))
        await until("the new alert", lambda: len(readings(sink)) == 1)
    assert ports(sink) == [3]


async def test_a_file_that_appears_later_is_read_from_its_start(
    config: EveConfig, tmp_path: Path
) -> None:
    eve, sink = tmp_path / "eve.json", MemorySink()
    async with tailing(eve, tmp_path / "state.json", sink, config):
        await asyncio.sleep(0.1)
        eve.write_bytes(alert(1) + alert(2))
        await until("both alerts", lambda: len(readings(sink)) == 2)
    assert ports(sink) == [1, 2]


class FailingSink(MemorySink):
    """Kafka is down for the first ``failures`` batches."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def send_many(self, messages: list[tuple[str, bytes | None, bytes]]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker unavailable")
        await super().send_many(messages)


async def test_the_offset_is_saved_only_after_kafka_acknowledged(
    config: EveConfig, tmp_path: Path
) -> None:
    eve, state = tmp_path / "eve.json", tmp_path / "state.json"
    eve.write_bytes(alert(1))
    failing = FailingSink(failures=1)
    tailer = EveTailer(eve, state, failing, config, from_start=True, clock=clock)
    with pytest.raises(ConnectionError):
        await tailer.step()
    tailer.close()
    assert json.loads(state.read_text())["offset"] == 0
    sink = MemorySink()
    again = EveTailer(eve, state, sink, config, clock=clock)
    await again.step()
    again.close()
    assert ports(sink) == [1]


# --- An old log read from the start pages nobody (issue 15) ---------------------------


async def test_an_old_log_read_from_the_start_sends_no_history_and_says_so(
    config: EveConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 15: `feed suricata --from-start` on a 2022-2025 EVE log raised live Severe
    IDS warnings dated years ago. Events older than the live lateness bound are not
    sent (the file keeps them), the tailer logs how many and counts them; events of
    the present still go, and one dated far ahead is dead-lettered as a bad line."""
    from topics.metrics import Metrics

    FEED_REFUSED = Metrics.default().feed_refused

    years_later = NOW + timedelta(days=3 * 365)
    live_at = years_later - timedelta(minutes=2)
    live = json.loads(alert(7))
    live["timestamp"] = live_at.strftime("%Y-%m-%dT%H:%M:%S.%f%z")
    ahead = json.loads(alert(8))
    ahead["timestamp"] = "2999-01-01T00:00:00.000000+0000"
    eve = tmp_path / "eve.json"
    old = [alert(n, minute=n) for n in range(3)]
    append(eve, *old, *(json.dumps(r).encode() + b"\n" for r in (live, ahead)))
    sink = MemorySink()
    before = FEED_REFUSED.labels("suricata", "historical")._value.get()
    tailer = EveTailer(
        eve, tmp_path / "state.json", sink, config, from_start=True, clock=lambda: years_later
    )
    with caplog.at_level(logging.WARNING, logger="feeds.suricata"):
        assert await tailer.step()
    assert [r.observed_at for r in readings(sink)] == [live_at]
    assert sink.on(INGEST_REPORTS) == []  # nor the intrusion reports of the old alerts
    [dead] = [DeadLetter.model_validate_json(v) for v in sink.on(DEADLETTER)]
    assert "ahead of the pipeline's clock" in dead.reason and "line 5" in dead.reason
    assert tailer.stats.historical == 3
    assert FEED_REFUSED.labels("suricata", "historical")._value.get() == before + 3
    assert "3 events" in caplog.text and "(lines 1-3) older than 6 h: not sent" in caplog.text


def test_a_feed_for_a_station_the_geography_does_not_know_refuses_to_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from canhbao.cli import main

    code = main(["feed", "suricata", str(tmp_path / "eve.json"), "--sensor", "ids2=soc-nowhere"])
    assert code == 2
    assert "soc-nowhere" in capsys.readouterr().err
