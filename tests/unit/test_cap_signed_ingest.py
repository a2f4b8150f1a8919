"""Signed CAP from upstream agencies (feeds/cap_ingest.py): a sender configured with its
certificate has its alerts verified; a wrong, foreign or missing signature is refused,
dead-lettered with the reason and counted as bad_signature."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from alerting.cap_signature import CapSigner
from alerting.directory import Directory
from feeds.cap_alerts import CapConfig, ConfigError, ReportRules, load_config
from feeds.cap_ingest import CapIngest, Outcome
from feeds.sink import MemorySink
from pipeline.rules.loader import RuleSet
from tests.cap_keys import SigningKeys, make_signer
from tests.unit.test_feed_cap import NOW, REPO, dead, make_ingest, refused, reports, sample

SENDER = "cap@nchmf.gov.vn"  # the sender of tests/data/cap/cap_flood_upstream.xml
CAP = {"cap": "urn:oasis:names:tc:emergency:cap:1.2"}


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture(scope="module")
def rules(ruleset: RuleSet) -> ReportRules:
    return ReportRules.of(ruleset)


@pytest.fixture(scope="module")
def nchmf(tmp_path_factory: pytest.TempPathFactory) -> SigningKeys:
    # Valid when the tests' clock says it is (NOW), as the agency's would be.
    return make_signer(tmp_path_factory.mktemp("nchmf"), "nchmf", now=NOW)


def config_with(tmp_path: Path, senders: str) -> CapConfig:
    """The shipped config plus a ``senders:`` section, as an operator adds it."""
    text = (REPO / "config" / "cap_ingest.yaml").read_text(encoding="utf-8")
    path = tmp_path / "cap_ingest.yaml"
    path.write_text(text + "\nsenders:\n" + senders, encoding="utf-8")
    return load_config(path)


@pytest.fixture
def strict(tmp_path: Path, nchmf: SigningKeys) -> CapConfig:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "nchmf.pem").write_bytes(nchmf.cert_path.read_bytes())
    # A path relative to the config file, as the README shows.
    return config_with(tmp_path, f'  "{SENDER}":\n    certificates: [certs/nchmf.pem]\n')


def signed_by(keys: SigningKeys, document: bytes) -> bytes:
    return CapSigner.load(keys.key_path, keys.cert_path).sign(document)


def altered(signed: bytes) -> bytes:
    root = etree.fromstring(signed)
    for headline in root.iterfind("cap:info/cap:headline", CAP):
        headline.text = "Không có lũ: đã hết nguy hiểm"
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return out


def ingest_with(
    sink: MemorySink, directory: Directory, rules: ReportRules, config: CapConfig
) -> CapIngest:
    return make_ingest(sink, directory, rules, config)


async def test_a_signed_alert_of_a_configured_sender_is_verified_and_sent(
    sink: MemorySink,
    directory: Directory,
    rules: ReportRules,
    strict: CapConfig,
    nchmf: SigningKeys,
) -> None:
    ingest = ingest_with(sink, directory, rules, strict)
    [(outcome, _)] = await ingest.ingest(signed_by(nchmf, sample("cap_flood_upstream.xml")), "x")
    assert outcome is Outcome.SENT
    (report,) = reports(sink)
    assert report.text.startswith("Lũ trên sông Cầu tại Đáp Cầu vượt báo động II")


@pytest.mark.parametrize("case", ["altered", "unsigned", "another key"])
async def test_a_bad_or_missing_signature_is_refused_dead_lettered_and_counted(
    sink: MemorySink,
    directory: Directory,
    rules: ReportRules,
    strict: CapConfig,
    nchmf: SigningKeys,
    tmp_path: Path,
    case: str,
) -> None:
    plain = sample("cap_flood_upstream.xml")
    document = {
        "altered": lambda: altered(signed_by(nchmf, plain)),
        "unsigned": lambda: plain,
        "another key": lambda: signed_by(make_signer(tmp_path / "x", "x", now=NOW), plain),
    }[case]()
    ingest = ingest_with(sink, directory, rules, strict)
    before = refused("bad_signature")
    [(outcome, detail)] = await ingest.ingest(document, "upstream.xml")
    assert outcome is Outcome.REJECTED
    assert reports(sink) == []  # nothing reaches the pipeline
    expected = "not signed" if case == "unsigned" else "bad signature"
    assert expected in detail and SENDER in detail
    (letter,) = dead(sink)
    assert letter.reason == detail
    assert letter.original == document  # kept as received, to examine or replay
    assert refused("bad_signature") == before + 1


async def test_senders_not_configured_are_not_checked(
    sink: MemorySink, directory: Directory, rules: ReportRules, strict: CapConfig
) -> None:
    other = sample("cap_flood_upstream.xml", **{SENDER: "cap@other.gov.vn"})
    [(outcome, _)] = await ingest_with(sink, directory, rules, strict).ingest(other, "x")
    assert outcome is Outcome.SENT


async def test_while_not_required_unsigned_passes_but_a_bad_signature_does_not(
    sink: MemorySink,
    directory: Directory,
    rules: ReportRules,
    nchmf: SigningKeys,
    tmp_path: Path,
) -> None:
    config = config_with(
        tmp_path, f'  "{SENDER}":\n    certificates: [{nchmf.cert_path}]\n    required: false\n'
    )
    ingest = ingest_with(sink, directory, rules, config)
    plain = sample("cap_flood_upstream.xml")
    [(first, _)] = await ingest.ingest(plain, "x")
    assert first is Outcome.SENT
    again = plain.replace(b"<identifier>", b"<identifier>2-")
    [(second, detail)] = await ingest.ingest(altered(signed_by(nchmf, again)), "y")
    assert second is Outcome.REJECTED and "bad signature" in detail


async def test_a_signed_alert_inside_an_edxl_de_distribution_verifies(
    sink: MemorySink,
    directory: Directory,
    rules: ReportRules,
    strict: CapConfig,
    nchmf: SigningKeys,
) -> None:
    signed = signed_by(nchmf, sample("cap_flood_upstream.xml"))
    alert = signed.split(b"?>", 1)[1].strip()
    edxl = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<de:EDXLDistribution xmlns:de="urn:oasis:names:tc:emergency:EDXL:DE:1.0">'
        b"<de:distributionID>1</de:distributionID><de:contentObject><de:xmlContent>"
        b"<de:embeddedXMLContent>" + alert + b"</de:embeddedXMLContent>"
        b"</de:xmlContent></de:contentObject></de:EDXLDistribution>"
    )
    ingest = ingest_with(sink, directory, rules, strict)
    [(outcome, _)] = await ingest.ingest(edxl, "edxl.xml")
    assert outcome is Outcome.SENT
    tampered = edxl.replace("Đáp Cầu vượt".encode(), "Đáp Cầu dưới".encode())
    assert tampered != edxl
    [(outcome, detail)] = await make_ingest(MemorySink(), directory, rules, strict).ingest(
        tampered, "edxl.xml"
    )
    assert outcome is Outcome.REJECTED and "bad signature" in detail


def test_a_missing_certificate_file_stops_the_feed_at_start_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config_with(tmp_path, f'  "{SENDER}":\n    certificates: [certs/none.pem]\n')
    message = str(info.value)
    assert f"senders.{SENDER}.certificates" in message and "none.pem: cannot read" in message
    with pytest.raises(ConfigError, match="certificates"):
        config_with(tmp_path, f'  "{SENDER}":\n    certificates: []\n')
