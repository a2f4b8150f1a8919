"""Defects the fuzzers (tests/fuzz/) found, each kept as a plain regression test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from alerting.routes import RoutingError, load_routing
from pipeline.validate import Code, Refused, check_reading

REPO = Path(__file__).resolve().parents[2]


def test_an_unknown_field_with_an_empty_or_blank_name_is_named_quoted() -> None:
    # Found by tests/fuzz/test_fuzz_messages.py: {"": null} was refused as
    # ": Extra inputs are not permitted", naming no field.
    for key, named in (("", '""'), (" ", '" "'), ("a.b", '"a.b"')):
        out = check_reading(json.dumps({key: None}).encode())
        assert isinstance(out, Refused) and out.code is Code.INVALID
        assert f"{named}: Extra inputs are not permitted" in out.errors


def _eve_alert(signature_id: str) -> bytes:
    return (
        b'{"event_type": "alert", "timestamp": "2025-11-10T02:00:02.000000+0700", '
        b'"src_ip": "203.0.113.7", "dest_ip": "10.10.1.15", "host": "ids-dc1", '
        b'"alert": {"severity": 1, "signature": "ET EXPLOIT x", '
        b'"category": "Attempted Administrator Privilege Gain", '
        b'"signature_id": ' + signature_id.encode() + b"}}"
    )


def test_an_eve_signature_id_that_is_no_number_is_refused_naming_it() -> None:
    # Found by tests/fuzz/test_fuzz_feeds.py: a text signature_id was refused as
    # "invalid literal for int() with base 10: ..." (no field named), and an infinite
    # one (JSON Infinity, which Python's json reads) raised OverflowError out of the
    # converter, stopping the feed.
    from pathlib import Path

    from alerting.directory import Directory
    from feeds.suricata import EveConfig, EveConverter, areas_of

    repo = Path(__file__).resolve().parents[2]
    directory = Directory.load(
        repo / "config" / "geography.yaml", repo / "config" / "directory.yaml"
    )
    # Rule 2024897 is one the SOC wants reported: its report names the rule parsed.
    converter = EveConverter(EveConfig(areas=areas_of(directory), report_sids=frozenset({2024897})))
    for bad in ('"abc"', "Infinity", "-1e999", "1.5", "true", "[1]"):
        out = converter.convert(_eve_alert(bad))
        assert out.error is not None and "alert.signature_id" in out.error, (bad, out.error)
        assert not out.readings and not out.reports
    for good in ("2024897", '"2024897"', "2024897.0"):
        out = EveConverter(converter.config).convert(_eve_alert(good))  # no cooldown yet
        assert out.error is None and out.reports, (good, out.error)
        assert out.reports[0].report_id.split(":")[2] == "2024897"


def test_an_eve_alert_without_a_flow_id_is_reported() -> None:
    # Found by tests/fuzz/test_fuzz_feeds.py: an alert line without flow_id (decoder
    # events have none) made the report id "…:20251110T020002000000", which is not a
    # valid id (upper-case T): the whole line, its reading too, was dead-lettered.
    from pathlib import Path

    from alerting.directory import Directory
    from feeds.suricata import EveConfig, EveConverter, areas_of

    repo = Path(__file__).resolve().parents[2]
    directory = Directory.load(
        repo / "config" / "geography.yaml", repo / "config" / "directory.yaml"
    )
    config = EveConfig(areas=areas_of(directory), report_sids=frozenset({2024897}))
    out = EveConverter(config).convert(_eve_alert("2024897"))
    assert out.error is None and len(out.readings) == 1
    (report,) = out.reports
    assert report.report_id == "suricata:ids-dc1:2024897:20251110t020002000000"
    odd = _eve_alert("2024897").replace(b'"host"', b'"flow_id": "Flow+7/A", "host"')
    (report,) = EveConverter(config).convert(odd).reports
    assert report.report_id == "suricata:ids-dc1:2024897:flow-7-a"


def test_a_route_duration_too_long_for_a_date_is_refused_naming_it(tmp_path: Path) -> None:
    """Found by the routes fuzzer at 2,000 examples: ``repeat_interval: 86400000000000``
    (seconds) overflowed timedelta and the OverflowError escaped the routes loader."""
    routes = yaml.safe_load((REPO / "config" / "routes.yaml").read_text(encoding="utf-8"))
    routes["route"]["repeat_interval"] = 86_400_000_000_000
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(routes), encoding="utf-8")
    with pytest.raises(RoutingError) as refused:
        load_routing(path)
    assert "repeat_interval" in str(refused.value) and "too long" in str(refused.value)
