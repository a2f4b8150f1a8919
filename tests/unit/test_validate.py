"""validate_reading: bytes in, a Reading or a DeadLetter with a readable reason out."""

from __future__ import annotations

import json

import pytest

from pipeline.validate import MAX_READING_BYTES, validate_reading
from topics.models import DeadLetter, Reading

TOPIC = "canhbao.ingest.readings"


def _check(raw: bytes | None, **kw) -> Reading | DeadLetter:
    return validate_reading(raw, source_topic=TOPIC, partition=2, offset=1234, **kw)


def _dead(raw: bytes, **kw) -> DeadLetter:
    out = _check(raw, **kw)
    assert isinstance(out, DeadLetter), out
    assert out.original == raw
    assert out.source_topic == TOPIC
    assert out.partition == 2
    assert out.offset == 1234
    assert out.stage == "validate"
    return out


def test_valid_payload_returns_reading(reading_dict) -> None:
    out = _check(json.dumps(reading_dict()).encode(), key=b"dap-cau")
    assert isinstance(out, Reading)
    assert out.station_id == "dap-cau"
    assert out.value == 4.35


def test_valid_payload_without_key_returns_reading(reading_dict) -> None:
    assert isinstance(_check(json.dumps(reading_dict()).encode()), Reading)


def test_non_ascii_text_is_fine(reading_dict) -> None:
    raw = json.dumps(reading_dict(source="Trạm Đáp Cầu"), ensure_ascii=False).encode()
    out = _check(raw)
    assert isinstance(out, Reading)
    assert out.source == "Trạm Đáp Cầu"


def test_bad_json() -> None:
    dl = _dead(b'{"station_id": "dap-cau", ')
    assert dl.reason.startswith("not valid JSON")
    assert "line 1" in dl.reason


def test_missing_observed_at(reading_dict) -> None:
    dl = _dead(json.dumps(reading_dict(observed_at=None)).encode())
    assert "observed_at" in dl.reason
    assert "required" in dl.reason.lower()
    assert any(e.startswith("observed_at") for e in dl.errors)


def test_wrong_type_for_value(reading_dict) -> None:
    dl = _dead(json.dumps(reading_dict(value="high")).encode())
    assert "value" in dl.reason
    assert "number" in dl.reason
    assert dl.errors and dl.errors[0].startswith("value:")


def test_all_field_errors_are_listed(reading_dict) -> None:
    dl = _dead(json.dumps(reading_dict(value="high", domain="weather")).encode())
    fields = sorted(e.split(":")[0] for e in dl.errors)
    assert fields == ["domain", "value"]


def test_json_nan_value_is_rejected(reading_dict) -> None:
    raw = json.dumps(reading_dict(value=float("nan"))).encode()
    assert b"NaN" in raw
    dl = _dead(raw)
    assert "value" in dl.reason and "finite" in dl.reason


def test_naive_timestamp_is_rejected(reading_dict) -> None:
    dl = _dead(json.dumps(reading_dict(observed_at="2025-10-07T00:00:00")).encode())
    assert "observed_at" in dl.reason and "timezone" in dl.reason


def test_future_schema_version_is_dead_lettered(reading_dict) -> None:
    dl = _dead(json.dumps(reading_dict(schema_version=2)).encode())
    assert "schema_version" in dl.reason and "1..1" in dl.reason


@pytest.mark.parametrize(("raw", "kind"), [(b"[1, 2]", "list"), (b'"x"', "str"), (b"42", "int")])
def test_json_that_is_not_an_object(raw: bytes, kind: str) -> None:
    dl = _dead(raw)
    assert dl.reason == f"expected a JSON object, got {kind}"


def test_empty_bytes() -> None:
    dl = _dead(b"")
    assert dl.reason == "empty message"


def test_none_value_is_empty_message() -> None:
    out = _check(None)
    assert isinstance(out, DeadLetter)
    assert out.reason == "empty message"
    assert out.original == b""


def test_non_utf8_bytes(reading_dict) -> None:
    raw = json.dumps(reading_dict(source="X")).encode().replace(b'"X"', b'"caf\xe9"')
    dl = _dead(raw)
    assert "UTF-8" in dl.reason


def test_oversize_message() -> None:
    raw = b'{"pad": "' + b"x" * MAX_READING_BYTES + b'"}'
    assert len(raw) > 64 * 1024
    dl = _dead(raw)
    assert str(len(raw)) in dl.reason
    assert "at most 65536" in dl.reason


def test_message_at_the_size_limit_is_not_rejected_for_size(reading_dict) -> None:
    raw = json.dumps(reading_dict()).encode()
    raw = raw[:-1] + b" " * (MAX_READING_BYTES - len(raw)) + b"}"
    assert len(raw) == MAX_READING_BYTES
    assert isinstance(_check(raw), Reading)


def test_key_must_match_station_id(reading_dict) -> None:
    raw = json.dumps(reading_dict()).encode()
    dl = _dead(raw, key=b"luc-nam")
    assert "luc-nam" in dl.reason and "dap-cau" in dl.reason
    assert "does not match" in dl.reason
    assert dl.key == b"luc-nam"


def test_dead_letter_survives_its_own_topic(reading_dict) -> None:
    raw = b"\xff\xfe\xfd not json"
    dl = _dead(raw, key=b"\xff")
    back = DeadLetter.model_validate_json(dl.to_bytes())
    assert back.original == raw
    assert back.key == b"\xff"
    assert back.reason == dl.reason
