"""Durations read as people write them in rules, routes and on the command line, and
are written back in the shortest form that reads the same."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topics.durations import format_duration, parse_duration


@given(st.integers(min_value=1, max_value=10**8))
def test_a_written_duration_reads_back_the_same(seconds: int) -> None:
    text = format_duration(timedelta(seconds=seconds))
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_the_forms_rule_files_use() -> None:
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration(" 1.5h ") == timedelta(minutes=90)
    assert parse_duration(600) == timedelta(minutes=10)
    assert format_duration(timedelta(days=14)) == "2w"
    assert format_duration(timedelta(minutes=90)) == "90m"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("-5m", "must be positive"),
        ("10 parsecs", "is not a duration"),
        (True, "number of"),
        (0, "must be positive"),
    ],
)
def test_a_wrong_duration_is_refused_saying_how_to_write_one(value: object, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_duration(value)
