"""MQTT bridge (feeds/mqtt_bridge.py) against Debian's mosquitto on 127.0.0.1: topics and
payloads become readings, bad messages are dead-lettered, and nothing is lost when the
MQTT broker or Kafka goes away for a moment. Without mosquitto these tests are skipped
with the reason (tests/servers.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiomqtt
import pytest

from canhbao.broker import free_port
from feeds.mqtt_bridge import (
    Bridge,
    BridgeConfig,
    ConfigError,
    Converter,
    Rejection,
    load_config,
)
from feeds.sink import MemorySink
from tests.servers import mosquitto, start_mosquitto
from topics.catalogue import DEADLETTER, INGEST_READINGS
from topics.models import DeadLetter, Domain, Reading

REPO = Path(__file__).resolve().parents[2]
ICT = timezone(timedelta(hours=7))

CONFIG = BridgeConfig.model_validate(
    {
        "client_id": "canhbao-test-bridge",
        "subscribe": ["tram/#"],
        "mappings": [
            {
                "topic": "tram/dapcau/mucnuoc",
                "station": "dap-cau",
                "domain": "water",
                "metric": "water_level_m",
                "unit": "m",
            },
            {"topic": "sensors/{domain}/{station}/{metric}"},
        ],
    }
)


def readings(sink: MemorySink) -> list[Reading]:
    return [Reading.model_validate_json(v) for v in sink.on(INGEST_READINGS)]


def letters(sink: MemorySink) -> list[DeadLetter]:
    return [DeadLetter.model_validate_json(v) for v in sink.on(DEADLETTER)]


async def until(what: str, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
def mqtt_port(tmp_path: Path) -> Iterator[int]:
    with mosquitto(tmp_path) as port:
        yield port


@contextlib.asynccontextmanager
async def bridged(
    port: int, sink: MemorySink, config: BridgeConfig = CONFIG
) -> AsyncIterator[Bridge]:
    bridge = Bridge(config, sink, host="127.0.0.1", port=port, backoff=(0.05, 0.5))
    task = asyncio.create_task(bridge.run())
    try:
        await asyncio.wait_for(bridge.subscribed.wait(), 15)
        yield bridge
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def publish(port: int, *messages: tuple[str, bytes]) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1)


async def test_a_bare_number_on_a_gauge_topic_is_a_reading_observed_on_arrival(
    mqtt_port: int,
) -> None:
    sink = MemorySink()
    async with bridged(mqtt_port, sink):
        before = datetime.now(ICT)
        await publish(mqtt_port, ("tram/dapcau/mucnuoc", b"4.35"))
        await until("the reading", lambda: len(readings(sink)) == 1)
    (r,) = readings(sink)
    assert (r.station_id, r.domain, r.metric, r.value, r.unit) == (
        "dap-cau",
        Domain.WATER,
        "water_level_m",
        4.35,
        "m",
    )
    assert before - timedelta(seconds=1) <= r.observed_at <= datetime.now(ICT)
    assert r.source == "mqtt:tram/dapcau/mucnuoc"
    assert [k for t, k, _ in sink.sent] == [b"dap-cau"]  # keyed by station, as the topic is


async def test_a_json_payload_on_a_general_topic_keeps_its_own_time_and_unit(
    mqtt_port: int,
) -> None:
    sink = MemorySink()
    observed = datetime.now(ICT).replace(microsecond=0) - timedelta(minutes=10)
    payload = {"value": 182, "observed_at": observed.isoformat(), "unit": "VN_AQI"}
    async with bridged(mqtt_port, sink):
        await publish(
            mqtt_port,
            ("sensors/environment/bn-aqi-yen-phong/vn_aqi", json.dumps(payload).encode()),
        )
        await until("the reading", lambda: len(readings(sink)) == 1)
    (r,) = readings(sink)
    assert (r.station_id, r.domain, r.metric, r.value, r.unit) == (
        "bn-aqi-yen-phong",
        Domain.ENVIRONMENT,
        "vn_aqi",
        182,
        "VN_AQI",
    )
    assert r.observed_at == observed


async def test_bad_messages_are_dead_lettered_with_topic_and_reason(
    mqtt_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    sink = MemorySink()
    bad = [
        ("tram/unknown/mucnuoc", b"4.1"),
        ("tram/dapcau/mucnuoc", b"cao"),
        ("tram/dapcau/mucnuoc", b'{"value": "cao"}'),
        ("tram/dapcau/mucnuoc", b"NaN"),
        ("tram/dapcau/mucnuoc", b'{"value": 4.1, "observed_at": "2025-11-10T08:00:00"}'),
        ("sensors/weather/dap-cau/water_level_m", b"4.1"),
        # A gateway flushing last year's buffer, and a clock in the far future.
        ("tram/dapcau/mucnuoc", b'{"value": 6.9, "observed_at": "2025-11-10T08:00:00+07:00"}'),
        ("tram/dapcau/mucnuoc", b'{"value": 4.1, "observed_at": "2999-01-01T00:00:00Z"}'),
    ]
    async with bridged(mqtt_port, sink) as bridge:
        await publish(mqtt_port, *bad, ("tram/dapcau/mucnuoc", b"4.2"))
        await until("all nine", lambda: len(sink.sent) == 9)
    assert [r.value for r in readings(sink)] == [4.2]  # the good one still got through
    got = letters(sink)
    assert [d.source_topic for d in got] == [f"mqtt:{t}" for t, _ in bad]
    assert [d.original for d in got] == [p for _, p in bad]
    reasons = [d.reason for d in got]
    assert "no mapping" in reasons[0]
    assert "neither a number nor a JSON object" in reasons[1]
    assert "value" in reasons[2]
    assert "finite" in reasons[3]
    assert "observed_at" in reasons[4] and "timezone" in reasons[4]
    assert "domain" in reasons[5]
    assert "history" in reasons[6] and "live lateness bound" in reasons[6]
    assert "ahead of the pipeline's clock" in reasons[7]
    assert bridge.stats.rejected == 8 and bridge.stats.sent == 1
    assert "tram/unknown/mucnuoc" in caplog.text


@pytest.mark.server("mosquitto")
async def test_the_bridge_reconnects_when_the_mqtt_broker_comes_back(tmp_path: Path) -> None:
    port = free_port()
    broker = start_mosquitto(tmp_path, port)
    sink = MemorySink()
    try:
        async with bridged(port, sink) as bridge:
            broker.terminate()
            broker.wait(10)
            await until("the bridge to notice", lambda: not bridge.subscribed.is_set())
            broker = start_mosquitto(tmp_path, port)
            await asyncio.wait_for(bridge.subscribed.wait(), 15)
            await publish(port, ("tram/dapcau/mucnuoc", b"4.4"))
            await until("the reading", lambda: len(readings(sink)) == 1)
            assert bridge.stats.reconnects >= 1
    finally:
        broker.terminate()
        broker.wait(10)


async def test_readings_published_while_the_bridge_is_down_are_not_lost(mqtt_port: int) -> None:
    sink = MemorySink()
    async with bridged(mqtt_port, sink):
        pass  # the persistent session (client id, QoS 1 subscription) now exists
    await publish(mqtt_port, ("tram/dapcau/mucnuoc", b"4.5"), ("tram/dapcau/mucnuoc", b"4.6"))
    async with bridged(mqtt_port, sink):
        await until("both readings", lambda: len(readings(sink)) == 2)
    assert [r.value for r in readings(sink)] == [4.5, 4.6]


class FlakySink(MemorySink):
    """Kafka refuses the first ``failures`` messages."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("Kafka unavailable")
        await super().send(topic, key, value)


