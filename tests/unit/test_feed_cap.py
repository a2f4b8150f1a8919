"""CAP ingest (feeds/cap_ingest.py, feeds/cap_alerts.py): upstream CAP alerts become reports
for our communes; what cannot is logged, counted and, when it could be replayed, dead-lettered."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client import REGISTRY

from alerting.cap import cap_xml
from alerting.directory import Directory
from consumers.cap_feed import CapFeedStore, make_app
from feeds.cap_alerts import Areas, CapConfig, ReportRules, load_config, report_id
from feeds.cap_ingest import CapIngest, Outcome
from feeds.sink import MemorySink
from pipeline.rules.loader import RuleSet
from topics.catalogue import DEADLETTER, INGEST_REPORTS
from topics.models import Agency, DeadLetter, Domain, Evidence, Report, Severity, Warning

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "cap"
ICT = timezone(timedelta(hours=7))
NOW = datetime(2025, 11, 10, 9, 0, tzinfo=ICT)
CONFIG = load_config(REPO / "config" / "cap_ingest.yaml")


def reports(sink: MemorySink) -> list[Report]:
    return [Report.model_validate_json(v) for v in sink.on(INGEST_REPORTS)]


def dead(sink: MemorySink) -> list[DeadLetter]:
    return [DeadLetter.model_validate_json(v) for v in sink.on(DEADLETTER)]


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture(scope="session")
def rules(ruleset: RuleSet) -> ReportRules:
    return ReportRules.of(ruleset)


def make_ingest(
    sink: MemorySink,
    directory: Directory,
    rules: ReportRules | None = None,
    config: CapConfig = CONFIG,
    *,
    state: Path | None = None,
    accept_exercise: bool = False,
) -> CapIngest:
    """The adapter as `canhbao feed cap` runs it: the shipped config (and rules)."""
    return CapIngest(
        sink,
        Areas.of(directory),
        config=config,
        rules=rules,
        state=state,
        accept_exercise=accept_exercise,
        clock=lambda: NOW,
    )


@pytest.fixture
def ingest(sink: MemorySink, directory: Directory, rules: ReportRules, tmp_path: Path) -> CapIngest:
    return make_ingest(sink, directory, rules, state=tmp_path / "seen.json")


def refused(reason: str) -> float:
    """canhbao_feed_refused_total{feed="cap",reason}."""
    value = REGISTRY.get_sample_value(
        "canhbao_feed_refused_total", {"feed": "cap", "reason": reason}
    )
    return value or 0.0


def sample(name: str, **replace: str) -> bytes:
    text = (DATA / name).read_text(encoding="utf-8")
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return text.encode("utf-8")


async def one(ingest: CapIngest, data: bytes, origin: str = "x") -> tuple[Outcome, str]:
    (result,) = await ingest.ingest(data, origin)
    return result


async def test_an_upstream_flood_alert_becomes_a_report_for_our_communes(
    ingest: CapIngest, sink: MemorySink
) -> None:
    [(outcome, _)] = await ingest.ingest_file(DATA / "cap_flood_upstream.xml")
    assert outcome is Outcome.SENT
    (report,) = reports(sink)
    assert report.domain is Domain.WATER
    assert report.category == "flooding"  # the category the water report rule listens to
    assert report.severity is Severity.SEVERE
    # 99001 and 99004 are ours; 26881 is not and is left out.
    assert report.areas == ["bn-vu-ninh", "bn-bac-giang"]
    assert report.reporter == "cap@nchmf.gov.vn"
    assert report.observed_at == datetime(2025, 11, 10, 7, 15, tzinfo=ICT)
    # The Vietnamese info is used, though the English one comes first.
    assert report.text.startswith("Lũ trên sông Cầu tại Đáp Cầu vượt báo động II\n")
    assert "5,42 m" in report.text
    (key,) = [k for t, k, _ in sink.sent if t == INGEST_REPORTS]
    assert key == b"bn-vu-ninh"  # the ingest topic's key: the first area


async def test_a_cyber_notice_becomes_a_cyber_defacement_report(
    ingest: CapIngest, sink: MemorySink
) -> None:
    await ingest.ingest_file(DATA / "cap_defacement_vncert.xml")
    (report,) = reports(sink)
    assert (report.domain, report.category, report.areas) == (
        Domain.CYBER,
        "defacement",
        ["bn-kinh-bac"],
    )


async def test_polling_the_same_alert_again_sends_nothing_new(
    ingest: CapIngest, sink: MemorySink, directory: Directory, rules: ReportRules, tmp_path: Path
) -> None:
    assert (await ingest.ingest_file(DATA / "cap_flood_upstream.xml"))[0][0] is Outcome.SENT
    assert (await ingest.ingest_file(DATA / "cap_flood_upstream.xml"))[0][0] is Outcome.DUPLICATE
    # ... nor after a restart: the ids sent are in the state file.
    again = make_ingest(sink, directory, rules, state=tmp_path / "seen.json")
    assert (await again.ingest_file(DATA / "cap_flood_upstream.xml"))[0][0] is Outcome.DUPLICATE
    assert len(reports(sink)) == 1


async def test_an_update_is_a_new_report_and_a_cancel_sends_nothing(
    ingest: CapIngest, sink: MemorySink, caplog: pytest.LogCaptureFixture
) -> None:
    await ingest.ingest_file(DATA / "cap_flood_upstream.xml")
    await ingest.ingest_file(DATA / "cap_flood_update.xml")
    caplog.set_level("INFO", logger="feeds.cap_ingest")
    [(outcome, why)] = await ingest.ingest_file(DATA / "cap_flood_cancel.xml")
    first, update = reports(sink)
    assert update.report_id != first.report_id
    assert update.severity is Severity.EXTREME
    assert outcome is Outcome.SKIPPED
    assert "Cancel" in why and "VN-NCHMF-2025-11-10-0051" in why
    assert "VN-NCHMF-2025-11-10-0051" in caplog.text
    assert not dead(sink)


def test_report_ids_are_stable_distinct_and_valid() -> None:
    a = report_id("cap@nchmf.gov.vn", "VN-NCHMF-2025-11-10-0042")
    assert a == report_id("cap@nchmf.gov.vn", "VN-NCHMF-2025-11-10-0042")
    # Two senders may use the same identifier: CAP makes only the pair unique.
    assert a != report_id("other@agency.vn", "VN-NCHMF-2025-11-10-0042")
    long = report_id("s", "Ư" * 300 + " <odd> & id")
    assert len(long) <= 128
    Report(
        report_id=long,
        domain="water",
        category="c",
        severity="Minor",
        areas=["x"],
        observed_at=NOW,
        reporter="s",
    )


async def test_an_alert_for_none_of_our_communes_is_dead_lettered(
    ingest: CapIngest, sink: MemorySink
) -> None:
    data = sample("cap_defacement_vncert.xml", **{"<value>99002</value>": "<value>26881</value>"})
    before = refused("no_area")
    outcome, _ = await one(ingest, data, "upstream.xml")
    assert outcome is Outcome.REJECTED
    assert not reports(sink)
    (letter,) = dead(sink)
    assert "no geocode matches a commune of ours" in letter.reason and "26881" in letter.reason
    assert letter.original == data  # kept whole, to replay after fixing the geography
    assert letter.source_topic == "cap:upstream.xml"
    assert refused("no_area") == before + 1


@pytest.mark.parametrize(
    ("replace", "reason", "label"),
    [
        (
            {"<severity>Severe</severity>": "<severity>Bad</severity>"},
            "not a CAP severity",
            "invalid",
        ),
        (
            {"urn:oasis:names:tc:emergency:cap:1.2": "http://www.incident.com/cap/1.0"},
            "CAP 1.0 is not supported",
            "not_cap",
        ),
        (
            {"urn:oasis:names:tc:emergency:cap:1.2": "urn:example:not-cap"},
            "not a CAP 1.2 or 1.1 alert",
            "not_cap",
        ),
        ({"<sender>canhbao@vncert.vn</sender>": ""}, "no sender", "invalid"),
        ({"</alert>": "</alrt>"}, "not well-formed XML", "not_xml"),
    ],
)
async def test_what_cannot_be_a_report_is_dead_lettered_with_the_reason(
    ingest: CapIngest, sink: MemorySink, replace: dict[str, str], reason: str, label: str
) -> None:
    before = refused(label)
    outcome, why = await one(ingest, sample("cap_defacement_vncert.xml", **replace))
    assert outcome is Outcome.REJECTED
    assert reason in why
    (letter,) = dead(sink)
    assert reason in letter.reason
    assert refused(label) == before + 1


async def test_an_entity_bomb_is_refused_without_expanding_it(
    ingest: CapIngest, sink: MemorySink
) -> None:
    [(outcome, why)] = await ingest.ingest_file(DATA / "cap_billion_laughs.xml")
    assert outcome is Outcome.REJECTED
    assert "DTD" in why
    assert not reports(sink)


async def test_an_external_entity_is_never_read(
    ingest: CapIngest, sink: MemorySink, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET", encoding="utf-8")
    data = sample(
        "cap_defacement_vncert.xml",
        **{
            '<alert xmlns="': f'<!DOCTYPE alert [<!ENTITY x SYSTEM "file://{secret}">]>\n'
            '<alert xmlns="',
            "<headline>": "<headline>&x;",
        },
    )
    outcome, _ = await one(ingest, data, "xxe.xml")
    assert outcome is Outcome.REJECTED
    assert b"TOP-SECRET" not in b"".join(v for _, _, v in sink.sent)


@pytest.mark.parametrize(
    ("replace", "why"),
    [
        ({"<status>Actual</status>": "<status>Test</status>"}, "status Test"),
        ({"<status>Actual</status>": "<status>Exercise</status>"}, "exercise"),
        (
            {"</severity>": "</severity>\n    <expires>2025-11-10T08:45:00+07:00</expires>"},
            "refused: expired at 2025-11-10T08:45:00+07:00",
        ),
    ],
)
async def test_tests_exercises_and_expired_alerts_raise_nothing(
    ingest: CapIngest, sink: MemorySink, replace: dict[str, str], why: str
) -> None:
    outcome, detail = await one(ingest, sample("cap_defacement_vncert.xml", **replace))
    assert outcome is Outcome.SKIPPED
    assert why in detail
    assert not sink.sent


async def test_an_exercise_deployment_takes_exercise_alerts(
    sink: MemorySink, directory: Directory, rules: ReportRules
) -> None:
    drill = make_ingest(sink, directory, rules, accept_exercise=True)
    data = sample("cap_defacement_vncert.xml", **{"<status>Actual": "<status>Exercise"})
    assert (await one(drill, data))[0] is Outcome.SENT


# --- Round trip with our own CAP writer, and polling our own Atom feed ---------------


def flood_warning(directory: Directory, version: int = 1, level: int = 1) -> Warning:
    at = NOW - timedelta(hours=2) + timedelta(hours=version - 1)
    return Warning(
        warning_id="water.flood.dap-cau:dap-cau",
        version=version,
        rule_id="water.flood.dap-cau",
        domain="water",
        hazard="river_flood",
        subject="dap-cau",
        transition="raised" if version == 1 else "escalated",
        level=level,
        level_name="I" * level,
        previous_level=level - 1 if version > 1 else 0,
        severity="Moderate" if level == 1 else "Severe",
        areas=[directory.area("bn-vu-ninh"), directory.area("bn-kinh-bac")],
        scope_tier="province",
        lead_agency=Agency(
            code="snnmt",
            name_vi="Sở Nông nghiệp và Môi trường",
            name_en="Department of Agriculture and Environment",
        ),
        evidence=[
            Evidence(
                station_id="dap-cau",
                metric="water_level_m",
                value=4.42,
                observed_at=at,
                threshold=4.30,
            )
        ],
        raised_at=at - timedelta(hours=version - 1),
        updated_at=at,
        previous_updated_at=at - timedelta(hours=1) if version > 1 else None,
        labels={"notify": "true"},
        annotations={
            "summary_vi": "Mực nước sông Cầu tại Đáp Cầu",
            "summary_en": "River Cầu water level at Đáp Cầu",
        },
    )


async def test_our_own_cap_message_reads_back_as_the_same_warning(
    directory: Directory, sink: MemorySink, rules: ReportRules
) -> None:
    warning = flood_warning(directory)
    xml = cap_xml(warning, directory, sender="canhbao@bacninh.gov.vn")
    ingest = make_ingest(sink, directory, rules)
    outcome, _ = await one(ingest, xml.encode("utf-8"), "roundtrip")
    assert outcome is Outcome.SENT
    (report,) = reports(sink)
    assert report.domain is Domain.WATER
    assert report.category == "flooding"
    assert report.severity is Severity.MODERATE
    assert report.areas == ["bn-vu-ninh", "bn-kinh-bac"]
    assert report.observed_at == warning.updated_at
    assert report.reporter == "canhbao@bacninh.gov.vn"
    assert "Đáp Cầu" in report.text


@pytest.fixture
async def feed(directory: Directory) -> AsyncIterator[tuple[str, CapFeedStore]]:
    store = CapFeedStore(clock=lambda: NOW)
    store.apply(flood_warning(directory))
    server = TestServer(make_app(store, directory))
    await server.start_server()
    try:
        yield str(server.make_url("/cap/feed.atom")), store
    finally:
        await server.close()


async def test_polling_an_atom_feed_sends_each_alert_once(
    feed: tuple[str, CapFeedStore],
    directory: Directory,
    sink: MemorySink,
    rules: ReportRules,
    tmp_path: Path,
) -> None:
    url, store = feed
    ingest = make_ingest(sink, directory, rules, state=tmp_path / "seen.json")
    async with aiohttp.ClientSession() as session:
        assert await ingest.poll(session, url) == 1
        assert await ingest.poll(session, url) == 0  # nothing new: nothing fetched or sent
        store.apply(flood_warning(directory, version=2, level=2))  # the warning escalates
        assert await ingest.poll(session, url) == 1
    first, update = reports(sink)
    assert (first.severity, update.severity) == (Severity.MODERATE, Severity.SEVERE)
    assert first.report_id != update.report_id
    assert json.loads((tmp_path / "seen.json").read_text()).keys() == {
        first.report_id,
        update.report_id,
    }


async def test_an_unreachable_alert_is_tried_again_at_the_next_poll(
    directory: Directory, sink: MemorySink, rules: ReportRules
) -> None:
    """The feed lists an alert whose document fails once (HTTP 503): it is not lost."""
    from aiohttp import web

    xml = cap_xml(flood_warning(directory), directory).encode()
    calls: list[str] = []

    async def atom(request: web.Request) -> web.Response:
        body = (
            '<feed xmlns="http://www.w3.org/2005/Atom"><id>f</id><entry><id>e1</id>'
            "<updated>2025-10-07T06:20:00+07:00</updated>"
            '<link rel="alternate" type="application/cap+xml" href="/a/1.xml"/></entry></feed>'
        )
        return web.Response(body=body.encode(), content_type="application/atom+xml")

    async def alert(request: web.Request) -> web.Response:
        calls.append(request.path)
        if len(calls) == 1:
            raise web.HTTPServiceUnavailable()
        return web.Response(body=xml, content_type="application/cap+xml")

    app = web.Application()
    app.router.add_get("/feed.atom", atom)
    app.router.add_get("/a/1.xml", alert)
    server = TestServer(app)
    await server.start_server()
    ingest = make_ingest(sink, directory, rules)
    try:
        async with aiohttp.ClientSession() as session:
            url = str(server.make_url("/feed.atom"))
            assert await ingest.poll(session, url) == 0
            assert not reports(sink)
            assert await ingest.poll(session, url) == 1
    finally:
        await server.close()
    assert len(reports(sink)) == 1 and len(calls) == 2


async def test_an_alert_sent_in_utc_is_placed_at_the_right_moment(
    ingest: CapIngest, sink: MemorySink
) -> None:
    data = sample("cap_defacement_vncert.xml", **{"08:30:00+07:00": "01:30:00-00:00"})
    await ingest.ingest(data, "x")
    (report,) = reports(sink)
    assert report.observed_at == datetime(2025, 11, 10, 1, 30, tzinfo=UTC)
    assert report.observed_at == datetime(2025, 11, 10, 8, 30, tzinfo=ICT)


async def test_a_time_without_offset_is_dead_lettered(ingest: CapIngest, sink: MemorySink) -> None:
    data = sample("cap_defacement_vncert.xml", **{"08:30:00+07:00": "08:30:00"})
    outcome, why = await one(ingest, data)
    assert outcome is Outcome.REJECTED
    assert "no UTC offset" in why
