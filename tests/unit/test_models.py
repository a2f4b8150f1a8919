"""The message contract: what a Reading accepts and rejects, and JSON round trips."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from topics.models import (
    Agency,
    Area,
    Audience,
    Channel,
    DeadLetter,
    DeliveryOutcome,
    DeliveryReceipt,
    Domain,
    Evidence,
    Notification,
    Reading,
    ScopeTier,
    Severity,
    Transition,
    Warning,
)

ICT = timezone(timedelta(hours=7))
WHEN = datetime(2025, 10, 7, 0, 0, tzinfo=ICT)


def _errors(exc: pytest.ExceptionInfo[ValidationError]) -> str:
    return str(exc.value)


def test_valid_reading_is_accepted(make_reading) -> None:
    r = make_reading(4.35)
    assert r.station_id == "dap-cau"
    assert r.domain is Domain.WATER
    assert r.value == 4.35
    assert r.observed_at.utcoffset() == timedelta(hours=7)
    assert r.schema_version == 1


def test_reading_from_json_bytes(reading_dict) -> None:
    import json

    r = Reading.model_validate_json(json.dumps(reading_dict()).encode())
    assert r.observed_at == WHEN


@pytest.mark.parametrize(
    "observed_at",
    [datetime(2025, 10, 7, 0, 0), "2025-10-07T00:00:00"],
    ids=["datetime", "iso-string"],
)
def test_naive_datetime_is_rejected(make_reading, observed_at) -> None:
    with pytest.raises(ValidationError) as exc:
        make_reading(observed_at=observed_at)
    assert "observed_at" in _errors(exc)
    assert "timezone" in _errors(exc)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), "NaN", "inf"])
def test_non_finite_value_is_rejected(make_reading, value) -> None:
    with pytest.raises(ValidationError) as exc:
        make_reading(value=value)
    assert "value" in _errors(exc)
    assert "finite" in _errors(exc)


def test_unknown_domain_is_rejected(make_reading) -> None:
    with pytest.raises(ValidationError) as exc:
        make_reading(domain="weather")
    assert "domain" in _errors(exc)


@pytest.mark.parametrize("station_id", ["Dap-Cau", "dap cau", "dap/cau", "-dap", "", "đáp-cầu"])
def test_bad_station_id_is_rejected(make_reading, station_id) -> None:
    with pytest.raises(ValidationError) as exc:
        make_reading(station_id=station_id)
    assert "station_id" in _errors(exc)


@pytest.mark.parametrize("station_id", ["dap-cau", "st.01", "vn:bn:042", "a_b"])
def test_reasonable_station_ids_are_accepted(make_reading, station_id) -> None:
    assert make_reading(station_id=station_id).station_id == station_id


def test_unknown_field_is_rejected(make_reading) -> None:
    with pytest.raises(ValidationError) as exc:
        make_reading(levle=2)
    assert "levle" in _errors(exc)
    assert "Extra inputs are not permitted" in _errors(exc)


def test_future_schema_version_is_rejected_naming_supported_range(make_reading) -> None:
    with pytest.raises(ValidationError) as exc:
        make_reading(schema_version=2)
    msg = _errors(exc)
    assert "schema_version 2 is not supported" in msg
    assert "1..1" in msg


def test_schema_version_zero_is_rejected(make_reading) -> None:
    with pytest.raises(ValidationError):
        make_reading(schema_version=0)


def test_reading_is_immutable(make_reading) -> None:
    r = make_reading(4.0)
    with pytest.raises(ValidationError):
        r.value = 9.9  # type: ignore[misc]


def _warning(**overrides) -> Warning:
    fields = {
        "warning_id": "water.flood.dap-cau:dap-cau",
        "version": 2,
        "rule_id": "water.flood.dap-cau",
        "domain": Domain.WATER,
        "hazard": "river_flood",
        "subject": "dap-cau",
        "transition": Transition.ESCALATED,
        "level": 2,
        "level_name": "II",
        "previous_level": 1,
        "severity": Severity.SEVERE,
        "areas": [Area(code="bn-vu-ninh", name="Phường Vũ Ninh", province="Bắc Ninh")],
        "scope_tier": ScopeTier.PROVINCE,
        "lead_agency": Agency(
            code="snnmt",
            name_vi="Sở Nông nghiệp và Môi trường",
            name_en="Department of Agriculture and Environment",
        ),
        "evidence": [
            Evidence(
                station_id="dap-cau",
                metric="water_level_m",
                value=5.38,
                observed_at=WHEN,
                threshold=5.3,
            )
        ],
        "raised_at": WHEN - timedelta(hours=1),
        "updated_at": WHEN,
        "labels": {"river": "Cầu"},
    }
    fields.update(overrides)
    return Warning(**fields)


def test_warning_json_round_trip() -> None:
    w = _warning()
    back = Warning.model_validate_json(w.to_bytes())
    assert back == w
    assert back.areas[0].name == "Phường Vũ Ninh"
    assert back.raised_at == WHEN - timedelta(hours=1)
    assert back.active


def test_cleared_warning_is_not_active() -> None:
    assert not _warning(transition=Transition.CLEARED, level=0, level_name="").active


def test_notification_json_round_trip() -> None:
    n = Notification(
        notification_id="water.flood.dap-cau:dap-cau:v2:snnmt-webhook",
        warning_id="water.flood.dap-cau:dap-cau",
        warning_version=2,
        receiver_id="snnmt-webhook",
        channel=Channel.WEBHOOK,
        audience=Audience.AGENCY,
        address="http://127.0.0.1:8787/hooks/snnmt",
        body="[CẢNH BÁO BÁO ĐỘNG II] ...",
        payload={"warning": {"level": 2}, "text": {"vi": "x", "en": "y"}},
        created_at=WHEN,
    )
    back = Notification.model_validate_json(n.to_bytes())
    assert back == n
    assert back.channel is Channel.WEBHOOK


def test_delivery_receipt_json_round_trip() -> None:
    r = DeliveryReceipt(
        notification_id="n1",
        warning_id="w1",
        receiver_id="snnmt-webhook",
        channel=Channel.WEBHOOK,
        attempt=2,
        outcome=DeliveryOutcome.RETRYING,
        status_code=503,
        error="service unavailable",
        latency_seconds=0.25,
        at=WHEN,
    )
    back = DeliveryReceipt.model_validate_json(r.to_bytes())
    assert back == r
    assert back.outcome is DeliveryOutcome.RETRYING


@pytest.mark.parametrize(
    "original",
    [
        b'{"station_id": "dap-cau"}',
        b"\xff\xfe\x00garbage\x80\x81 not utf-8 \xc3\x28",
        bytes(range(256)),
        b"",
    ],
    ids=["json", "non-utf8", "all-bytes", "empty"],
)
def test_dead_letter_keeps_original_bytes_exactly(original: bytes) -> None:
    dl = DeadLetter(
        source_topic="canhbao.ingest.readings",
        partition=3,
        offset=42,
        key=b"\x00\xffkey",
        original=original,
        stage="validate",
        reason="not UTF-8 text",
        at=WHEN,
    )
    raw = dl.to_bytes()
    raw.decode("utf-8")  # the dead letter itself is always valid UTF-8 JSON
    back = DeadLetter.model_validate_json(raw)
    assert back.original == original
    assert back.key == b"\x00\xffkey"
    assert back == dl


def test_dead_letter_without_key_round_trips() -> None:
    dl = DeadLetter(source_topic="t", original=b"\x80", stage="validate", reason="r", at=WHEN)
    back = DeadLetter.model_validate_json(dl.to_bytes())
    assert back.key is None
    assert back.original == b"\x80"


def test_one_severity_order_for_routes_reports_and_cap() -> None:
    ranks = [s.rank for s in (Severity.UNKNOWN, Severity.MINOR, Severity.MODERATE,
                              Severity.SEVERE, Severity.EXTREME)]  # fmt: skip
    assert ranks == [0, 1, 2, 3, 4]
    assert all(Severity.of_rank(s.rank) is s for s in Severity)
    assert Severity.of_rank(9) is Severity.UNKNOWN
    # A route matcher compares names by the same order; a word that is none ranks 0.
    assert Severity.rank_of("Severe") == 3 and Severity.rank_of("Dire") == 0
