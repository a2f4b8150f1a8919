"""Inbound edges on a real broker: an MQTT gauge (through Debian's mosquitto) and a
Suricata EVE file reach the ingest topics through a real KafkaSink, and what they
produce passes the pipeline's own validation."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiomqtt
import pytest

from feeds.mqtt_bridge import Bridge, BridgeConfig
from feeds.sink import KafkaSink
from feeds.suricata import EveConfig, EveTailer
from pipeline.validate import validate_reading, validate_report
from tests.conftest import Broker
from tests.integration.edges import mosquitto
from tests.integration.helpers import collect, ensure_topics
from topics.catalogue import DEADLETTER, INGEST_READINGS, INGEST_REPORTS
from topics.models import DeadLetter, Reading, Report

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[1] / "data" / "feeds"

CONFIG = BridgeConfig.model_validate(
    {
        "client_id": "canhbao-live-bridge",
        "subscribe": ["tram/#"],
        "mappings": [
            {
                "topic": "tram/dapcau/mucnuoc",
                "station": "dap-cau",
                "domain": "water",
                "metric": "water_level_m",
                "unit": "m",
            }
        ],
    }
)


@pytest.mark.server("mosquitto")  # skipped, with the reason, without it
async def test_an_mqtt_gauge_reading_arrives_on_the_ingest_topic(
    broker: Broker, tmp_path: Path
) -> None:
    await ensure_topics(broker.bootstrap)
    with mosquitto(tmp_path) as port:
        async with KafkaSink(broker.bootstrap) as sink:
            bridge = Bridge(CONFIG, sink, host="127.0.0.1", port=port, backoff=(0.1, 1.0))
            task = asyncio.create_task(bridge.run())
            try:
                await asyncio.wait_for(bridge.subscribed.wait(), 30)
                async with aiomqtt.Client("127.0.0.1", port) as client:
                    await client.publish("tram/dapcau/mucnuoc", b"4.35", qos=1)
                    await client.publish("tram/dap-cau/muc-nuoc", b"4.36", qos=1)
                got = await collect(broker.bootstrap, INGEST_READINGS, lambda v: len(v) >= 1)
                dead = await collect(broker.bootstrap, DEADLETTER, lambda v: len(v) >= 1)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    (raw,) = got
    reading = validate_reading(raw, source_topic=INGEST_READINGS)
    assert isinstance(reading, Reading), reading
    assert (reading.station_id, reading.metric, reading.value) == ("dap-cau", "water_level_m", 4.35)
    (letter,) = [DeadLetter.model_validate_json(v) for v in dead]
    assert letter.source_topic == "mqtt:tram/dap-cau/muc-nuoc"
    assert letter.original == b"4.36"


async def test_suricata_alerts_arrive_as_readings_and_a_report(
    broker: Broker, tmp_path: Path
) -> None:
    await ensure_topics(broker.bootstrap)
    config = EveConfig(areas={"soc-bac-ninh": ["bn-kinh-bac"]})
    async with KafkaSink(broker.bootstrap) as sink:
        # The sample log's hour: its events are live data then, not history.
        sample_hour = datetime(2025, 11, 10, 3, 0, tzinfo=timezone(timedelta(hours=7)))
        tailer = EveTailer(
            DATA / "eve.json",
            tmp_path / "state.json",
            sink,
            config,
            from_start=True,
            clock=lambda: sample_hour,
        )
        while await tailer.step():
            pass
        tailer.close()
    readings = await collect(broker.bootstrap, INGEST_READINGS, lambda v: len(v) >= 4)
    reports = await collect(broker.bootstrap, INGEST_REPORTS, lambda v: len(v) >= 1)
    valid = [validate_reading(v, source_topic=INGEST_READINGS) for v in readings]
    assert all(isinstance(r, Reading) for r in valid), valid
    assert sorted(r.metric for r in valid if isinstance(r, Reading)) == [
        "failed_login",
        "http_requests",
        "ids_alert_high",
        "ids_alert_high",
    ]
    (report,) = [validate_report(v, source_topic=INGEST_REPORTS) for v in reports]
    assert isinstance(report, Report) and report.category == "intrusion"
    assert json.loads((tmp_path / "state.json").read_text())["line"] == 10
