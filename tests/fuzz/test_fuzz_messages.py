"""Fuzzed messages on the input topics: readings and reports (the validate stage's
decoders, ``pipeline.validate``), operator commands and approvals (their contracts,
``topics.models``). Bytes of any kind, JSON of any shape, and valid messages with a
few fields changed, removed or added."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from alerting.directory import Directory
from pipeline.validate import Code, Refused, TimePolicy, check_reading, check_report
from tests.fuzz.conftest import FUZZ, assert_names_fields, json_values, model_fields, mutated, tally
from tests.unit.test_cap_feed import make_warning
from topics.errors import field_errors
from topics.models import ApprovalEvent, Broadcast, Command, Reading, Report

REPO = Path(__file__).resolve().parents[2]
DIRECTORY = Directory.load(REPO / "config" / "geography.yaml", REPO / "config" / "directory.yaml")
ICT = timezone(timedelta(hours=7))
NOW = datetime(2025, 10, 7, 6, 0, tzinfo=ICT)
POLICY = TimePolicy()

READING = {
    "station_id": "dap-cau",
    "domain": "water",
    "metric": "water_level_m",
    "value": 4.4,
    "unit": "m",
    "observed_at": "2025-10-07T05:59:00+07:00",
    "source": "fuzz",
    "area": "bn-vu-ninh",
}
REPORT = {
    "report_id": "r-1",
    "domain": "water",
    "category": "flooding",
    "severity": "Severe",
    "areas": ["bn-vu-ninh", "bn-kinh-bac"],
    "observed_at": "2025-10-07T05:50:00+07:00",
    "reporter": "UBND xã",
    "text": "Nước tràn qua đê",
}
COMMANDS = [
    {
        "command_id": "c-1",
        "warning_id": "water.flood.dap-cau:dap-cau",
        "action": "set_phase",
        "actor": "Trực ban A",
        "reason": "lũ lên nhanh",
        "phase": 2,
        "at": "2025-10-07T06:00:00+07:00",
    },
    {
        "command_id": "c-2",
        "warning_id": "water.flood.dap-cau:dap-cau",
        "action": "raise_risk",
        "actor": "Trực ban A",
        "reason": "lũ và sạt lở",
        "risk_by": 1,
        "evidence": [
            {
                "station_id": "dap-cau",
                "metric": "water_level_m",
                "value": 4.4,
                "observed_at": "2025-10-07T05:59:00+07:00",
                "threshold": 4.3,
            }
        ],
    },
]


def _approvals() -> list[dict[str, Any]]:
    warning = make_warning(DIRECTORY)
    broadcast = Broadcast(
        broadcast_id=f"{warning.warning_id}:v{warning.version}:citizens",
        warning=warning,
        communes=["bn-vu-ninh"],
        channels=["sms"],
        requested_at=NOW,
        expires_at=NOW + timedelta(minutes=30),
    )
    base = {"event_id": "e-1", "broadcast_id": broadcast.broadcast_id, "actor": "Trực ban A"}
    return [
        json.loads(ApprovalEvent(**base, action="request", broadcast=broadcast).model_dump_json()),
        json.loads(ApprovalEvent(**base, action="cancel", reason="nhầm").model_dump_json()),
    ]


APPROVALS = _approvals()


def payloads(valid: list[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    """Raw bytes, JSON of any shape, and valid messages with mutations."""
    docs = st.one_of([mutated(v) for v in valid]) | json_values
    as_json = docs.map(lambda d: json.dumps(d, ensure_ascii=False).encode("utf-8"))
    return as_json | st.binary(max_size=200) | docs.map(lambda d: json.dumps(d).encode("utf-16"))


def judge(result: BaseModel | Refused, model: type[BaseModel]) -> str:
    if isinstance(result, model):
        return "accepted"
    assert isinstance(result, Refused), result
    assert isinstance(result.code, Code) and result.reason
    if result.code is Code.MALFORMED:
        assert not result.errors  # not a JSON object: nothing to name but the message
    elif result.code is not Code.KEY_MISMATCH:
        assert_names_fields(result.errors, model_fields(model))
    return "refused"


@FUZZ
@given(st.lists(payloads([READING]), min_size=1, max_size=5), st.booleans())
def test_readings_are_accepted_or_refused_with_their_field(batch: list[bytes], live: bool) -> None:
    context: dict[str, Any] = {"now": NOW, "policy": POLICY, "directory": DIRECTORY} if live else {}
    outcomes = [judge(check_reading(raw, **context), Reading) for raw in batch]
    tally(outcomes, len(batch))


@FUZZ
@given(st.lists(payloads([REPORT]), min_size=1, max_size=5), st.booleans())
def test_reports_are_accepted_or_refused_with_their_field(batch: list[bytes], live: bool) -> None:
    context: dict[str, Any] = {"now": NOW, "policy": POLICY, "directory": DIRECTORY} if live else {}
    outcomes = [judge(check_report(raw, **context), Report) for raw in batch]
    tally(outcomes, len(batch))


def decode(model: type[BaseModel], raw: bytes) -> str:
    """What a consumer of the topic does: the contract's own JSON decoder."""
    try:
        model.model_validate_json(raw)
    except ValidationError as exc:
        errors = field_errors(exc, "(message)")
        # Not strict JSON, or not an object: the message as a whole may be at fault.
        assert_names_fields(errors, model_fields(model), whole_ok=not is_object(raw))
        return "refused"
    return "accepted"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity: Python's json takes them


def is_object(raw: bytes) -> bool:
    """Whether ``raw`` is a JSON object (strict JSON, as pydantic reads it)."""
    try:
        return isinstance(json.loads(raw.decode("utf-8"), parse_constant=_no_constant), dict)
    except (UnicodeDecodeError, ValueError):
        return False


@FUZZ
@given(st.lists(payloads(COMMANDS), min_size=1, max_size=5))
def test_commands_are_accepted_or_refused_with_their_field(batch: list[bytes]) -> None:
    tally([decode(Command, raw) for raw in batch], len(batch))


@FUZZ
@given(st.lists(payloads(APPROVALS), min_size=1, max_size=3))
def test_approvals_are_accepted_or_refused_with_their_field(batch: list[bytes]) -> None:
    tally([decode(ApprovalEvent, raw) for raw in batch], len(batch))


def test_the_valid_messages_the_fuzzers_start_from_are_accepted() -> None:
    """Else the mutations would only ever test refusals."""
    for doc in [READING]:
        raw = json.dumps(doc).encode()
        assert isinstance(check_reading(raw, now=NOW, policy=POLICY, directory=DIRECTORY), Reading)
    assert isinstance(
        check_report(json.dumps(REPORT).encode(), now=NOW, policy=POLICY, directory=DIRECTORY),
        Report,
    )
    for doc in COMMANDS:
        Command.model_validate_json(json.dumps(doc))
    for doc in APPROVALS:
        ApprovalEvent.model_validate_json(json.dumps(doc))