async def test_a_message_kafka_did_not_take_is_delivered_again(mqtt_port: int) -> None:
    sink = FlakySink(failures=1)
    async with bridged(mqtt_port, sink) as bridge:
        await publish(mqtt_port, ("tram/dapcau/mucnuoc", b"4.7"))
        await until("the reading, on the second try", lambda: len(readings(sink)) == 1)
        assert bridge.stats.reconnects >= 1
    assert [r.value for r in readings(sink)] == [4.7]


# --- The config file ------------------------------------------------------------------


def test_the_shipped_config_maps_legacy_and_general_topics() -> None:
    conv = Converter(load_config(REPO / "config" / "mqtt_bridge.yaml"))
    now = datetime(2025, 11, 10, 2, 0, tzinfo=ICT)
    legacy = conv.convert("tram/dapcau/mucnuoc", b"4.35", now)
    general = conv.convert("sensors/geology/sm-son-dong/soil_moisture_pct", b"41", now)
    rain = conv.convert("mua/rg-son-dong", b"12.5", now)
    assert isinstance(legacy, Reading) and isinstance(general, Reading)
    assert isinstance(rain, Reading)
    assert (legacy.station_id, legacy.metric) == ("dap-cau", "water_level_m")
    assert (general.station_id, general.domain, general.metric) == (
        "sm-son-dong",
        Domain.GEOLOGY,
        "soil_moisture_pct",
    )
    assert (rain.station_id, rain.domain, rain.metric) == ("rg-son-dong", Domain.WATER, "rain_mm")
    # The wider filters cover every mapping: one subscription each, no duplicates.
    assert conv.filters() == ["tram/#", "mua/#", "sensors/#"]


