"""The console's read-only pages (console/pages/): the area map's GeoJSON and levels,
the rules in force, health, indicators, the record's API mounted in the console and
its OpenAPI document; against a real record (SQLite) and in-memory Kafka answers."""

from __future__ import annotations

import dataclasses
import itertools
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from alerting.directory import Directory
from canhbao.console_record import RecordReader
from console.accounts import Role
from console.board import Board
from console.charts import bar_chart, buckets
from console.geo import area_levels, geojson
from console.health import MonitoredLag
from console.pages import Sources
from console.pages.health import reason_kind, summarise_dead_letters
from console.web import make_app
from pipeline.rules.loader import read_sources
from recorder import migrate, queries
from recorder.api import RecordAPI, openapi
from recorder.decode import decode
from recorder.indicators import indicators, parse_period
from recorder.store import Store
from recorder.tokens import Tokens, add_department
from tests.console_kit import PASSWORD, accounts, make_warning
from tests.record_db import incoming
from tests.record_stream import T0, stream
from topics.catalogue import DEADLETTER
from topics.lag import LagMonitor, LagRow, summarise
from topics.metrics import Metrics
from topics.models import (
    Area,
    BreakerState,
    DeadLetter,
    LifecycleStatus,
    RuleSetDoc,
    ServiceStatus,
)

REPO = Path(__file__).resolve().parents[2]
VN = timezone(timedelta(hours=7))
Client = TestClient[Any, Any]


# -- the map's data (pure) -------------------------------------------------------


def _shoelace(ring: list[list[float]]) -> float:
    return sum(a[0] * b[1] - b[0] * a[1] for a, b in itertools.pairwise(ring))


def test_the_geojson_is_valid_lon_lat_with_closed_counter_clockwise_rings(
    directory: Directory,
) -> None:
    geo = directory.geography
    doc = geojson(geo)
    assert doc["type"] == "FeatureCollection"
    communes = [f for f in doc["features"] if f["properties"]["kind"] == "commune"]
    assert len(communes) == sum(1 for c in geo.communes if c.polygon) > 0
    by_code = {c.code: c for c in geo.communes}
    for f in communes:
        assert f["type"] == "Feature" and f["geometry"]["type"] == "Polygon"
        (ring,) = f["geometry"]["coordinates"]
        assert len(ring) >= 4 and ring[0] == ring[-1], "a closed linear ring"
        assert _shoelace(ring) > 0, "exterior ring counter-clockwise (RFC 7946)"
        # [lon, lat]: the province lies near 106 °E, 21 °N; the config writes [lat, lon].
        assert all(105 < lon < 108 and 20 < lat < 23 for lon, lat in ring)
        source = by_code[f["properties"]["code"]].polygon
        assert source is not None
        assert {(lat, lon) for lon, lat in ring} == {tuple(p) for p in source}
    stations = [f for f in doc["features"] if f["properties"]["kind"] == "station"]
    assert len(stations) == sum(1 for s in geo.stations if s.lat is not None)
    for f in stations:
        lon, lat = f["geometry"]["coordinates"]
        assert 105 < lon < 108 and 20 < lat < 23 and f["properties"]["name"]


