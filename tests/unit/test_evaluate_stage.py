"""The evaluate stage killed anywhere in a batch and restarted: within one run (one
state changelog), a warning version is never published with two contents.

The stage runs as in the worker (``pipeline.worker.stages.evaluate``),
with Kafka replaced by an in-memory log: every record the stage sends lands in
order, and the kill is a send that never lands. The restarted stage recovers its
table from the changelog records that landed (as Faust does) and reads the batch
again, its topics interleaved in another order (as Kafka may: a subject's
readings and commands arrive on different topics).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from alerting.directory import Directory
from pipeline.engine import Engine
from pipeline.rules.loader import RuleSet
from pipeline.worker.stages.evaluate import EngineHolder, EvaluateStage
from tests.unit.conftest import FLOOD_RULE_YAML, MemoryTable
from topics import catalogue
from topics.catalogue import COMMANDS, STATE_EVALUATE, WARNINGS, readings_topic
from topics.kafka import DeadLetters
from topics.metrics import Metrics
from topics.models import Action, Command, Domain, Reading, Transition, Warning

WID = "water.flood.dap-cau:dap-cau"
QUALITY = "quality:\n  metrics:\n    water_level_m: {max: 30}\nrules:\n"
NOW = datetime.now(UTC).replace(microsecond=0)


class Killed(Exception):
    """The worker dies here (kill -9)."""


class Log:
    """The broker: every record the stage sent and that landed, in order."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None]] = []
        self.lands: int | None = None  # how many more sends land before the kill

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> Any:
        if self.lands is not None:
            if self.lands == 0:
                raise Killed(topic)
            self.lands -= 1
        self.records.append((topic, key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def warnings(self) -> list[Warning]:
        return [Warning.model_validate_json(v) for t, _, v in self.records if t == WARNINGS and v]


class To:
    """A writer to ``topic`` on the log."""

    def __init__(self, log: Log, topic: str) -> None:
        self.log = log
        self.topic = topic

    async def send(
        self, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> Any:
        return await self.log.send(self.topic, key, value, partition)


def event(topic: str, body: bytes) -> Any:
    return (SimpleNamespace(topic=topic, partition=0, key=b"dap-cau", offset=0), body)


def level(value: float, minutes_ago: float) -> Any:
    reading = Reading(
        station_id="dap-cau", domain=Domain.WATER, metric="water_level_m", value=value,
        observed_at=NOW - timedelta(minutes=minutes_ago), source="test",
    )  # fmt: skip
    return event(readings_topic(Domain.WATER), reading.to_bytes())


def verify(minutes_ago: float) -> Any:
    command = Command(
        command_id="verify-1", warning_id=WID, action=Action.VERIFY, actor="Trực ban A",
        at=NOW - timedelta(minutes=minutes_ago),
    )  # fmt: skip
    return event(COMMANDS, command.to_bytes())


class Stage:
    """One worker's evaluate stage, its table recovered from ``log``'s changelog."""

    def __init__(self, rules: RuleSet, directory: Directory, log: Log, metrics: Metrics) -> None:
        table = MemoryTable()
        for topic, key, value in log.records:  # Faust's recovery, in short
            if topic == STATE_EVALUATE and key is not None:
                if value is None:
                    table.pop(json.loads(key), None)
                else:
                    table[json.loads(key)] = json.loads(value)
        self.stage = EvaluateStage(
            holder=EngineHolder(Engine(rules, directory)),
            table=table,
            changelog=To(log, STATE_EVALUATE),
            warnings=To(log, WARNINGS),
            correlate=To(log, catalogue.CORRELATE_WARNINGS),
            regroup=To(log, catalogue.REGROUP_READINGS),
            commands=To(log, COMMANDS),
            ticks=To(log, catalogue.CLOCK),
            dead=DeadLetters(To(log, catalogue.DEADLETTER).send, metrics),
            metrics=metrics,
            partitions=3,
        )

    async def run(self, *batches: Sequence[Any]) -> None:
        for batch in batches:
            await self.stage.handle_batch(batch)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


@pytest.fixture
def stage(
    compile_yaml: Callable[..., RuleSet], directory: Directory, metrics: Metrics
) -> Callable[[Log], Stage]:
    rules = compile_yaml(QUALITY + FLOOD_RULE_YAML)

    def make(log: Log) -> Stage:
        return Stage(rules, directory, log, metrics)

    return make


def contents(log: Log) -> dict[tuple[str, int], set[bytes]]:
    out: dict[tuple[str, int], set[bytes]] = {}
    for w in log.warnings():
        out.setdefault((w.warning_id, w.version), set()).add(w.to_bytes())
    return out


RISE = [level(4.0, 9), level(4.35, 8), level(5.35, 7)]  # raised I (v1), escalated II (v2)


async def test_an_undisturbed_run_publishes_each_version_once(stage: Any) -> None:
    log = Log()
    await stage(log).run(RISE, [level(6.35, 6), verify(6.5)])
    got = [(w.version, w.transition, w.level, w.status.value) for w in log.warnings()]
    assert got == [
        (1, Transition.RAISED, 1, "new"),
        (2, Transition.ESCALATED, 2, "new"),
        (3, Transition.ESCALATED, 3, "new"),
        (4, Transition.UPDATED, 3, "verified"),
    ]


@pytest.mark.parametrize("lands", range(12))
async def test_a_replay_in_another_order_never_publishes_a_version_twice_differently(
    stage: Any, lands: int
) -> None:
    # The second batch is read again after the kill with its two topics the other
    # way round: the command first (verified, at level II), then the reading (III).
    log = Log()
    first = stage(log)
    await first.run(RISE)
    before = len(log.records)
    log.lands = lands
    with contextlib.suppress(Killed):
        await first.run([level(6.35, 6), verify(6.5)])
    log.lands = None
    sent_in_batch = len(log.records) - before
    again = stage(log)
    await again.run([verify(6.5), level(6.35, 6)])

    versions = contents(log)
    assert all(len(c) == 1 for c in versions.values()), "a version with two contents"
    # Nothing is lost: the last state published is level III, verified.
    last = max(log.warnings(), key=lambda w: w.version)
    assert (last.level, last.status.value) == (3, "verified")
    if sent_in_batch == 0:  # killed before anything of the batch was recorded: a clean replay
        assert sorted(v for _, v in versions) == [1, 2, 3, 4]


async def test_a_conflict_is_counted_and_goes_out_under_the_next_version(
    stage: Any, metrics: Metrics
) -> None:
    # Killed once the batch's outputs are out and before its state is written: the
    # first replayed state (verified, level II) is not v3 (escalated to III) again.
    log = Log()
    first = stage(log)
    await first.run(RISE)
    before_conflicts = metrics.registry.get_sample_value(
        "canhbao_warning_version_conflicts_total", {"domain": "water"}
    )
    # The p| record (1), the two states each with its commune fan-out (2 × 3): then
    # the kill, at the first write of the rest of the state.
    log.lands = 1 + 2 * 3
    with pytest.raises(Killed, match=STATE_EVALUATE):
        await first.run([level(6.35, 6), verify(6.5)])
    log.lands = None
    await stage(log).run([verify(6.5), level(6.35, 6)])
    got = [
        (w.version, w.transition, w.level, w.previous_level, w.status.value) for w in log.warnings()
    ]
    assert got == [
        (1, Transition.RAISED, 1, 0, "new"),
        (2, Transition.ESCALATED, 2, 1, "new"),
        (3, Transition.ESCALATED, 3, 2, "new"),
        (4, Transition.UPDATED, 3, 3, "verified"),
        # the replay: verified at II (the reading not yet read again), then III
        (5, Transition.DEESCALATED, 2, 3, "verified"),
        (6, Transition.ESCALATED, 3, 2, "verified"),
    ]
    after = metrics.registry.get_sample_value(
        "canhbao_warning_version_conflicts_total", {"domain": "water"}
    )
    assert not before_conflicts and after == 1  # v3; the next state is past what went out
