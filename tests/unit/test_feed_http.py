"""The HTTP ingest API over real HTTP on 127.0.0.1, producing into a MemorySink."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from alerting.directory import Directory
from canhbao.cli import main
from feeds.apikeys import KeyFileError, KeyStore, Source, add_source, hash_key, read_key_file
from feeds.http_api import IngestAPI
from feeds.sink import MemorySink
from topics.catalogue import DEADLETTER, INGEST_READINGS, INGEST_REPORTS
from topics.metrics import Metrics
from topics.models import DeadLetter, Domain, Reading

GAUGE_KEY = "gauge-key-0123456789abcdefghijklmnopqrstuvwxyz"
ANY_KEY = "any-key-0123456789abcdefghijklmnopqrstuvwxyz"
NETWORK_KEY = "network-key-0123456789abcdefghijklmnopqrstuvwxyz"
MAX_BODY = 4096
# The API's clock: five minutes after the readings below were observed.
NOW = datetime(2025, 10, 7, 1, 5, tzinfo=UTC)

Client = TestClient[Any, Any]


def reading(station: str = "dap-cau", value: Any = 4.2, **extra: Any) -> dict[str, Any]:
    return {
        "station_id": station,
        "domain": "water",
        "metric": "water_level_m",
        "value": value,
        "observed_at": "2025-10-07T08:00:00+07:00",
        **extra,
    }


def report(report_id: str = "r-1") -> dict[str, Any]:
    return {
        "report_id": report_id,
        "domain": "water",
        "category": "flooding",
        "severity": "Moderate",
        "areas": ["bn-vu-ninh", "bn-kinh-bac"],
        "observed_at": "2025-10-07T08:00:00+07:00",
        "reporter": "Trần Văn A",
    }


def keystore() -> KeyStore:
    return KeyStore(
        [
            Source(
                id="gauges",
                key_sha256=hash_key(GAUGE_KEY),
                domains=[Domain.WATER],
                stations=["dap-cau", "luc-nam"],
            ),
            Source(id="agency", key_sha256=hash_key(ANY_KEY)),
            # A national network's gateway: it may add stations, so readings from
            # stations not in the geography are held for it, not refused.
            Source(id="network", key_sha256=hash_key(NETWORK_KEY), hold_unknown_stations=True),
        ]
    )


ClientFactory = Callable[..., Any]


@pytest.fixture
async def serve(directory: Directory) -> AsyncIterator[ClientFactory]:
    """Start the API on a free port; returns (client, sink)."""
    clients: list[Client] = []

    async def start(
        sink: Any = None, keys: KeyStore | None = None, now: datetime = NOW, **limits: int
    ) -> tuple[Client, Any]:
        sink = sink if sink is not None else MemorySink()
        limits.setdefault("max_body", MAX_BODY)
        api = IngestAPI(sink, keys or keystore(), directory=directory, clock=lambda: now, **limits)
        client: Client = TestClient(TestServer(api.app(), host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client, sink

    yield start
    for c in clients:
        await c.close()


def bearer(key: str = GAUGE_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_one_reading_is_accepted_keyed_and_stamped_with_its_source(
    serve: ClientFactory,
) -> None:
    client, sink = await serve()
    resp = await client.post("/v1/readings", json=reading(source="someone-else"), headers=bearer())
    assert resp.status == 202, await resp.text()
    assert await resp.json() == {"accepted": 1, "topic": INGEST_READINGS, "source": "gauges"}
    [(topic, key, value)] = sink.sent
    assert (topic, key) == (INGEST_READINGS, b"dap-cau")
    sent = Reading.model_validate_json(value)
    assert sent.source == "gauges"  # the key decides, not the client's claim
    assert sent.value == 4.2


async def test_a_batch_is_accepted_in_order_with_the_x_api_key_header(
    serve: ClientFactory,
) -> None:
    client, sink = await serve()
    batch = [reading(value=v) for v in (4.1, 4.2)] + [reading("luc-nam", 3.0)]
    resp = await client.post("/v1/readings", json=batch, headers={"X-API-Key": GAUGE_KEY})
    assert resp.status == 202
    assert (await resp.json())["accepted"] == 3
    assert [k for _, k, _ in sink.sent] == [b"dap-cau", b"dap-cau", b"luc-nam"]
    assert [json.loads(v)["value"] for v in sink.on(INGEST_READINGS)] == [4.1, 4.2, 3.0]


async def test_an_invalid_item_rejects_the_whole_batch_and_names_index_and_field(
    serve: ClientFactory,
) -> None:
    client, sink = await serve()
    bad_station = reading()
    del bad_station["station_id"]
    batch = [reading(), reading(value="high"), reading(), bad_station]
    resp = await client.post("/v1/readings", json=batch, headers=bearer())
    assert resp.status == 400
    body = await resp.json()
    assert [(i["index"], [e["field"] for e in i["errors"]]) for i in body["items"]] == [
        (1, ["value"]),
        (3, ["station_id"]),
    ]
    assert "valid number" in body["items"][0]["errors"][0]["message"]
    assert sink.sent == []  # all or nothing: the good items were not produced either


async def test_invalid_json_is_400_with_the_position(serve: ClientFactory) -> None:
    client, sink = await serve()
    resp = await client.post(
        "/v1/readings",
        data=b'[{"station_id": "dap-cau",\n  "value": 4.2,,}]',
        headers={**bearer(), "Content-Type": "application/json"},
    )
    assert resp.status == 400
    body = await resp.json()
    assert (body["error"], body["line"], body["column"]) == ("invalid JSON", 2, 16)
    assert sink.sent == []


async def test_a_missing_or_unknown_key_is_401(serve: ClientFactory) -> None:
    client, sink = await serve()
    for headers in ({}, bearer("not-a-key"), {"Authorization": f"Basic {GAUGE_KEY}"}):
        resp = await client.post("/v1/readings", json=reading(), headers=headers)
        assert resp.status == 401, headers
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert sink.sent == []


async def test_readings_outside_the_sources_domains_or_stations_are_403(
    serve: ClientFactory,
) -> None:
    client, sink = await serve()
    air = {**reading("bn-aqi-yen-phong"), "domain": "environment", "metric": "vn_aqi"}
    batch = [reading(), reading("pha-lai"), air]
    resp = await client.post("/v1/readings", json=batch, headers=bearer())
    assert resp.status == 403
    body = await resp.json()
    messages = {i["index"]: i["errors"][0]["message"] for i in body["items"]}
    assert set(messages) == {1, 2}
    assert "'pha-lai'" in messages[1]
    assert "'environment'" in messages[2]
    # A station-bound sensor key may not post reports; an unrestricted one may.
    resp = await client.post("/v1/reports", json=report(), headers=bearer())
    assert resp.status == 403
    assert sink.sent == []
    resp = await client.post("/v1/readings", json=batch, headers=bearer(ANY_KEY))
    assert resp.status == 202


async def test_reports_go_to_their_topic_keyed_by_the_first_area(serve: ClientFactory) -> None:
    client, sink = await serve()
    resp = await client.post(
        "/v1/reports", json=[report("r-1"), report("r-2")], headers=bearer(ANY_KEY)
    )
    assert resp.status == 202
    assert [(t, k) for t, k, _ in sink.sent] == [(INGEST_REPORTS, b"bn-vu-ninh")] * 2


def padded(size: int) -> bytes:
    """A valid one-reading body of exactly ``size`` bytes (JSON allows trailing spaces)."""
    body = json.dumps(reading()).encode()
    return body + b" " * (size - len(body))


async def test_body_size_limit_at_the_boundary(serve: ClientFactory) -> None:
    client, sink = await serve()
    headers = {**bearer(), "Content-Type": "application/json"}
    resp = await client.post("/v1/readings", data=padded(MAX_BODY), headers=headers)
    assert resp.status == 202
    resp = await client.post("/v1/readings", data=padded(MAX_BODY + 1), headers=headers)
    assert resp.status == 413
    assert (await resp.json())["limit"] == MAX_BODY

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the server must count
        body = padded(MAX_BODY + 1)
        yield body[:1000]
        yield body[1000:]

    resp = await client.post("/v1/readings", data=chunks(), headers=headers)
    assert resp.status == 413
    assert len(sink.sent) == 1


async def test_too_many_items_is_413(serve: ClientFactory) -> None:
    client, sink = await serve(max_items=3, max_body=1 << 20)
    resp = await client.post("/v1/readings", json=[reading()] * 4, headers=bearer())
    assert resp.status == 413
    assert sink.sent == []


async def test_non_json_content_type_is_415(serve: ClientFactory) -> None:
    client, sink = await serve()
    resp = await client.post(
        "/v1/readings",
        data=json.dumps(reading()),
        headers={**bearer(), "Content-Type": "text/plain"},
    )
    assert resp.status == 415
    assert sink.sent == []


class DownSink(MemorySink):
    async def send_many(self, messages: list[tuple[str, bytes | None, bytes]]) -> None:
        raise ConnectionError("broker unreachable")


async def test_an_unacknowledged_batch_is_503_so_the_client_resends(serve: ClientFactory) -> None:
    client, _ = await serve(sink=DownSink())
    resp = await client.post("/v1/readings", json=[reading()], headers=bearer())
    assert resp.status == 503
    assert resp.headers["Retry-After"]


async def test_openapi_document_describes_both_endpoints(serve: ClientFactory) -> None:
    client, _ = await serve()
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"].startswith("3.1")
    for path in ("/v1/readings", "/v1/reports"):
        op = doc["paths"][path]["post"]
        assert {"202", "400", "401", "403", "413"} <= set(op["responses"])
        assert op["security"]
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert "station_id" in doc["components"]["schemas"]["Reading"]["required"]
    # Every reference points at a schema the document defines.
    refs = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                refs.add(node["$ref"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    defined = {f"#/components/schemas/{name}" for name in doc["components"]["schemas"]}
    assert refs and refs <= defined


async def test_healthz(serve: ClientFactory) -> None:
    client, _ = await serve()
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert (await resp.json())["status"] == "ok"


def test_keys_add_prints_the_key_once_and_stores_only_its_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys.yaml"
    argv = ["feed", "keys", "add", "tnmt-gauges", "--keys", str(path), "--domain", "water"]
    assert main(argv) == 0
    key = capsys.readouterr().out.strip()
    assert len(key) >= 43  # 32 random bytes, base64url
    text = path.read_text()
    assert key not in text
    assert hash_key(key) in text
    [source] = read_key_file(path).sources
    assert (source.id, source.domains) == ("tnmt-gauges", ["water"])

    assert main(["feed", "keys", "list", "--keys", str(path)]) == 0
    listed = capsys.readouterr().out
    assert "tnmt-gauges" in listed
    assert key not in listed
    assert hash_key(key) not in listed
    assert main(argv) == 2  # the same source twice is refused, not silently replaced


async def test_a_new_or_rotated_key_works_without_a_restart(
    serve: ClientFactory, tmp_path: Path
) -> None:
    path = tmp_path / "keys.yaml"
    old = add_source(path, "gauges", stations=["dap-cau"])
    client, sink = await serve(keys=KeyStore.load(path))
    assert (await client.post("/v1/readings", json=reading(), headers=bearer(old))).status == 202
    new = add_source(path, "gauges", rotate=True)
    assert (await client.post("/v1/readings", json=reading(), headers=bearer(old))).status == 401
    resp = await client.post("/v1/readings", json=reading("luc-nam"), headers=bearer(new))
    assert resp.status == 403  # the rotated key kept the source's limits
    assert (await client.post("/v1/readings", json=reading(), headers=bearer(new))).status == 202
    assert len(sink.sent) == 2


def test_the_shipped_sample_key_file_is_marked_and_limited(repo: Path) -> None:
    store = KeyStore.load(repo / "config" / "api_keys.yaml")
    [demo] = store.sources
    assert demo.sample
    assert store.authenticate("canhbao-demo-key-SAMPLE-do-not-use") == demo
    assert demo.refusal(Domain.WATER, "dap-cau") is None
    assert demo.refusal(Domain.WATER, "cau-xe") is not None
    assert demo.refusal(Domain.WATER, None) is not None  # no reports
    assert demo.refusal(Domain.HEALTH, "dap-cau") is not None


# --- What the pipeline would refuse is refused here, with the field (issue 15) --------


def refusals(body: dict[str, Any]) -> dict[int, dict[str, str]]:
    return {i["index"]: {e["field"]: e["message"] for e in i["errors"]} for i in body["items"]}


async def test_far_future_and_absurd_times_are_400_and_cannot_silence_a_station(
    serve: ClientFactory,
) -> None:
    """Issue 15: fuel-bac-ninh at 2999-01-01 was accepted and every later reading was
    then out of order. Far-future, implausibly old and day-ahead times are refused
    with the field; the readings at the present then go through."""
    client, sink = await serve()
    fuel = {"station_id": "fuel-bac-ninh", "domain": "energy", "metric": "fuel_reserve_days"}
    stamps = [
        "2999-01-01T00:00:00Z",
        "9999-12-31T00:00:00Z",
        "0001-01-01T00:00:00Z",
        "1900-01-01T00:00:00Z",
        (NOW + timedelta(days=1)).isoformat(),
    ]
    for at in stamps:
        resp = await client.post(
            "/v1/readings", json={**fuel, "value": 20, "observed_at": at}, headers=bearer(ANY_KEY)
        )
        assert resp.status == 400, at
        [problem] = refusals(await resp.json())[0].items()
        assert problem[0] == "observed_at"
        assert ("ahead of the pipeline's clock" in problem[1]) or ("plausible" in problem[1])
    assert sink.sent == []
    # A few minutes of clock drift is fine.
    for value, minutes in ((12, -3), (8, -2), (4, 4)):
        at = (NOW + timedelta(minutes=minutes)).isoformat()
        resp = await client.post(
            "/v1/readings",
            json={**fuel, "value": value, "observed_at": at},
            headers=bearer(ANY_KEY),
        )
        assert resp.status == 202, await resp.text()
    assert [json.loads(v)["value"] for v in sink.on(INGEST_READINGS)] == [12, 8, 4]


async def test_history_is_refused_and_the_api_says_why(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 15: replaying old data must never page anyone; the API refuses readings
    older than the live lateness bound as history, says so and counts it."""
    client, sink = await serve(now=NOW + timedelta(days=400))
    before = Metrics.default().feed_refused.labels("http", "historical")._value.get()
    with caplog.at_level(logging.WARNING, logger="feeds.http_api"):
        resp = await client.post("/v1/readings", json=[reading(), reading()], headers=bearer())
    assert resp.status == 400
    body = await resp.json()
    assert "2 historical" in body["error"]
    assert "backtest" in body["detail"]
    message = refusals(body)[0]["observed_at"]
    assert "old" in message and "live lateness bound of 6 h" in message
    assert Metrics.default().feed_refused.labels("http", "historical")._value.get() == before + 2
    assert "2 historical" in caplog.text
    assert sink.sent == []


