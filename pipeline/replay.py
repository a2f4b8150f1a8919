"""Run the engine over recorded events in one process, in event-time order.

This is what ``rules test`` and ``rules backtest`` use: the same ``Engine``
as the live pipeline, with the Kafka hops (re-keying, the per-commune index,
commands) done in memory, and the clock ticking at exactly the moments a
silent station or an old report becomes due.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pipeline import state as sk  # the store's keys
from pipeline.engine import Engine, Outputs, areas_of
from pipeline.quality import Check
from pipeline.rules.kinds import window_due
from pipeline.rules.model import ReportCondition, Rule, WindowCondition
from topics.models import Command, Reading, Report, Warning

EPSILON = timedelta(seconds=1)
_WARNINGS = sk.Kind.WARNING.prefix
_HEARD = sk.Kind.HEARD.prefix


class TrackedStore(dict[str, Any]):
    """A dict that remembers which keys were written since it was last asked: the
    replay's clock then re-reads only those to know when the next tick is due, instead
    of the whole store for every event (a year of history has millions)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.written: set[str] = set(self)

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.written.add(key)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.written.add(key)

    def pop(self, key: str, *default: Any) -> Any:
        self.written.add(key)
        return super().pop(key, *default)

    def setdefault(self, key: str, default: Any = None) -> Any:
        self.written.add(key)
        return super().setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def clear(self) -> None:
        self.written.update(self)
        super().clear()

    def popitem(self) -> tuple[str, Any]:
        key, value = super().popitem()
        self.written.add(key)
        return key, value

    def take_written(self) -> set[str]:
        written, self.written = self.written, set()
        return written


@dataclass
class Replay:
    engine: Engine
    store: dict[str, Any] = field(default_factory=TrackedStore)
    warnings: list[Warning] = field(default_factory=list)
    rejected: dict[Check, int] = field(default_factory=dict)
    # Each reading the quality gate set aside, with the check (for charts).
    set_aside: list[tuple[Reading, Check]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    clock: datetime | None = None

    def reading(self, reading: Reading) -> None:
        at = reading.observed_at
        self._advance(at)
        out = self.engine.on_reading(reading, self.store)
        if out.rejected:
            self.set_aside += [(reading, check) for check, _ in out.rejected]
        self._drain(out, at)

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

    # The moment each key of the store makes a tick due (None: none), and a heap of
    # (moment, key) with stale entries skipped when popped: kept up to date from the
    # keys written since the last look.
    _key_due: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    _heap: list[tuple[float, str]] = field(default_factory=list, init=False, repr=False)
    _limits: dict[tuple[str, str], tuple[tuple[float, ...], float]] = field(
        default_factory=dict, init=False, repr=False
    )

    def _due(self) -> datetime | None:
        """The earliest moment a tick would change something."""
        if not isinstance(self.store, TrackedStore):
            return self._due_scan()
        for key in self._touched(self.store.take_written()):
            when = self._due_of(key)
            if when is None:
                self._key_due.pop(key, None)
            elif self._key_due.get(key) != when:
                self._key_due[key] = when
                heapq.heappush(self._heap, (when, key))
        after = self.clock.timestamp() if self.clock else float("-inf")
        heap = self._heap
        while heap:
            when, key = heap[0]
            # Stale (the key's moment changed since) or already handled by a tick.
            if self._key_due.get(key) != when or when + EPSILON.total_seconds() <= after:
                heapq.heappop(heap)
                continue
            tz = self.clock.tzinfo if self.clock else None
            return datetime.fromtimestamp(when, tz=tz)
        return None

    def _touched(self, written: set[str]) -> set[str]:
        """The written keys (the set itself, added to) and the keys whose moment
        depends on them: a window's evaluator is due only while its warning is active."""
        extra = []
        for key in written:
            if key.startswith(_WARNINGS):
                v = self.store.get(key)
                if v and "rule_id" in v and "subject" in v:
                    extra.append(sk.evaluator_key(v["rule_id"], v["subject"]))
        written.update(extra)
        return written

    def _due_of(self, key: str) -> float | None:
        """The earliest moment ``key`` makes a tick due, as the full scan computes it."""
        if sk.is_quality_key(key):
            return None  # written for every reading, never makes a tick due
        v = self.store.get(key)
        if not v:
            return None
        rules = self.engine.rules
        if key.startswith(_HEARD):  # written for every reading too: no lists here
            ts = v.get("ts")
            if ts is None:
                return None
            station = key[len(_HEARD) :]
            first: float | None = None
            for rule in rules.kind("staleness"):
                when = ts + self._silence_limit(rule, station, v)
                if first is None or when < first:
                    first = when
            return first
        due: list[float] = []
        kind = sk.kind_of(key)
        if kind is sk.Kind.WARNING:
            for rule in rules.kind("report"):
                cond = rule.condition
                assert isinstance(cond, ReportCondition)
                if key.startswith(sk.rule_warnings_prefix(rule.id)) and (
                    v.get("transition") != "cleared"
                ):
                    updated = datetime.fromisoformat(v["updated_at"]).timestamp()
                    due.append(updated + cond.expires_after.total_seconds())
        elif kind is sk.Kind.EVALUATOR:
            for rule in rules.kind("window"):
                cond = rule.condition
                assert isinstance(cond, WindowCondition)
                if key.startswith(sk.evaluators_prefix(rule.id)):
                    w = self.store.get(sk.rule_warning_key(*sk.evaluator_of(key)))
                    if w and w.get("transition") != "cleared" and w.get("level", 0) > 0:
                        when = window_due(cond, v)
                        if when is not None:
                            due.append(when)
        return min(due, default=None)

    def _silence_limit(self, rule: Rule, station_id: str, seen: dict[str, Any]) -> float:
        """``engine.silence_limit`` in seconds, remembered per rule and station for the
        gaps it was computed from: a station's last gaps rarely change in length."""
        gaps = tuple(seen.get("gaps", ()))
        cached = self._limits.get((rule.id, station_id))
        if cached is not None and cached[0] == gaps:
            return cached[1]
        limit = self.engine.silence_limit(rule, station_id, seen).total_seconds()
        self._limits[(rule.id, station_id)] = (gaps, limit)
        return limit

    def _due_scan(self) -> datetime | None:
        """``_due`` for a store that does not say what was written: every key, every time."""
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
        if not (first.forwards or first.warnings or first.commands or first.rejected
                or first.errors):  # fmt: skip
            return  # most readings: nothing follows from them
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
