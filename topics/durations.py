"""Durations as people write them in rule files, routing files and the command line
(``'90s'``, ``'10m'``, ``'24h'``, ``'7d'``, ``'1w'`` or a number of seconds), and the
pydantic type that reads and writes them. A contract every layer above may use."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> timedelta:
    """A positive duration: a ``timedelta``, a number of seconds, or a string like
    ``'90s'``, ``'10m'``, ``'24h'``, ``'7d'``, ``'1w'``; ``ValueError`` saying how
    otherwise."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '10m', '24h', '7d'")
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("-"):
            raise ValueError(f"duration must be positive, got {value!r}")
        m = _DURATION.match(text)
        if not m:
            raise ValueError(
                f"{value!r} is not a duration: use a number of seconds or e.g. '90s', '10m', "
                "'24h', '7d', '1w'"
            )
        seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    else:
        raise ValueError("a duration is a number of seconds or a string like '10m', '24h', '7d'")
    if seconds <= 0:
        raise ValueError(f"duration must be positive, got {value!r}")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:  # beyond timedelta's 999,999,999 days (or infinite)
        raise ValueError(f"duration {value!r} is too long") from None


def format_duration(value: timedelta) -> str:
    """The shortest exact form ``parse_duration`` reads back (``'90m'`` -> ``'90m'``,
    ``3600 s`` -> ``'1h'``); whole seconds."""
    seconds = int(value.total_seconds())
    for unit in ("w", "d", "h", "m"):
        if seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"


Duration = Annotated[
    timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]


def span_text(seconds: float | None) -> str:
    """A delay as people read it in a table: "4.2 s", "38 s", "12.5 min", "2.0 h";
    "—" when there is none (the indicators of ``canhbao indicators`` and the console)."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