async def test_unknown_stations_and_readings_that_do_not_fit_their_station_are_400(
    serve: ClientFactory,
) -> None:
    client, sink = await serve()
    batch = [
        reading(),
        reading("cau-xe"),  # no such station
        {**reading(), "metric": "rain_mm"},  # Đáp Cầu measures the river level
        {**reading(), "domain": "health"},  # ... in the water domain
        reading(area="nowhere-commune"),
        reading(area="bn-luc-nam"),  # a real commune Đáp Cầu does not report for
    ]
    resp = await client.post("/v1/readings", json=batch, headers=bearer(ANY_KEY))
    assert resp.status == 400
    got = refusals(await resp.json())
    assert set(got) == {1, 2, 3, 4, 5}
    assert "unknown station 'cau-xe'" in got[1]["station_id"]
    assert "water_level_m, not rain_mm" in got[2]["metric"]
    assert "water, not health" in got[3]["domain"]
    assert "unknown commune 'nowhere-commune'" in got[4]["area"]
    assert "does not report for commune 'bn-luc-nam'" in got[5]["area"]
    assert sink.sent == []


async def test_a_report_for_an_unknown_commune_is_400(serve: ClientFactory) -> None:
    """Issue 15: areas ["nowhere-commune"] became a Severe warning for 'nowhere-commune'."""
    client, sink = await serve()
    bad = {**report(), "areas": ["bn-vu-ninh", "nowhere-commune"]}
    resp = await client.post("/v1/reports", json=[report(), bad], headers=bearer(ANY_KEY))
    assert resp.status == 400
    got = refusals(await resp.json())
    assert list(got) == [1]
    assert "unknown commune 'nowhere-commune'" in got[1]["areas.1"]
    assert sink.sent == []


