"""Real CAP documents of national services (``tests/data/corpora/cap``: sources and
licences in ``tests/data/README.md``) through CAP ingest (``feeds/cap_alerts.py``,
``feeds/cap_ingest.py``): CAP 1.1 and 1.2, ``cap:`` prefixes, ISO-8859-1, several
languages, XML signatures, a Cancel without ``<info>``, EDXL-DE, Atom and RSS indexes.

What an operator relies on: every real document is read; an alert is refused only for
what it says (another country's areas, a Test, a Cancel, an event no rule takes), never
because it could not be parsed; the few documents that are broken are refused with
their reason; nothing raises; every alert ends as sent, skipped or dead-lettered.

Each alert is judged at its own ``<sent>`` time plus a minute (the corpora are years
old: at today's date they would all be history)."""

from __future__ import annotations

import functools
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from alerting.directory import Directory
from feeds.cap_alerts import (
    Areas,
    CapAlert,
    CapError,
    ReportRules,
    Skip,
    alerts_in,
    cap_datetime,
    index_items,
    load_config,
    parse_alert,
    parse_xml,
    to_report,
)
from feeds.cap_ingest import CapIngest, Outcome
from feeds.sink import MemorySink
from pipeline.rules.loader import load_rules
from pipeline.validate import TimePolicy
from topics.catalogue import DEADLETTER, INGEST_REPORTS
from topics.models import DeadLetter, Report

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "data" / "corpora" / "cap"
DOCS = {p.name: p.read_bytes() for p in sorted(CORPUS.iterdir()) if p.suffix != ".pem"}
INDEXES = {n for n in DOCS if n.endswith((".atom", ".rss"))}
ALERT_DOCS = sorted(set(DOCS) - INDEXES)

DIRECTORY = Directory.load(REPO / "config" / "geography.yaml", REPO / "config" / "directory.yaml")
AREAS = Areas.of(DIRECTORY)
CONFIG = load_config(REPO / "config" / "cap_ingest.yaml")
RULES = ReportRules.of(load_rules(REPO / "rules"))

# The reasons that say a document could not be read at all.
UNREAD = {"not_xml", "dtd", "too_large", "not_cap"}

# The only real documents refused as unreadable, and why.
UNREADABLE = {
    # Google's own tests of external entities (XXE): hostile, refused for their DTD.
    "google-xee.cap": "dtd",
    "google-xee.atom": "dtd",
    # Declares UTF-8 but holds Latin-1 bytes ("m\xe9t\xe9orologique"): not XML.
    "capparselib-pelmorex.atom": "not_xml",
    # Its namespace is "urn:oasis:names:tc:emergency:alerts:1.2", not CAP's.
    "capparselib-invalid_xmlns.cap": "not_cap",
}


def _elements(name: str) -> list[ET.Element]:
    return alerts_in(parse_xml(DOCS[name]))


def _alerts(name: str) -> list[CapAlert]:
    """The alerts of a document that CAP's own required elements let be read."""
    found = []
    for el in _elements(name):
        try:
            found.append(parse_alert(el))
        except CapError:
            continue
    return found


def _as_if_ours() -> Areas:
    """Every geocode of the corpus taken as one of our communes: what the alerts would
    become if they were for this province."""
    codes: set[str] = set()
    for name in set(ALERT_DOCS) - set(UNREADABLE):
        try:
            alerts = _alerts(name)
        except CapError:
            continue  # its own test says why
        codes |= {value for a in alerts for info in a.infos for _, value in info.geocodes}
    return Areas(dict.fromkeys(codes, "bn-vu-ninh") | AREAS.by_geocode, AREAS.codes)


OURS = _as_if_ours()


def _judge(el: ET.Element, areas: Areas, rules: ReportRules | None) -> str:
    """ "sent", or the label the alert is skipped or refused under."""
    try:
        alert = parse_alert(el)
        report = to_report(
            alert,
            areas,
            CONFIG,
            now=cap_datetime(alert.sent, "sent") + timedelta(minutes=1),
            accept_exercise=False,
            rules=rules,
        )
    except (Skip, CapError) as exc:
        assert str(exc), exc.reason
        return exc.reason
    assert isinstance(report, Report) and report.areas
    return "sent"


def outcomes_as_if_ours(name: str) -> list[str]:
    return [_judge(el, OURS, None) for el in _elements(name)]


def outcomes_as_deployed(name: str) -> list[str]:
    return [_judge(el, AREAS, RULES) for el in _elements(name)]


