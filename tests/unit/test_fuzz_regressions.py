"""Defects the fuzzers (tests/fuzz/) found, each kept as a plain regression test."""

from __future__ import annotations

import json

from pipeline.validate import Code, Refused, check_reading


def test_an_unknown_field_with_an_empty_or_blank_name_is_named_quoted() -> None:
    # Found by tests/fuzz/test_fuzz_messages.py: {"": null} was refused as
    # ": Extra inputs are not permitted", naming no field.
    for key, named in (("", '""'), (" ", '" "'), ("a.b", '"a.b"')):
        out = check_reading(json.dumps({key: None}).encode())
        assert isinstance(out, Refused) and out.code is Code.INVALID
        assert f"{named}: Extra inputs are not permitted" in out.errors
