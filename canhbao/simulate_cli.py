"""``canhbao simulate SCENARIO``: feed a scenario's readings and reports into the pipeline."""

from __future__ import annotations

from typing import Any


def add_parsers(sub: Any) -> None:
    """Scenarios are not wired yet."""
