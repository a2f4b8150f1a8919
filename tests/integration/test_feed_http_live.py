"""The HTTP ingest API on a real broker: what it accepts (202) is on
``canhbao.ingest.readings``, keyed by station, stamped with the sender, and passes the
pipeline's own validation."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer

from alerting.directory import Directory
from feeds.apikeys import KeyStore, Source, hash_key
from feeds.http_api import IngestAPI
from feeds.sink import KafkaSink
from pipeline.validate import validate_reading
from tests.conftest import Broker
from tests.integration.helpers import REPO
from topics.admin import create_topics
from topics.catalogue import INGEST_READINGS
from topics.models import Reading

pytestmark = pytest.mark.integration

KEY = "live-test-key-0123456789abcdefghijklmnopqrstuvwxyz"
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)


def reading(station: str, value: float, hour: int) -> dict[str, Any]:
    return {
        "station_id": station,
        "domain": "water",
        "metric": "water_level_m",
        "value": value,
        "observed_at": (T0 + timedelta(hours=hour)).isoformat(),
        "source": "spoofed",
    }


async def read_back(bootstrap: str, count: int, timeout: float = 60) -> list[tuple[bytes, bytes]]:
    consumer = AIOKafkaConsumer(
        INGEST_READINGS, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < count:
            assert time.monotonic() < deadline, f"only {len(records)} of {count} records arrived"
            batch = await consumer.getmany(timeout_ms=500)
            for part in batch.values():
                records += [(r.key or b"", r.value or b"") for r in part]
    finally:
        await consumer.stop()
    return records


async def test_posted_readings_are_on_the_ingest_topic(broker: Broker) -> None:
    await create_topics(broker.bootstrap, default_partitions=3)
    keys = KeyStore([Source(id="tnmt-gauges", key_sha256=hash_key(KEY))])
    batch = [reading("dap-cau", 4.1, 1), reading("luc-nam", 3.0, 1), reading("dap-cau", 4.3, 2)]
    directory = Directory.load(
        REPO / "config" / "geography.yaml", REPO / "config" / "directory.yaml"
    )
    async with KafkaSink(broker.bootstrap) as sink:
        api = IngestAPI(sink, keys, directory=directory)
        client = TestClient(TestServer(api.app(), host="127.0.0.1"))
        await client.start_server()
        try:
            resp = await client.post(
                "/v1/readings", json=batch, headers={"Authorization": f"Bearer {KEY}"}
            )
            assert resp.status == 202, await resp.text()
            bad = await client.post(
                "/v1/readings", json=[{"station_id": "x"}], headers={"X-API-Key": KEY}
            )
            assert bad.status == 400
            # Issue 15: far-future and historical readings, and one from an unknown
            # station, are refused with the field; nothing of the batch is produced.
            refused = [
                {**reading("dap-cau", 4.4, 3), "observed_at": "2999-01-01T00:00:00Z"},
                {**reading("dap-cau", 4.4, 3), "observed_at": "2022-01-01T00:00:00Z"},
                reading("cau-xe", 4.4, 3),
            ]
            bad = await client.post("/v1/readings", json=refused, headers={"X-API-Key": KEY})
            assert bad.status == 400
            fields = [i["errors"][0]["field"] for i in (await bad.json())["items"]]
            assert fields == ["observed_at", "observed_at", "station_id"]
        finally:
            await client.close()

    records = await read_back(broker.bootstrap, 3)
    assert len(records) == 3  # the refused batch produced nothing
    readings = []
    for key, value in records:
        result = validate_reading(value, source_topic=INGEST_READINGS, key=key)
        assert isinstance(result, Reading), result  # key matches station_id, schema valid
        readings.append(result)
    assert {r.source for r in readings} == {"tnmt-gauges"}
    # Per station, in the order they were sent (one station, one partition).
    dap_cau = [r.value for r in readings if r.station_id == "dap-cau"]
    assert dap_cau == [4.1, 4.3]
