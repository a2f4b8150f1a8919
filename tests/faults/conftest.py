"""The fault suite's results table, printed at the end of the run (and copied by hand
into RELIABILITY.md): one row per fault, as counted at the receivers and in the record."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest


@dataclass
class Row:
    fault: str
    expected: str = ""  # e.g. "4 warnings, 20 notifications"
    delivered: int = 0  # expected notifications that reached their receiver
    duplicates: int = 0  # a notification accepted twice by a receiver
    dropped: int = 0  # repeats a receiver dropped by their idempotency key (documented)
    dead_lettered: str = "0"
    recovery_s: float | None = None  # from the fault until all was delivered and recorded
    problems: list[str] = field(default_factory=list)
    skipped: str = ""  # why the fault was not injected (a server not installed)


RESULTS: list[Row] = []


def table(rows: list[Row]) -> str:
    lines = [
        "| fault | expected | delivered | duplicates (dropped by key) | dead-lettered "
        "| recovery s | result |",
        "|---|---|---:|---:|---|---:|---|",
    ]
    for r in rows:
        rec = "" if r.recovery_s is None else f"{r.recovery_s:.1f}"
        verdict = "ok" if not r.problems else "FAIL: " + "; ".join(r.problems)[:300]
        if r.skipped and not r.problems:
            verdict = f"skipped: {r.skipped}"
        lines.append(
            f"| {r.fault} | {r.expected} | {r.delivered} | {r.duplicates} ({r.dropped}) | "
            f"{r.dead_lettered} | {rec} | {verdict} |"
        )
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if RESULTS:
        terminalreporter.section("fault suite (tests/faults): results on Apache Kafka")
        terminalreporter.write_line(table(RESULTS))