def test_a_clockwise_open_polygon_is_closed_and_turned(directory: Directory) -> None:
    commune = directory.geography.communes[0].model_copy(
        update={"polygon": [(21.0, 106.0), (21.1, 106.0), (21.1, 106.1)], "code": "x"}
    )
    geo = directory.geography.model_copy(update={"communes": [commune], "stations": []})
    (f,) = geojson(geo)["features"]
    ring = f["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) == 4 and _shoelace(ring) > 0


def test_a_commune_takes_the_highest_level_of_its_active_warnings() -> None:
    vu_ninh = Area(code="bn-vu-ninh", name="Vũ Ninh", province="bac-ninh")
    kinh_bac = Area(code="bn-kinh-bac", name="Kinh Bắc", province="bac-ninh")
    warnings = [
        make_warning(level=1, warning_id="a", areas=[vu_ninh, kinh_bac]),
        make_warning(level=3, warning_id="b", areas=[vu_ninh]),
        make_warning(level=3, warning_id="closed", areas=[kinh_bac],
                     status=LifecycleStatus.CLOSED),
        make_warning(level=0, warning_id="cleared", areas=[kinh_bac], transition="cleared"),
    ]  # fmt: skip
    found = area_levels(warnings)
    assert found["bn-vu-ninh"]["level"] == 3
    assert [w["id"] for w in found["bn-vu-ninh"]["warnings"]] == ["b", "a"]
    assert found["bn-kinh-bac"]["level"] == 1  # the closed and the cleared do not count
    assert [w["id"] for w in found["bn-kinh-bac"]["warnings"]] == ["a"]


# -- pure helpers of the health and indicators pages ------------------------------


def test_lag_is_summed_per_group_and_topic_largest_first() -> None:
    a0, a1, b0 = (TopicPartition("canhbao.warnings", 0), TopicPartition("canhbao.warnings", 1),
                  TopicPartition("canhbao.receipts", 0))  # fmt: skip
    rows = summarise(
        {"canhbao.record": {a0: 10, a1: 5, b0: 7}, "canhbao": {a0: 12, a1: -1}},
        {a0: 12, a1: 9, b0: 7},
    )
    assert rows[0] == LagRow(group="canhbao.record", topic="canhbao.warnings", lag=6,
                             committed=15, end=21, partitions=2)  # fmt: skip
    # -1: nothing committed on that partition yet, not a lag of end + 1.
    assert {(r.group, r.topic, r.lag) for r in rows[1:]} == {
        ("canhbao.record", "canhbao.receipts", 0), ("canhbao", "canhbao.warnings", 0)}  # fmt: skip


async def test_the_health_page_reuses_a_fresh_lag_measurement() -> None:
    """The page reads the console's lag monitor (also the gauge's): a measurement
    younger than ``max_age`` is shown as it is, without asking Kafka again."""

    class Counting(LagMonitor):
        asked = 0

        async def start(self) -> None:
            self._admin = self._consumer = object()  # type: ignore[assignment]

        async def _measure(self) -> dict[tuple[str, str], int]:
            self.asked += 1
            self.rows = [LagRow("canhbao", "canhbao.readings.water", 40 + self.asked, 958,
                                1000, 3)]  # fmt: skip
            self.measured_at = time.time()
            return {}

    monitor = Counting("127.0.0.1:1", Metrics(CollectorRegistry()))
    page = MonitoredLag(monitor, max_age=60)
    first = await page.lag()
    assert await page.lag() == first == [
        {"group": "canhbao", "topic": "canhbao.readings.water", "lag": 41,
         "committed": 958, "end": 1000, "partitions": 3}]  # fmt: skip
    assert monitor.asked == 1
    monitor.measured_at = time.time() - 61  # older than max_age: measured again
    assert (await page.lag())[0]["lag"] == 42


def test_dead_letters_group_by_stage_and_kind_of_reason() -> None:
    assert reason_kind("not valid JSON: Expecting ',' delimiter: line 1") == "not valid JSON"
    rows = [
        {"at": T0, "stage": "validate", "reason": "not valid JSON: a", "source_topic": "t"},
        {"at": T0, "stage": "validate", "reason": "not valid JSON: b", "source_topic": "t"},
        {"at": T0, "stage": "deliver", "reason": "gave up after 10 attempts", "source_topic": "n"},
    ]
    groups = summarise_dead_letters(rows)
    assert [(g["stage"], g["reason"], g["count"]) for g in groups] == [
        ("validate", "not valid JSON", 2), ("deliver", "gave up after 10 attempts", 1)]  # fmt: skip
    assert groups[0]["example"] == "not valid JSON: b"


def test_chart_steps_cover_the_period_and_bars_say_their_numbers() -> None:
    period = parse_period("2025-Q4", VN)
    steps = buckets(period.start, period.end)
    assert steps[0].start == period.start and steps[-1].end == period.end
    assert len(steps) <= 16 and all(a.end == b.start for a, b in itertools.pairwise(steps))
    month = parse_period("2025-10", VN)
    assert len(buckets(month.start, month.end)) == 5  # 31 days in weeks
    svg = bar_chart(["a", "b"], {"level 1": [2, 0], "level 3": [1, 4]}, title="T")
    assert svg.startswith("<svg") and "<title>T</title>" in svg
    assert "level 3 · b: 4" in svg and ">3<" in svg and ">4<" in svg  # totals written


# -- the pages, through the console ---------------------------------------------


@dataclass
class FakeKafka:
    rows: list[dict[str, Any]]

    async def lag(self) -> list[dict[str, Any]]:
        return self.rows


@dataclass
class FakeRules:
    doc: RuleSetDoc | None

    async def in_force(self) -> RuleSetDoc | None:
        return self.doc


@dataclass
class Pages:
    client: Client
    board: Board
    engine: Any
    token: str


LAG = [{"group": "canhbao.record", "topic": "canhbao.warnings", "lag": 42, "committed": 8,
        "end": 50, "partitions": 3}]  # fmt: skip


async def _console(tmp_path: Path, directory: Directory, **over: Any) -> AsyncIterator[Pages]:
    store = Store.open(f"sqlite+aiosqlite:///{tmp_path / 'record.db'}")
    await migrate.upgrade(store.engine)
    await store.apply("g", decode(incoming(stream())), {})
    tokens = tmp_path / "tokens.yaml"
    token = add_department(tokens, "national", [], [])
    doc = RuleSetDoc(version="abc123def456", sources=read_sources(REPO / "rules"),
                     applied_by="ky-su-a", comment="mùa lũ 2025")  # fmt: skip
    sources = Sources(
        geography=directory.geography,
        record=RecordReader(store.engine, {}),
        kafka=FakeKafka(LAG),
        rules=FakeRules(doc),
        record_api=RecordAPI(store.engine, Tokens(tokens)).subapp(),
        record_openapi=openapi(),
    )
    for k, v in over.items():
        object.__setattr__(sources, k, v)
    people = accounts(tmp_path / "console.db", ("viewer", Role.VIEWER))
    board = Board()
    board.apply_warning(make_warning(level=2))
    app = make_app(people, board, _Writer(), metrics=Metrics(CollectorRegistry()),
                   sources=sources)  # fmt: skip
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield Pages(client, board, store.engine, token)
    finally:
        await client.close()
        await store.close()


class _Writer:
    async def command(self, command: Any) -> None:
        raise AssertionError("the read-only pages send nothing")

    async def approval(self, event: Any) -> None:
        raise AssertionError("the read-only pages send nothing")


@pytest.fixture
async def pages(tmp_path: Path, directory: Directory) -> AsyncIterator[Pages]:
    async for p in _console(tmp_path, directory):
        yield p


async def _login(client: Client) -> None:
    page = await (await client.get("/login")).text()
    nonce = re.search(r'name="nonce" value="([^"]+)"', page)
    assert nonce is not None
    r = await client.post("/login", data={"name": "viewer", "password": PASSWORD,
                                          "nonce": nonce.group(1), "next": "/"})  # fmt: skip
    assert r.status == 200


async def test_the_map_colours_a_commune_with_its_level_written(pages: Pages) -> None:
    r = await pages.client.get("/api/console/levels")
    assert r.status == 401 and (await r.json())["error"] == "login needed"  # not a redirect
    await _login(pages.client)
    page = await (await pages.client.get("/map")).text()
    assert 'src="/vendor/leaflet/leaflet.js"' in page
    row = re.search(r'<tr data-code="bn-vu-ninh">.*?</tr>', page, re.S)
    assert row is not None and "lvl-2" in row.group(0) and "cấp 2 · báo động II" in row.group(0)
    assert 'href="/?status=active&amp;area=bn-vu-ninh"' in row.group(0)
    levels = (await (await pages.client.get("/api/console/levels")).json())["areas"]
    assert levels["bn-vu-ninh"]["label"] == "cấp 2 · báo động II"
    # A new state arrives from Kafka: the next refresh has it.
    pages.board.apply_warning(make_warning(version=2, level=3))
    levels = (await (await pages.client.get("/api/console/levels")).json())["areas"]
    assert levels["bn-vu-ninh"]["level"] == 3
    r = await pages.client.get("/api/console/areas")
    assert r.status == 200 and r.content_type == "application/geo+json"
    assert len((await r.json())["features"]) == 9 + 11  # communes with polygons, stations placed
    js = await pages.client.get("/vendor/leaflet/leaflet.js")
    assert js.status == 200 and "Leaflet" in (await js.text())[:2000]


async def test_khmer_texts_get_a_khmer_font_the_console_serves_itself(pages: Pages) -> None:
    """The broadcasts page shows the SMS in Khmer: without a Khmer font on the
    operator's machine it would be a row of boxes. The console serves one (npm)."""
    await _login(pages.client)
    css = await (await pages.client.get("/static/console.css")).text()
    assert "/vendor/fonts/noto-sans-khmer-khmer-400-normal.woff2" in css
    assert "U+1780-17FF" in css  # only Khmer code points use it
    font = await pages.client.get("/vendor/fonts/noto-sans-khmer-khmer-400-normal.woff2")
    assert font.status == 200 and (await font.read())[:4] == b"wOF2"


async def test_without_the_map_library_the_map_page_says_so(
    tmp_path: Path, directory: Directory
) -> None:
    async for p in _console(tmp_path, directory, node_modules=tmp_path / "none"):
        await _login(p.client)
        page = await (await p.client.get("/map")).text()
        assert "Thiếu thư viện bản đồ (Leaflet)" in page and "leaflet.js" not in page
        assert "cấp 2 · báo động II" in page  # the table still says where


async def test_the_stream_filters_by_commune(pages: Pages) -> None:
    await _login(pages.client)
    here = await (await pages.client.get("/?status=active&area=bn-vu-ninh")).text()
    there = await (await pages.client.get("/?status=active&area=bn-kinh-bac")).text()
    assert "w-water.flood.dap-cau" in here and "w-water.flood.dap-cau" not in there
    assert 'name="area"' in there  # the filter is kept when another is changed


async def test_the_rules_page_shows_the_set_in_force_and_its_thresholds(pages: Pages) -> None:
    await _login(pages.client)
    page = await (await pages.client.get("/rules")).text()
    assert "abc123def456" in page and "ky-su-a" in page and "mùa lũ 2025" in page
    row = re.search(r'<tr id="rule-water.flood.dap-cau">.*?</tr>', page, re.S)
    assert row is not None
    cells = re.findall(r'<td class="num">([^<]*)</td>', row.group(0))
    assert cells == ["≥ 4.3 (I)", "≥ 5.3 (II)", "≥ 6.3 (III)", "–", "–"]
    # The record's history of rule sets applied, with who applied them.
    assert "2025.10.1" in page and "chi.le" in page


async def test_the_health_page_shows_lag_dead_letters_and_failures(pages: Pages) -> None:
    await _login(pages.client)  # a viewer may read it
    page = await (await pages.client.get("/health?window=30d")).text()
    assert "canhbao.record" in page and ">42<" in page
    # The record's letters are of 2025: outside the window, and the page says so.
    assert "Không có thư lỗi." in page
    now = datetime.now(UTC) - timedelta(minutes=5)
    letters = [
        DeadLetter(source_topic="canhbao.ingest.readings", partition=0, offset=n, key=b"s",
                   original=b"{", stage="validate", at=now,
                   reason=f"not valid JSON: Expecting value: line 1 column {n}")
        for n in (1, 2)
    ]  # fmt: skip
    msgs = [(DEADLETTER, b"canhbao.ingest.readings", d.to_bytes()) for d in letters]
    rows = decode([dataclasses.replace(r, offset=1000 + i) for i, r in enumerate(incoming(msgs))])
    await Store(pages.engine).apply("g", rows, {})
    page = await (await pages.client.get("/health?window=1h")).text()
    table = re.search(r'<table id="dead-letters">.*?</table>', page, re.S)
    assert table is not None and "not valid JSON" in table.group(0)
    assert '<td class="num">2</td>' in table.group(0) and "<svg" in page
    # Failed deliveries: what the record's own query calls failed, by channel.
    failed = await RecordReader(pages.engine, {}).failed_deliveries(T0 - timedelta(days=1))
    expected = await queries.deliveries(pages.engine, since=T0 - timedelta(days=1), failed=True)
    assert [(f["channel"], f["receiver_id"]) for f in failed] == [
        (d["channel"], d["receiver_id"]) for d in expected] and failed  # fmt: skip


async def test_the_indicators_page_gives_the_records_numbers(pages: Pages) -> None:
    await _login(pages.client)
    expected = await indicators(pages.engine, parse_period("2025-10", VN))
    page = await (await pages.client.get("/indicators?period=2025-10")).text()
    total = re.search(r'<p class="summary" id="ind-total">(\d+) ', page)
    assert total is not None and int(total.group(1)) == expected["total"]["warnings"] > 0
    assert page.count("<svg") >= 1
    assert page.count("<tr>\n    <td>") == len(expected["groups"])
    r = await pages.client.get("/indicators?period=last+autumn")
    assert r.status == 400 and "is not a period" in await r.text()


async def test_the_console_serves_the_records_api_and_describes_it(pages: Pages) -> None:
    r = await pages.client.get("/api/v1/warnings")
    assert r.status == 401  # a department's token, not a console session
    r = await pages.client.get("/api/v1/warnings?latest=true",
                               headers={"Authorization": f"Bearer {pages.token}"})  # fmt: skip
    assert r.status == 200 and len(await r.json()) > 0
    spec = await (await pages.client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    assert {"/api/v1/warnings", "/api/v1/warnings/{warning_id}", "/api/v1/indicators",
            "/api/console/areas", "/api/console/levels"} <= set(spec["paths"])  # fmt: skip
    assert spec["paths"]["/api/v1/warnings"]["get"]["security"] == [{"bearer": []}]
    assert spec["paths"]["/api/console/levels"]["get"]["security"] == [{"session": []}]
    # Every path it declares is served (a GET is answered, not 404/405).
    for path in spec["paths"]:
        r = await pages.client.get(path.replace("{warning_id}", "x"))
        assert r.status in (200, 400, 401, 404), path
        assert r.status != 404 or path.endswith("{warning_id}")


async def test_the_record_readers_rule_sets_are_newest_first(pages: Pages) -> None:
    found = await RecordReader(pages.engine, {}).rule_sets(5)
    assert found[0]["version"] == "2025.10.1" and found[0]["applied_by"] == "chi.le"
    assert isinstance(found[0]["applied_at"], datetime)
    assert found[0]["applied_at"].tzinfo is not None
    assert datetime.now(UTC) > found[0]["applied_at"]


async def test_the_health_page_lists_workers_versions_and_open_breakers(pages: Pages) -> None:
    from types import SimpleNamespace

    from console.kafka import _status

    now = datetime.now(UTC)
    worker = ServiceStatus(service="worker", instance="w-1", rules_version="bff920919e7f")
    quiet = ServiceStatus(service="worker", instance="w-2", rules_version="0ld0ld0ld0ld",
                          at=now - timedelta(minutes=5))  # fmt: skip
    webhook = ServiceStatus(service="dispatch:webhook", instance="h:7", breakers=[
        BreakerState(receiver_id="snnmt-webhook", state="open", failures=5)])  # fmt: skip
    for s in (worker, quiet, webhook):
        _status(pages.board, SimpleNamespace(topic="canhbao.state.services", key=s.key.encode(),
                                             value=s.to_bytes()))  # fmt: skip
    await _login(pages.client)
    page = await (await pages.client.get("/health")).text()
    table = re.search(r'<table id="services">.*?</table>', page, re.S)
    assert table is not None
    rows = re.findall(r"<tr.*?</tr>", table.group(0), re.S)[1:]
    assert "dispatch:webhook" in rows[0] and "snnmt-webhook (mở, 5 lần lỗi)" in rows[0]
    assert "bff920919e7f" in rows[1] and "im lặng" not in rows[1]
    assert "0ld0ld0ld0ld" in rows[2] and "im lặng quá lâu" in rows[2]  # silent for 5 min
    # A service that stops says so (a tombstone): it is no longer listed.
    _status(pages.board, SimpleNamespace(topic="canhbao.state.services", key=quiet.key.encode(),
                                         value=None))  # fmt: skip
    page = await (await pages.client.get("/health")).text()
    assert "0ld0ld0ld0ld" not in page and "bff920919e7f" in page