# What each alert becomes if its areas were ours and a rule took any event. "invalid"
# only for documents that are wrong by CAP itself (Google's error samples: an empty
# <severity>; an alert of an EDXL-DE without identifier, sender, sent, status and
# msgType) or carry nothing to report (an Alert without <info>). no_area: the alert
# gives its area by polygon or circle only, no geocode (canhbao matches geocodes).
AS_IF_OURS: dict[str, list[str]] = {
    "capparselib-CanadaNaad.xml": ["sent"],
    "capparselib-NOAA_MultiplePolygons.cap": ["sent"],
    "capparselib-australia_bom.cap": ["sent"],
    "capparselib-bushfire_valid.edxlde": ["sent"] * 4 + ["ignored"] * 2 + ["sent"] * 53,
    "capparselib-iceland_met_office.cap": ["sent"],
    "capparselib-mexico.xml": ["no_area"],
    "capparselib-no_info_tag.cap": ["cancel"],
    "capparselib-ph.cap": ["status"],
    "capparselib-rfs.xml": ["sent"],
    "capparselib-smhi.se.alerts.cap": ["no_area"] * 17,
    "capparselib-sweden.cap": ["no_area"],
    "capparselib-taiwan.cap": ["sent"],
    "google-43b080713727.cap": ["no_area"],
    "google-KAR0-0306112239-SW.cap": ["sent"],
    "google-australia.cap": ["sent"],
    "google-bushfire.edxlde": ["sent"] * 7,
    "google-bushfire_invalid.edxlde": ["sent", "invalid"] + ["sent"] * 5,
    "google-canada.cap": ["sent"],
    "google-canada_signed.cap": ["sent"],
    "google-earthquake-iso8859-1.cap": ["no_area"],
    "google-earthquake.cap": ["no_area"],
    "google-earthquake_signed.cap": ["no_area"],
    "google-no_optional_fields.cap": ["invalid"],
    "google-noaa_errors.cap": ["invalid"],
    "google-thunderstorm.cap": ["sent"],
    "google-wcatwc-warning.cap": ["sent"],
    "google-weather.cap": ["sent"],
}

# Reasons an alert of another country may be refused for, as canhbao is deployed.
FOR_WHAT_IT_SAYS = {"no_area", "no_rule", "ignored", "cancel", "status", "below_min_severity"}


@pytest.mark.parametrize("name", ALERT_DOCS)
def test_each_real_alert_is_read_and_judged_for_what_it_says(name: str) -> None:
    if name in UNREADABLE:
        with pytest.raises(CapError) as refused:
            alerts_in(parse_xml(DOCS[name]))
        assert refused.value.reason == UNREADABLE[name] and str(refused.value)
        return
    assert outcomes_as_if_ours(name) == AS_IF_OURS[name]
    # As deployed (our communes, our rules), none of these foreign alerts is sent, and
    # each is refused for its content; "invalid" only where it was so above.
    deployed = outcomes_as_deployed(name)
    assert len(deployed) == len(AS_IF_OURS[name])
    for here, ours in zip(deployed, AS_IF_OURS[name], strict=True):
        assert here in FOR_WHAT_IT_SAYS or here == ours == "invalid", (here, ours)


