"""Run the engine over recorded events in one process, in event-time order.

This is what ``rules test`` and ``rules backtest`` use: the same ``Engine``
as the live pipeline, with the Kafka hops (re-keying, the per-commune index,
commands) done in memory, and the clock ticking at exactly the moments a
silent station or an old report becomes due.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pipeline import state as sk  # the store's keys
from pipeline.engine import Engine, Outputs, areas_of
from pipeline.quality import Check
from pipeline.rules.kinds import window_due
from pipeline.rules.model import ReportCondition, WindowCondition
from topics.models import Command, Reading, Report, Warning

EPSILON = timedelta(seconds=1)


@dataclass
class Replay:
    engine: Engine
    store: dict[str, Any] = field(default_factory=dict)
    warnings: list[Warning] = field(default_factory=list)
    rejected: dict[Check, int] = field(default_factory=dict)
    # Each reading the quality gate set aside, with the check (for charts).
    set_aside: list[tuple[Reading, Check]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    clock: datetime | None = None

    def reading(self, reading: Reading) -> None:
        self._advance(reading.observed_at)
        out = self.engine.on_reading(reading, self.store)
        self.set_aside += [(reading, check) for check, _ in out.rejected]
        self._drain(out, reading.observed_at)

    def report(self, report: Report) -> None:
        self._advance(report.observed_at)
        for area in report.areas:
            self._drain(self.engine.on_report(report, area, self.store), report.observed_at)

    def command(self, command: Command) -> None:
        self._advance(command.at)
        self._drain(self.engine.on_command(command, self.store), command.at)

    def finish(self, at: datetime) -> None:
        """Let the clock run to ``at`` (gaps at the end of the data still count)."""
        self._advance(at)

    # -- internals --------------------------------------------------------------------

    def _due(self) -> datetime | None:
        """The earliest moment a tick would change something."""
        due: list[float] = []
        for rule in self.engine.rules.of_kind("staleness"):
            for k, v in self.store.items():
                if sk.is_heard_key(k) and "ts" in v:
                    limit = self.engine.silence_limit(rule, sk.heard_station(k), v)
                    due.append(v["ts"] + limit.total_seconds())
        for rule in self.engine.rules.of_kind("report"):
            cond = rule.condition
            assert isinstance(cond, ReportCondition)
            prefix = sk.rule_warnings_prefix(rule.id)
            for k, v in self.store.items():
                if k.startswith(prefix) and v.get("transition") != "cleared":
                    updated = datetime.fromisoformat(v["updated_at"]).timestamp()
                    due.append(updated + cond.expires_after.total_seconds())
        for rule in self.engine.rules.of_kind("window"):
            cond = rule.condition
            assert isinstance(cond, WindowCondition)
            prefix = sk.evaluators_prefix(rule.id)
            for k, v in self.store.items():
                if k.startswith(prefix):
                    w = self.store.get(sk.rule_warning_key(*sk.evaluator_of(k)))
                    if w and w.get("transition") != "cleared" and w.get("level", 0) > 0:
                        when = window_due(cond, v)
                        if when is not None:
                            due.append(when)
        # Only what falls after the last tick: earlier moments were handled then.
        after = self.clock.timestamp() if self.clock else float("-inf")
        due = [d for d in due if d + EPSILON.total_seconds() > after]
        if not due:
            return None
        tz = self.clock.tzinfo if self.clock else None
        return datetime.fromtimestamp(min(due), tz=tz)

    def _advance(self, until: datetime) -> None:
        if self.clock is None or until > self.clock:
            while True:
                due = self._due()
                if due is None or due + EPSILON > until:
                    break
                at = due + EPSILON
                self.clock = at
                self._drain(self.engine.on_tick(at, self.store), at)
            self.clock = until

    def _drain(self, first: Outputs, at: datetime) -> None:
        queue: deque[Outputs] = deque([first])
        while queue:
            out = queue.popleft()
            for check, _ in out.rejected:
                self.rejected[check] = self.rejected.get(check, 0) + 1
            self.errors += out.errors
            for key, reading in out.forwards:
                queue.append(self.engine.on_reading(reading, self.store, mode="grouped", key=key))
            for w in out.warnings:
                self.warnings.append(w)
                for area in out.fanout.get((w.warning_id, w.version), areas_of(w)):
                    queue.append(self.engine.on_warning(w, area, self.store, w.updated_at))
            for command in out.commands:
                queue.append(self.engine.on_command(command, self.store))
