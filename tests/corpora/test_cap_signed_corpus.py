"""Real signed CAP (Environment Canada through NAAD, 2010s) through CAP ingest with its
sender's certificate configured: refused with a reason, never a crash.

The alert's signature is RSA-SHA1 (refused: SHA-1 is broken) and its ``<Signature
Id="NAADS Signature">`` is no valid XML ID, which the XML-DSig schema check reported
with an exception CAP ingest did not expect: the feed stopped."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from alerting.cap_signature import SenderTrust, SignatureError, Trust, load_certificates, verify
from alerting.directory import Directory
from feeds.cap_alerts import Areas, CapConfig
from feeds.cap_ingest import CapIngest, Outcome
from feeds.sink import MemorySink
from topics.catalogue import DEADLETTER
from topics.models import DeadLetter

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "data" / "corpora" / "cap"
SIGNED = (CORPUS / "google-canada_signed.cap").read_bytes()
CERTS = tuple(load_certificates(CORPUS / "google-environment_canada_x509_cert.pem"))
SENT = datetime.fromisoformat("2013-01-24T21:26:00+00:00")  # the alert's <sent>


def test_a_real_signature_outside_the_xml_dsig_schema_is_a_reason_not_a_crash() -> None:
    try:
        verify(SIGNED, CERTS, SENT)
    except SignatureError as exc:
        assert "NAADS Signature" in str(exc) or "sha1" in str(exc).lower(), exc
    else:
        raise AssertionError("an RSA-SHA1 signature was accepted")


async def test_the_signed_alert_of_a_configured_sender_is_dead_lettered_with_its_reason() -> None:
    directory = Directory.load(
        REPO / "config" / "geography.yaml", REPO / "config" / "directory.yaml"
    )
    sink = MemorySink()
    ingest = CapIngest(
        sink,
        Areas.of(directory),
        config=CapConfig(),
        trust=Trust({"cap-pac@ec.gc.ca": SenderTrust(CERTS, True)}),
        clock=lambda: SENT + timedelta(minutes=1),
    )
    outcomes = await ingest.ingest(SIGNED, "google-canada_signed.cap")
    assert [o for o, _ in outcomes] == [Outcome.REJECTED]
    (dead,) = [DeadLetter.model_validate_json(v) for v in sink.on(DEADLETTER)]
    assert "signature" in dead.reason and "cap-pac@ec.gc.ca" in dead.reason
