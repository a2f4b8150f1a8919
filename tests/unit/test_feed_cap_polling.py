"""`canhbao feed cap --url`: documents are read whole however the server splits them, up
to the configured limit; national Atom and RSS indexes, EDXL-DE feeds and inline alerts
are followed, each alert handled once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import REGISTRY

from alerting.directory import Directory
from feeds.cap_alerts import Areas, CapError, ReportRules, load_config
from feeds.cap_ingest import CapIngest, Outcome
from feeds.sink import MemorySink
from pipeline.rules.loader import RuleSet
from topics.catalogue import DEADLETTER, INGEST_REPORTS
from topics.models import DeadLetter, Report

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "cap"
ICT = timezone(timedelta(hours=7))
NOW = datetime(2025, 11, 10, 9, 0, tzinfo=ICT)
CONFIG = load_config(REPO / "config" / "cap_ingest.yaml")
CHUNK = 4096  # the server writes this much at a time and lets the client read it


def reports(sink: MemorySink) -> list[Report]:
    return [Report.model_validate_json(v) for v in sink.on(INGEST_REPORTS)]


def dead(sink: MemorySink) -> list[DeadLetter]:
    return [DeadLetter.model_validate_json(v) for v in sink.on(DEADLETTER)]


def refused(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "canhbao_feed_refused_total", {"feed": "cap", "reason": reason}
    )
    return value or 0.0


def flash_flood(identifier: str, *, polygons: int = 0) -> bytes:
    """The CAP 1.1 sample as another alert; with ``polygons`` rings of 100 points in
    its first area (a large multi-polygon alert)."""
    text = (DATA / "cap11_prefixed_flash_flood.xml").read_text(encoding="utf-8")
    text = text.replace("VN-NCHMF-2025-11-10-0107", identifier)
    rings = "".join(
        "<cap:polygon>"
        + " ".join(f"{21.2 + i * 1e-4 + k * 1e-6:.6f},{106.3 + k * 1e-5:.6f}" for k in range(99))
        + f" {21.2 + i * 1e-4:.6f},106.300000</cap:polygon>\n      "
        for i in range(polygons)
    )
    text = text.replace(
        "<cap:areaDesc>Da Mai, Luc Nam</cap:areaDesc>",
        rings + "<cap:areaDesc>Da Mai, Luc Nam</cap:areaDesc>",
        1,
    )
    return text.encode("utf-8")


def national_index(entries: int, ours: dict[int, str]) -> bytes:
    """An Atom index of current alerts in the shape national weather services publish
    (constructed, not a real feed): CAP 1.1 elements in each entry (event, expiry,
    geocodes, several per element), each entry linking to a script without a media
    type. Entry n is for one of our communes when ``ours`` gives its geocode."""
    parts = [
        "<?xml version='1.0' encoding='UTF-8' standalone='yes'?>\n"
        "<feed xmlns='http://www.w3.org/2005/Atom' "
        "xmlns:cap='urn:oasis:names:tc:emergency:cap:1.1'>\n"
        "<id>https://alerts.example/cap/vn.php?x=0</id>\n"
        "<updated>2025-11-10T08:50:00+07:00</updated>\n"
        "<title>Current warnings (constructed sample)</title>\n"
    ]
    for n in range(entries):
        code = ours.get(n, f"{26000 + n:05d}")
        parts.append(
            f"<entry>\n<id>https://alerts.example/cap/wwacapget.php?x={n}</id>\n"
            "<updated>2025-11-10T08:00:00+07:00</updated>\n"
            f"<title>Flash flood warning {n} issued November 10 at 8:00AM</title>\n"
            f"<link href='/cap/wwacapget.php?x={n}'/>\n"
            "<summary>Heavy rain of 150 to 250 mm in 24 hours; flash floods are likely on "
            "small streams and landslides on steep slopes of the hill districts.</summary>\n"
            "<cap:event>Flash Flood Warning</cap:event>\n"
            "<cap:expires>2025-11-11T08:00:00+07:00</cap:expires>\n"
            "<cap:category>Met</cap:category><cap:severity>Severe</cap:severity>\n"
            "<cap:geocode>\n<valueName>VN-commune</valueName>\n"
            f"<value>{code}</value>\n<valueName>UGC</valueName>\n<value>VNZ{n:03d}</value>\n"
            "</cap:geocode>\n</entry>\n"
        )
    parts.append("</feed>\n")
    return "".join(parts).encode("utf-8")


async def in_chunks(request: web.Request, body: bytes, content_type: str) -> web.StreamResponse:
    """Send ``body`` chunked, a piece at a time, as a slow or busy server does."""
    resp = web.StreamResponse(headers={"Content-Type": content_type})
    await resp.prepare(request)
    for i in range(0, len(body), CHUNK):
        await resp.write(body[i : i + CHUNK])
        await asyncio.sleep(0.001)  # the client sees each piece before the next is sent
    await resp.write_eof()
    return resp


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[dict[str, Handler]], Awaitable[str]]]:
    servers: list[TestServer] = []

    async def start(routes: dict[str, Handler]) -> str:
        app = web.Application()
        for path, handler in routes.items():
            app.router.add_get(path, handler)
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        return str(server.make_url("/"))

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
def ingest(sink: MemorySink, directory: Directory, ruleset: RuleSet) -> CapIngest:
    return CapIngest(
        sink, Areas.of(directory), config=CONFIG, rules=ReportRules.of(ruleset), clock=lambda: NOW
    )


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


async def test_a_national_index_of_300_kb_sent_in_pieces_is_read_whole(
    serve: Callable[[dict[str, Handler]], Awaitable[str]], ingest: CapIngest, sink: MemorySink
) -> None:
    """[issue 15.4] The index was cut at the first piece and refused as "not well-formed
    XML". Read whole, its two entries for our communes are fetched and sent; the others,
    which the index places elsewhere, are not even fetched."""
    index = national_index(600, ours={17: "99005", 433: "99006"})
    assert len(index) > 270_000
    fetched: list[str] = []

    async def index_handler(request: web.Request) -> web.StreamResponse:
        return await in_chunks(request, index, "application/atom+xml")

    async def alert_handler(request: web.Request) -> web.StreamResponse:
        fetched.append(request.query["x"])
        body = flash_flood(f"VN-NCHMF-2025-11-10-{request.query['x']}")
        return await in_chunks(request, body, "application/cap+xml")

    base = await serve({"/index.atom": index_handler, "/cap/wwacapget.php": alert_handler})
    elsewhere = refused("not_ours")
    async with aiohttp.ClientSession() as session:
        assert await ingest.poll(session, base + "index.atom") == 2
        assert await ingest.poll(session, base + "index.atom") == 0  # nothing new
    assert sorted(fetched) == ["17", "433"]
    assert [r.report_id.split(":")[1] for r in reports(sink)] == [
        "vn-nchmf-2025-11-10-17",
        "vn-nchmf-2025-11-10-433",
    ]
    assert not dead(sink)
    assert refused("not_ours") == elsewhere + 598  # counted, not dead-lettered


async def test_a_143_kb_multi_polygon_alert_sent_in_pieces_is_read_whole(
    serve: Callable[[dict[str, Handler]], Awaitable[str]], ingest: CapIngest, sink: MemorySink
) -> None:
    """[issue 15.4] The same alert was accepted from a file but refused from the URL."""
    alert = flash_flood("VN-NCHMF-2025-11-10-0200", polygons=80)
    assert len(alert) > 140_000

    async def handler(request: web.Request) -> web.StreamResponse:
        return await in_chunks(request, alert, "application/cap+xml")

    base = await serve({"/alert.xml": handler})
    async with aiohttp.ClientSession() as session:
        assert await ingest.poll(session, base + "alert.xml") == 1
    (report,) = reports(sink)
    assert report.areas == ["bn-da-mai", "bn-luc-nam"]
    assert not dead(sink)


async def test_a_document_over_the_limit_is_refused_as_larger_than_the_limit(
    serve: Callable[[dict[str, Handler]], Awaitable[str]],
    sink: MemorySink,
    directory: Directory,
    ruleset: RuleSet,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = CONFIG.model_copy(update={"max_document": 65536})
    ingest = CapIngest(
        sink, Areas.of(directory), config=config, rules=ReportRules.of(ruleset), clock=lambda: NOW
    )
    big_index = national_index(300, ours={})
    big_alert = flash_flood("VN-NCHMF-2025-11-10-0300", polygons=60)
    index = (
        b"<feed xmlns='http://www.w3.org/2005/Atom'><id>f</id><entry><id>e1</id>"
        b"<updated>2025-11-10T08:00:00+07:00</updated>"
        b"<link type='application/cap+xml' href='/big.xml'/></entry></feed>"
    )
    calls: list[str] = []

    async def stream(body: bytes) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            calls.append(request.path)
            return await in_chunks(request, body, "application/xml")

        return handler

    base = await serve(
        {
            "/national.atom": await stream(big_index),
            "/small.atom": await stream(index),
            "/big.xml": await stream(big_alert),
        }
    )
    too_large = refused("too_large")
    caplog.set_level("WARNING", logger="feeds.cap_ingest")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(CapError, match=r"national\.atom: larger than 65536 bytes"):
            await ingest.poll(session, base + "national.atom")
        # A linked alert over the limit is refused once, with the reason, not retried.
        assert await ingest.poll(session, base + "small.atom") == 1
        assert await ingest.poll(session, base + "small.atom") == 0
    assert calls.count("/big.xml") == 1
    (letter,) = dead(sink)
    assert "big.xml: larger than 65536 bytes" in letter.reason
    assert refused("too_large") == too_large + 1
    assert "larger than 65536 bytes" in caplog.text
    assert not reports(sink)


async def test_a_file_over_the_limit_is_refused_too(
    sink: MemorySink, directory: Directory, tmp_path: Path
) -> None:
    config = CONFIG.model_copy(update={"max_document": 65536})
    ingest = CapIngest(sink, Areas.of(directory), config=config, clock=lambda: NOW)
    path = tmp_path / "big.xml"
    path.write_bytes(flash_flood("VN-NCHMF-2025-11-10-0301", polygons=60))
    [(outcome, why)] = await ingest.ingest_file(path)
    assert outcome is Outcome.REJECTED
    assert "larger than 65536 bytes" in why


async def test_an_rss_index_links_to_its_alerts_in_the_ways_rss_can(
    serve: Callable[[dict[str, Handler]], Awaitable[str]], ingest: CapIngest, sink: MemorySink
) -> None:
    """Items give the CAP document as a typed enclosure, as <link>, or as a permalink
    <guid>; an item that links to nothing is counted, not fetched."""
    rss = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"><channel>'
        "<title>Cảnh báo (constructed sample)</title><link>/</link><description>d</description>"
        "<item><title>a</title><link>/page/a.html</link><guid isPermaLink='false'>a</guid>"
        "<pubDate>Mon, 10 Nov 2025 01:00:00 GMT</pubDate>"
        "<enclosure url='/cap/a.xml' length='1' type='application/cap+xml'/></item>"
        "<item><title>b</title><link>/cap/b.xml</link><guid>urn:b</guid>"
        "<pubDate>Mon, 10 Nov 2025 01:05:00 GMT</pubDate></item>"
        "<item><title>c</title><guid>REPLACE/cap/c.xml</guid>"
        "<pubDate>Mon, 10 Nov 2025 01:10:00 GMT</pubDate></item>"
        "<item><title>d</title><guid isPermaLink='false'>d</guid></item>"
        "</channel></rss>"
    )
    holder: dict[str, str] = {}

    async def index(request: web.Request) -> web.StreamResponse:
        body = rss.replace("REPLACE/", holder["base"]).encode()
        return await in_chunks(request, body, "application/rss+xml")

    async def alert(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        return await in_chunks(request, flash_flood(f"RSS-{name}"), "application/cap+xml")

    holder["base"] = await serve({"/feed.rss": index, "/cap/{name}.xml": alert})
    no_link = refused("no_link")
    async with aiohttp.ClientSession() as session:
        assert await ingest.poll(session, holder["base"] + "feed.rss") == 4
    assert sorted(r.report_id.split(":")[1] for r in reports(sink)) == ["rss-a", "rss-b", "rss-c"]
    assert refused("no_link") == no_link + 1


async def test_an_edxl_feed_polled_again_refuses_each_alert_once(
    serve: Callable[[dict[str, Handler]], Awaitable[str]],
    ingest: CapIngest,
    sink: MemorySink,
) -> None:
    """An EDXL-DE distribution of current alerts is the feed itself: an earthquake that no
    rule takes (here) is dead-lettered when it appears, not again at every poll."""
    assert ingest.rules is not None
    takes = {k: v for k, v in ingest.rules.takes.items() if k[1] != "earthquake"}
    ingest.rules = ReportRules("no-earthquake-rule", takes)
    body = (DATA / "edxl_de_1_0_two_alerts.xml").read_bytes()

    async def handler(request: web.Request) -> web.StreamResponse:
        return await in_chunks(request, body, "application/xml")

    base = await serve({"/incidents.xml": handler})
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            await ingest.poll(session, base + "incidents.xml")
    (report,) = reports(sink)
    assert report.category == "flooding"
    (letter,) = dead(sink)
    assert "no rule takes geology reports of category 'earthquake'" in letter.reason
    assert letter.source_topic.endswith("incidents.xml#2")


async def test_alerts_inline_in_atom_entries_are_taken(
    serve: Callable[[dict[str, Handler]], Awaitable[str]], ingest: CapIngest, sink: MemorySink
) -> None:
    alert = flash_flood("INLINE-1").split(b"?>", 1)[1]  # drop the XML declaration
    atom = (
        b"<feed xmlns='http://www.w3.org/2005/Atom'><id>f</id><entry><id>e1</id>"
        b"<updated>2025-11-10T08:00:00+07:00</updated><content type='application/cap+xml'>"
        + alert
        + b"</content></entry></feed>"
    )

    async def handler(request: web.Request) -> web.StreamResponse:
        return await in_chunks(request, atom, "application/atom+xml")

    base = await serve({"/feed.atom": handler})
    async with aiohttp.ClientSession() as session:
        assert await ingest.poll(session, base + "feed.atom") == 1
    (report,) = reports(sink)
    assert report.report_id.startswith("cap:inline-1:")
