"""Scenarios: realistic readings and reports for drills, the demo and the tests.

Each module builds one scenario from a start instant (``base.Scenario``); this
registry names them. ``canhbao simulate`` plays one into Kafka, ``canhbao demo``
runs one end to end, and tests/unit/test_scenarios.py replays each through the
engine to prove it raises what it says.
"""

from __future__ import annotations

from feeds.scenarios import air, cyber, dengue, faulty, flood, multi
from feeds.scenarios.base import Event, Scenario, Sent

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        multi.SCENARIO,
        flood.SCENARIO,
        air.SCENARIO,
        dengue.SCENARIO,
        cyber.SCENARIO,
        faulty.SCENARIO,
    )
}
# The default demo: warnings in every core domain and a scope escalation.
DEFAULT = multi.SCENARIO.name


def get(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise KeyError(f"no scenario {name!r}; choose from {', '.join(SCENARIOS)}") from None


__all__ = ["DEFAULT", "SCENARIOS", "Event", "Scenario", "Sent", "get"]
