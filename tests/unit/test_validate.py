"""validate_reading: bytes in, a Reading or a DeadLetter with a readable reason out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from alerting.directory import Directory
from pipeline.validate import (
    MAX_READING_BYTES,
    Code,
    Refused,
    Timeliness,
    TimePolicy,
    check_reading,
    check_report,
    check_time,
    validate_reading,
    validate_report,
)
from topics.models import DeadLetter, DrillClock, Reading, Report

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


# --- Time and the station registry: what the live pipeline takes (issue 15) -----------

NOW = datetime(2025, 10, 7, 1, 0, tzinfo=UTC)  # 08:00 in Vietnam, the readings' hour
POLICY = TimePolicy()


def _live(raw: bytes, directory: Directory, now: datetime = NOW, **kw: object) -> DeadLetter:
    return _dead(raw, now=now, policy=POLICY, directory=directory, **kw)


@pytest.mark.parametrize(
    ("stamp", "code", "words"),
    [
        ("2999-01-01T00:00:00Z", Code.FUTURE, "ahead of the pipeline's clock"),
        ("9999-12-31T23:59:59Z", Code.FUTURE, "years ahead"),
        ("2025-10-08T01:00:00Z", Code.FUTURE, "24 h ahead"),  # the "one day ahead"
        ("0001-01-01T00:00:00Z", Code.IMPLAUSIBLE, "not a plausible time"),
        ("1900-01-01T00:00:00Z", Code.IMPLAUSIBLE, "not a plausible time"),
        ("2022-03-01T00:00:00Z", Code.HISTORICAL, "beyond the live lateness bound of 6 h"),
    ],
)
def test_a_time_the_live_pipeline_cannot_take_is_dead_lettered_with_the_field(
    reading_dict, directory: Directory, stamp: str, code: Code, words: str
) -> None:
    """Issue 15: readings dated 2999, 0001, 1900, 9999 and one day ahead were accepted,
    and one far-future reading silenced its station for good."""
    raw = json.dumps(reading_dict(observed_at=stamp)).encode()
    dl = _live(raw, directory)
    assert words in dl.reason
    assert [e.split(":")[0] for e in dl.errors] == ["observed_at"]
    refused = check_reading(raw, now=NOW, policy=POLICY, directory=directory)
    assert isinstance(refused, Refused) and refused.code is code


def test_a_few_minutes_of_clock_drift_either_way_is_live(
    reading_dict, directory: Directory
) -> None:
    for minutes in (-359, -3, 0, 4):
        at = (NOW + timedelta(minutes=minutes)).isoformat()
        out = _check(
            json.dumps(reading_dict(observed_at=at)).encode(),
            now=NOW,
            policy=POLICY,
            directory=directory,
        )
        assert isinstance(out, Reading), (minutes, out)


def test_the_bounds_are_settings(reading_dict) -> None:
    from canhbao.settings import Settings

    settings = Settings(max_clock_skew=30, max_lateness=3600, earliest_observed_at=NOW)
    policy = settings.time_policy()
    assert policy.max_skew == timedelta(seconds=30)
    assert check_time(NOW + timedelta(minutes=1), NOW, policy) is not None
    late = check_time(NOW - timedelta(hours=2), NOW + timedelta(hours=3), policy)
    assert late is not None and late.kind is Timeliness.IMPLAUSIBLE
    late = check_time(NOW, NOW + timedelta(hours=2), policy)
    assert late is not None and late.kind is Timeliness.HISTORICAL


def test_a_drill_reading_is_judged_on_its_drill_clock(reading_dict, directory: Directory) -> None:
    """A drill at 2,000x dates its readings hours ahead of the wall clock: live on its own
    clock; a reading ahead of its own drill's clock is refused as any other would be."""
    drill = DrillClock(origin=NOW, start=NOW, speed=2000)
    wall = NOW + timedelta(seconds=10)  # 20,000 s of drill time have passed
    on_time = NOW + timedelta(seconds=19_000)
    raw = json.dumps(
        reading_dict(observed_at=on_time.isoformat(), drill=drill.model_dump(mode="json"))
    ).encode()
    assert isinstance(_check(raw, now=wall, policy=POLICY, directory=directory), Reading)
    # 2,000 x 5 min of drill time ahead of where the drill's clock is: too far.
    ahead = NOW + timedelta(seconds=20_000) + 2000 * timedelta(minutes=6)
    raw = json.dumps(
        reading_dict(observed_at=ahead.isoformat(), drill=drill.model_dump(mode="json"))
    ).encode()
    dl = _live(raw, directory, now=wall)
    assert "ahead of its drill's clock" in dl.reason