def test_the_corpus_holds_what_the_issue_asks_for() -> None:
    """So that a file removed or replaced does not quietly narrow what is tested."""
    alerts = {n: _alerts(n) for n in AS_IF_OURS}
    versions = {a.version for found in alerts.values() for a in found}
    assert versions == {"1.1", "1.2"}
    assert any(b"<cap:alert" in DOCS[n] for n in AS_IF_OURS)  # prefixed
    assert any(b'encoding="ISO-8859-1"' in DOCS[n] for n in AS_IF_OURS)
    assert any(b"<Signature" in DOCS[n] for n in AS_IF_OURS)
    assert any(
        a.msg_type == "Cancel" and not a.infos for a in alerts["capparselib-no_info_tag.cap"]
    )
    languages = {
        i.language.lower()[:2] for found in alerts.values() for a in found for i in a.infos
    }
    assert {"en", "fr", "es", "sv", "is", "zh"} <= languages
    assert max(DOCS[n].count(b"polygon>") // 2 for n in AS_IF_OURS) >= 40
    assert sum(n.endswith(".edxlde") or b"EDXLDistribution" in DOCS[n] for n in AS_IF_OURS) >= 3
    assert {n.rsplit(".", 1)[1] for n in INDEXES} == {"atom", "rss"}


def test_a_text_in_latin_1_reads_as_its_sender_wrote_it() -> None:
    (alert,) = _alerts("google-earthquake-iso8859-1.cap")
    assert "near Usulután, Usulután, El Salvador" in alert.infos[0].description


# --- Indexes ---------------------------------------------------------------------------------

# Entries of each index: with alerts inline, or linking to a CAP document.
INDEX_ENTRIES = {
    "capparselib-oregon_nws.atom": (1, 1),
    "capparselib-sweden.atom": (4, 0),
    "capparselib-us_nws_weather.atom": (2, 0),
    "capparselib-usgs_alerthub.atom": (1, 0),
    "google-amber.atom": (1, 1),
    "google-amber.rss": (1, 0),
    "google-canada_signed.atom": (1, 1),
    "google-earthquake.atom": (1, 1),
    "google-earthquake_index.atom": (1, 0),
    "google-empty_weather_index.atom": (0, 0),
    "google-ny_index.rss": (2, 0),
    "google-weather.atom": (1, 1),
    "google-weather_index.atom": (2, 0),
}


@pytest.mark.parametrize("name", sorted(INDEXES - set(UNREADABLE)))
def test_each_real_index_lists_every_entry_with_its_alerts_or_link(name: str) -> None:
    items = index_items(parse_xml(DOCS[name]))
    assert items is not None
    entries, inline = INDEX_ENTRIES[name]
    assert len(items) == entries == len(re.findall(rb"<(?:\w+:)?(?:entry|item)>", DOCS[name]))
    assert sum(bool(i.inline) for i in items) == inline
    for item in items:
        # Each entry is fetched (a link) or read (inline): none is dropped as linkless.
        assert item.inline or (item.link or "").startswith("http"), item
        for el in item.inline:
            parse_alert(el)


def test_an_index_that_types_its_cap_links_as_atom_is_followed() -> None:
    """Sweden's national feed (Krisinformation) links each CAP message with
    type="application/atom+xml": its entries were all skipped as linking to nothing."""
    items = index_items(parse_xml(DOCS["capparselib-sweden.atom"]))
    assert items is not None
    assert [i.link for i in items][:2] == [
        "http://api.krisinformation.se/v1/capmessage/11337sv?format=xml",
        "http://api.krisinformation.se/v1/capmessage/11324sv?format=xml",
    ]


def test_a_list_of_alerts_from_a_national_service_is_read_alert_by_alert() -> None:
    """SMHI (Sweden) serves its warnings as <alert> elements in one <alerts> of the CAP
    namespace: the whole list was refused as "neither a CAP alert nor EDXL-DE"."""
    alerts = _alerts("capparselib-smhi.se.alerts.cap")
    assert len(alerts) == 17
    assert {a.sender for a in alerts} == {"noreplyvarning@smhi.se"}


# --- Through CapIngest: counts add up ---------------------------------------------------------


def _at(at: datetime) -> datetime:
    return at


def _clock(name: str) -> datetime:
    sent = [cap_datetime(a.sent, "sent") for a in _alerts(name)]
    return max(sent) + timedelta(minutes=1)


async def test_ingest_sends_skips_or_dead_letters_every_alert_and_the_counts_add_up() -> None:
    sink = MemorySink()
    outcomes: list[tuple[Outcome, str]] = []
    sent_alerts = 0
    # A document is judged at one time, its latest <sent>; an EDXL-DE snapshot of a
    # national feed holds alerts sent over two days, so history here starts at 3 days.
    policy = TimePolicy(max_lateness=timedelta(days=3))
    for name in ALERT_DOCS:
        at = _clock(name) if name not in UNREADABLE else datetime.now().astimezone()
        ingest = CapIngest(
            sink, OURS, config=CONFIG, policy=policy, clock=functools.partial(_at, at)
        )
        got = await ingest.ingest(DOCS[name], name)
        assert all(detail for _, detail in got)
        outcomes += got
        sent_alerts += len(AS_IF_OURS.get(name, ["refused"]))
    # One outcome per alert (an unreadable document counts once): none lost or doubled.
    assert len(outcomes) == sent_alerts
    kinds = [o for o, _ in outcomes]
    reports = [Report.model_validate_json(v) for v in sink.on(INGEST_REPORTS)]
    dead = [DeadLetter.model_validate_json(v) for v in sink.on(DEADLETTER)]
    assert kinds.count(Outcome.SENT) == len(reports) > 0
    assert kinds.count(Outcome.REJECTED) == len(dead)
    assert all(d.reason and d.original for d in dead)
    # What the table above sends, but three alerts of that snapshot that had expired
    # when its last alert was sent.
    expired = [d for o, d in outcomes if o is Outcome.SKIPPED and "expired at" in d]
    assert len(expired) == 3
    assert len(reports) == sum(o.count("sent") for o in AS_IF_OURS.values()) - len(expired)