def test_overlapping_filters_are_subscribed_once() -> None:
    config = BridgeConfig.model_validate(
        {
            "subscribe": ["tram/+/mucnuoc"],
            "mappings": [
                {
                    "topic": "tram/dapcau/mucnuoc",
                    "station": "dap-cau",
                    "domain": "water",
                    "metric": "water_level_m",
                },
                {"topic": "tram/{station}/{metric}", "domain": "water"},
                {"topic": "sensors/{domain}/{station}/{metric}"},
                {"topic": "sensors/{domain}/{station}/{metric}", "area": "bn-vu-ninh"},
            ],
        }
    )
    assert Converter(config).filters() == ["tram/+/+", "sensors/+/+/+"]


@pytest.mark.parametrize(
    ("mapping", "problem"),
    [
        ({"topic": "a/{station}", "domain": "water"}, "metric"),
        ({"topic": "a/{sensor}/{metric}", "domain": "water"}, "{sensor}"),
        ({"topic": "a/{station}", "station": "x", "domain": "water", "metric": "m"}, "both"),
        ({"topic": "a/x{station}", "domain": "water", "metric": "m"}, "whole level"),
        ({"topic": "a/x", "station": "s", "domain": "weather", "metric": "m"}, "domain"),
    ],
)
def test_a_wrong_mapping_is_refused_with_the_file_and_the_reason(
    tmp_path: Path, mapping: dict[str, str], problem: str
) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(json.dumps({"mappings": [mapping]}))
    with pytest.raises(ConfigError, match=r"bridge\.yaml") as info:
        load_config(path)
    assert problem in str(info.value)


def test_a_reading_too_old_or_too_far_ahead_is_not_sent_but_kept_with_the_reason() -> None:
    """Issue 15: history never raises a live warning, whichever adapter it comes
    through; the bridge dead-letters it (the MQTT broker forgets acknowledged messages)."""
    conv = Converter(load_config(REPO / "config" / "mqtt_bridge.yaml"))
    now = datetime(2026, 11, 10, 2, 0, tzinfo=ICT)
    cases = {
        "2025-11-10T02:00:00+07:00": ("historical", "history"),
        "2026-11-10T02:30:00+07:00": ("future", "ahead"),
        "1970-01-01T00:00:00Z": ("implausible", "plausible"),
    }
    for stamp, (code, word) in cases.items():
        payload = json.dumps({"value": 4.1, "observed_at": stamp}).encode()
        got = conv.convert("tram/dapcau/mucnuoc", payload, now)
        assert isinstance(got, Rejection), stamp
        assert got.code == code and word in got.reason
        assert got.errors[0].startswith("observed_at:")
    recent = json.dumps({"value": 4.1, "observed_at": "2026-11-10T01:30:00+07:00"}).encode()
    assert isinstance(conv.convert("tram/dapcau/mucnuoc", recent, now), Reading)
