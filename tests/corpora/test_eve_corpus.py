"""Real Suricata EVE output (``tests/data/corpora/eve``: Suricata's own regression
outputs from real captures, and the records of its EVE documentation; sources and
licences in ``tests/data/README.md``) through the Suricata adapter
(``feeds/suricata.py``): alert, anomaly, dns, flow, tls, http, fileinfo, stats, ldap,
dnp3 and engine events, with UTC offsets -0800, -0600, +0000 and +0100.

Nothing real is refused as a bad line; every line is counted; the times are read with
their offsets; the stats totals become the HTTP request count they should."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from alerting.directory import Directory
from feeds.sink import MemorySink
from feeds.suricata import EveConfig, EveConverter, EveTailer, areas_of, eve_time
from topics.catalogue import DEADLETTER, INGEST_READINGS
from topics.models import Reading

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "data" / "corpora" / "eve"
FILES = sorted(CORPUS.glob("*.json"))
DIRECTORY = Directory.load(REPO / "config" / "geography.yaml", REPO / "config" / "directory.yaml")
CONFIG = EveConfig(areas=areas_of(DIRECTORY))


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_no_real_eve_line_is_refused(path: Path) -> None:
    converter = EveConverter(CONFIG)
    for number, line in enumerate(path.read_bytes().splitlines(), 1):
        out = converter.convert(line)
        assert out.error is None, f"{path.name} line {number}: {out.error}"


def test_every_real_time_is_read_with_its_offset() -> None:
    offsets = set()
    for path in FILES:
        for record in _records(path):
            at = eve_time(record["timestamp"])
            stamp = str(record["timestamp"])
            assert at.isoformat(timespec="microseconds").replace(":", "")[-5:] == stamp[-5:]
            offsets.add(stamp[-5:])
    assert {"-0800", "-0600", "+0000", "+0100"} <= offsets


def test_the_corpus_holds_the_event_types_the_issue_asks_for() -> None:
    types = {str(r["event_type"]) for p in FILES for r in _records(p)}
    assert {"alert", "anomaly", "dns", "flow", "tls", "http", "stats"} <= types


def test_a_real_stats_total_becomes_the_requests_since_the_last_one() -> None:
    """Two real stats records of one sensor: the first total is the baseline, the
    second the count since (here from another capture: a restart, counted from 0)."""
    stats = [
        line
        for path in FILES
        for line in path.read_bytes().splitlines()
        if json.loads(line)["event_type"] == "stats"
    ]
    assert len(stats) == 2
    converter = EveConverter(CONFIG)
    first, second = (converter.convert(line) for line in stats)
    assert first.readings == [] and first.error is None
    totals = [json.loads(s)["stats"]["app_layer"]["tx"]["http"] for s in stats]
    (reading,) = second.readings
    expected = totals[1] - totals[0] if totals[1] >= totals[0] else totals[1]
    assert reading.metric == "http_requests" and reading.value == expected


async def test_the_tailer_reads_every_real_line_and_refuses_none(tmp_path: Path) -> None:
    """The whole corpus as one EVE file, read from the start with the clock just after
    its last event: every line counted, none dead-lettered."""
    eve = tmp_path / "eve.json"
    lines = [line for path in FILES for line in path.read_bytes().splitlines()]
    eve.write_bytes(b"\n".join(lines) + b"\n")
    last = max(eve_time(json.loads(line)["timestamp"]) for line in lines)
    sink = MemorySink()
    tailer = EveTailer(
        eve,
        tmp_path / "state.json",
        sink,
        CONFIG,
        from_start=True,
        clock=lambda: last + timedelta(minutes=1),
    )
    while await tailer.step():
        pass
    tailer.close()
    assert tailer.stats.lines == len(lines)
    assert tailer.stats.rejected == 0 and sink.on(DEADLETTER) == []
    readings = [Reading.model_validate_json(v) for v in sink.on(INGEST_READINGS)]
    # The one reading: the second stats total (the other events are not read, or are
    # alerts of severity 2 and 3), at most history when older than the lateness bound.
    assert len(readings) + tailer.stats.historical == 1
    assert all(isinstance(r.observed_at, datetime) for r in readings)