async def test_a_drill_clock_is_not_accepted_from_the_api(serve: ClientFactory) -> None:
    client, sink = await serve()
    drill = {"origin": NOW.isoformat(), "start": "2999-01-01T00:00:00Z", "speed": 1000}
    resp = await client.post("/v1/readings", json=reading(drill=drill), headers=bearer())
    assert resp.status == 400
    assert "drill" in refusals(await resp.json())[0]
    assert sink.sent == []


async def test_a_source_that_may_add_stations_gets_unknown_ones_held_not_evaluated(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client, sink = await serve()
    batch = [reading(), reading("tram-moi-01"), reading("tram-moi-01", 4.3)]
    with caplog.at_level(logging.WARNING, logger="feeds.http_api"):
        resp = await client.post("/v1/readings", json=batch, headers=bearer(NETWORK_KEY))
    assert resp.status == 202, await resp.text()
    body = await resp.json()
    assert body["accepted"] == 1
    assert [(h["index"], h["station_id"]) for h in body["held"]] == [
        (1, "tram-moi-01"),
        (2, "tram-moi-01"),
    ]
    assert "unknown station 'tram-moi-01'" in body["held"][0]["reason"]
    # Only the known station's reading goes to the pipeline; the others are kept whole
    # on the dead-letter topic (stage hold), ready to replay once the station is added.
    assert [Reading.model_validate_json(v).station_id for v in sink.on(INGEST_READINGS)] == [
        "dap-cau"
    ]
    held = [DeadLetter.model_validate_json(v) for v in sink.on(DEADLETTER)]
    assert [(d.stage, d.source_topic, d.key) for d in held] == [
        ("hold", INGEST_READINGS, b"tram-moi-01")
    ] * 2
    assert Reading.model_validate_json(held[1].original).value == 4.3
    assert Reading.model_validate_json(held[0].original).source == "network"
    assert "tram-moi-01" in caplog.text and "held 2 readings" in caplog.text
    # Other sources are refused as before: nothing is evaluated from an unknown station.
    resp = await client.post("/v1/readings", json=batch, headers=bearer(ANY_KEY))
    assert resp.status == 400


async def test_the_openapi_document_does_not_offer_a_drill_clock(serve: ClientFactory) -> None:
    client, _ = await serve()
    doc = await (await client.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    assert "drill" not in schemas["Reading"]["properties"]
    assert "drill" not in schemas["Report"]["properties"]
    assert "held" in schemas["Accepted"]["properties"]


def test_keys_add_can_let_a_source_add_stations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys.yaml"
    argv = ["feed", "keys", "add", "kttv", "--keys", str(path), "--hold-unknown-stations"]
    assert main(argv) == 0
    [source] = read_key_file(path).sources
    assert source.hold_unknown_stations
    add_source(path, "kttv", rotate=True)  # a rotation keeps it
    assert read_key_file(path).sources[0].hold_unknown_stations
    # A source limited to its stations cannot add any.
    with pytest.raises(KeyFileError, match="limited to its stations"):
        add_source(path, "gauges", stations=["dap-cau"], hold_unknown_stations=True)
