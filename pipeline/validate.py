"""Validation of incoming bytes: a ``Reading`` or a ``DeadLetter`` with a readable reason."""

from __future__ import annotations

import json

from pydantic import ValidationError

from topics.models import DeadLetter, Reading, Report

MAX_READING_BYTES = 64 * 1024


def field_errors(exc: ValidationError) -> list[str]:
    """Each pydantic error as 'field.path: message'."""
    out = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(message)"
        out.append(f"{loc}: {err['msg']}")
    return out


def _decode(raw: bytes | None, limit: int) -> tuple[dict[str, object] | None, str]:
    """The JSON object in ``raw``, or None and why not."""
    if not raw:
        return None, "empty message"
    if len(raw) > limit:
        return None, f"message is {len(raw)} bytes; at most {limit} are accepted"
    try:
        # Decode explicitly: json.loads(bytes) would guess UTF-16/32 and accept them.
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    if not isinstance(data, dict):
        return None, f"expected a JSON object, got {type(data).__name__}"
    return data, ""


def validate_report(
    raw: bytes | None,
    *,
    source_topic: str,
    partition: int | None = None,
    offset: int | None = None,
) -> Report | DeadLetter:
    data, why = _decode(raw, MAX_READING_BYTES)
    errors: list[str] = []
    if data is not None:
        try:
            return Report.model_validate(data)
        except ValidationError as exc:
            errors = field_errors(exc)
            why = "invalid report: " + "; ".join(errors)
    return DeadLetter(
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        original=raw or b"",
        stage="validate",
        reason=why,
        errors=errors,
    )


def validate_reading(
    raw: bytes | None,
    *,
    source_topic: str,
    partition: int | None = None,
    offset: int | None = None,
    key: bytes | None = None,
) -> Reading | DeadLetter:
    def reject(reason: str, errors: list[str] | None = None) -> DeadLetter:
        return DeadLetter(
            source_topic=source_topic,
            partition=partition,
            offset=offset,
            key=key,
            original=raw or b"",
            stage="validate",
            reason=reason,
            errors=errors or [],
        )

    data, why = _decode(raw, MAX_READING_BYTES)
    if data is None:
        return reject(why)
    try:
        reading = Reading.model_validate(data)
    except ValidationError as exc:
        errors = field_errors(exc)
        return reject("invalid reading: " + "; ".join(errors), errors)
    if key is not None and key.decode("utf-8", "replace") != reading.station_id:
        # The key decides the partition, and so the order and the worker that
        # holds the station's state: a mismatch would split a station's history.
        return reject(
            f"message key {key.decode('utf-8', 'replace')!r} does not match "
            f"station_id {reading.station_id!r}"
        )
    return reading