@pytest.mark.parametrize(
    ("fields", "code", "field", "words"),
    [
        ({"station_id": "cau-xe"}, Code.UNKNOWN_STATION, "station_id", "unknown station"),
        ({"metric": "rain_mm"}, Code.STATION_MISMATCH, "metric", "water_level_m, not rain_mm"),
        ({"domain": "health"}, Code.STATION_MISMATCH, "domain", "reports water, not health"),
        ({"area": "nowhere-commune"}, Code.UNKNOWN_AREA, "area", "unknown commune"),
        ({"area": "bn-luc-nam"}, Code.STATION_MISMATCH, "area", "does not report for"),
    ],
)
def test_a_reading_that_does_not_fit_the_station_registry_is_dead_lettered(
    reading_dict, directory: Directory, fields: dict[str, str], code: Code, field: str, words: str
) -> None:
    """Issue 15: readings from unknown stations, or with a metric or domain that is not
    the station's, were evaluated; they are refused with the reason."""
    raw = json.dumps(reading_dict(observed_at=NOW.isoformat(), **fields)).encode()
    key = fields.get("station_id", "dap-cau").encode()
    dl = _live(raw, directory, key=key)
    assert words in dl.reason
    assert dl.errors[0].startswith(f"{field}:")
    refused = check_reading(raw, now=NOW, policy=POLICY, directory=directory)
    assert isinstance(refused, Refused) and refused.code is code


def test_a_health_station_reports_for_its_commune_and_the_cdc_for_any(
    reading_dict, directory: Directory
) -> None:
    def reading(station: str, area: str) -> Reading | DeadLetter:
        raw = json.dumps(
            reading_dict(
                station_id=station,
                domain="health",
                metric="dengue_cases_weekly",
                area=area,
                observed_at=NOW.isoformat(),
            )
        ).encode()
        return _check(raw, now=NOW, policy=POLICY, directory=directory)

    assert isinstance(reading("tyt-bn-vu-ninh", "bn-vu-ninh"), Reading)
    assert isinstance(reading("tyt-bn-vu-ninh", "bn-kinh-bac"), DeadLetter)
    assert isinstance(reading("cdc-bac-ninh", "bn-son-dong"), Reading)


def test_a_report_about_an_unknown_commune_is_dead_lettered(directory: Directory) -> None:
    """Issue 15: a report for 'nowhere-commune' became a Severe warning for nowhere."""
    report = {
        "report_id": "r-1",
        "domain": "water",
        "category": "flooding",
        "severity": "Severe",
        "areas": ["bn-vu-ninh", "nowhere-commune"],
        "observed_at": NOW.isoformat(),
        "reporter": "someone",
    }
    raw = json.dumps(report).encode()
    dl = validate_report(
        raw, source_topic="canhbao.ingest.reports", now=NOW, policy=POLICY, directory=directory
    )
    assert isinstance(dl, DeadLetter)
    assert dl.errors == ["areas.1: unknown commune 'nowhere-commune' (not in the geography)"]
    report["areas"] = ["bn-vu-ninh"]
    ok = validate_report(
        json.dumps(report).encode(),
        source_topic="canhbao.ingest.reports",
        now=NOW,
        policy=POLICY,
        directory=directory,
    )
    assert isinstance(ok, Report)
    stale = {**report, "observed_at": "2023-01-01T00:00:00Z"}
    refused = check_report(json.dumps(stale).encode(), now=NOW, policy=POLICY)
    assert isinstance(refused, Refused) and refused.code is Code.HISTORICAL
