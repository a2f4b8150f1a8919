"""Stage 2: the rule engine as one Faust agent with one changelog-backed table.

Every input is keyed by the *subject* the state belongs to (station, commune,
province, source), so a subject's readings, commands, re-keyed readings and
ticks all arrive on one partition and its state lives on one worker. The table
(changelog ``canhbao.state.evaluate``, compacted) is rebuilt by a restarted
worker before it processes anything: it neither forgets an active warning nor
raises it twice.

Per batch: the events are evaluated (the table changes in memory), then the
versions about to be published are recorded on the changelog (``p|``, see
``pipeline.lifecycle.settle_version``), then the outputs are published, then the
rest of the state is written, the quality gate's "seen" marks last. A worker that
dies anywhere in between replays the batch from its committed offsets; the
replay may read the batch's topics in another order, and the ``p|`` record makes
sure no version already out is published again with another content.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from pipeline.engine import Engine, Outputs, areas_of
from pipeline.state import PUBLISHED
from pipeline.worker.stages import Clock, wall_clock
from pipeline.worker.store import TableStore
from pipeline.worker.writers import Writer
from topics.catalogue import (
    CLOCK,
    COMMANDS,
    CORRELATE_REPORTS,
    CORRELATE_WARNINGS,
    REGROUP_READINGS,
    readings_topic,
)
from topics.kafka import DeadLetters, Record
from topics.metrics import Metrics
from topics.models import Command, Domain, Reading, Report, Tick, Warning

log = logging.getLogger(__name__)

#: The topics the stage reads: every domain's readings, then what comes back to it.
SOURCES = [readings_topic(d) for d in Domain] + [
    REGROUP_READINGS,
    CORRELATE_WARNINGS,
    CORRELATE_REPORTS,
    COMMANDS,
    CLOCK,
]
READINGS = frozenset(readings_topic(d) for d in Domain)


class EngineHolder:
    """The engine in force; the control-topic follower swaps it in one assignment."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine


def parse(topic: str, raw: bytes | None) -> Reading | Warning | Report | Command | Tick:
    """The message on ``topic``; ValidationError when it is not one."""
    body = raw or b""
    if topic in READINGS or topic == REGROUP_READINGS:
        return Reading.model_validate_json(body)
    if topic == CORRELATE_WARNINGS:
        return Warning.model_validate_json(body)
    if topic == CORRELATE_REPORTS:
        return Report.model_validate_json(body)
    if topic == COMMANDS:
        return Command.model_validate_json(body)
    return Tick.model_validate_json(body)


class EvaluateStage:
    """The rule engine over a changelog-backed table (``table``: Faust's, or a dict
    with ``data`` in tests; ``changelog``: where its writes go)."""

    def __init__(
        self,
        *,
        holder: EngineHolder,
        table: Any,
        changelog: Writer,
        warnings: Writer,
        correlate: Writer,
        regroup: Writer,
        commands: Writer,
        ticks: Writer,
        dead: DeadLetters,
        metrics: Metrics,
        clock: Clock = wall_clock,
        partitions: int,
    ) -> None:
        self.holder = holder
        self.table = table
        self.changelog = changelog
        self.warnings = warnings
        self.correlate = correlate
        self.regroup = regroup
        self.commands = commands
        self.ticks = ticks
        self.dead = dead
        self.clock = clock
        self.metrics = metrics
        self.partitions = partitions
        self.evaluated = {d: metrics.readings_evaluated.labels(d.value) for d in Domain}

    async def handle_batch(self, events: Sequence[tuple[Record, bytes | None]]) -> None:
        """Evaluate a batch of ``(record, value)``. Versions published first, outputs
        second, state third: every output of the batch is acknowledged before any of
        its state is written, so a crash in between replays the batch and never loses
        an output; and the record of the versions is acknowledged before any output
        is sent, so the replay cannot publish one of them with another content.
        Within a batch the engine sees its own writes at once (the table is updated
        in memory as it goes)."""
        stores: dict[int, TableStore] = {}
        outputs: list[tuple[Outputs, Record, bytes | None]] = []
        for msg, raw in events:
            store = stores.get(msg.partition)
            if store is None:
                store = stores[msg.partition] = TableStore(
                    self.table, msg.partition, self.changelog
                )
            await self.handle(msg, raw, store, outputs)
        await TableStore.flush_together(list(stores.values()), prefix=PUBLISHED)
        sent: list[Any] = []
        for out, msg, raw in outputs:
            await self.publish(out, msg, raw, sent)
        for fut in sent:
            await fut
        # Every partition's quality marks (q|) go last, after all other state.
        await TableStore.flush_together(list(stores.values()))

    async def handle(
        self,
        msg: Record,
        raw: bytes | None,
        store: TableStore,
        outputs: list[tuple[Outputs, Record, bytes | None]],
    ) -> None:
        """Evaluate one event; its outputs go to ``outputs``, to be published once
        the batch's versions are recorded."""
        engine = self.holder.engine
        key = msg.key.decode("utf-8", "replace") if msg.key else ""
        try:
            parsed = parse(msg.topic, raw)
        except ValidationError as exc:
            await self.dead.reject(
                msg, raw, "evaluate", f"not a valid message for {msg.topic}: {exc}"
            )
            return
        if isinstance(parsed, Reading):
            self.evaluated[parsed.domain].inc()
            if msg.topic == REGROUP_READINGS:
                out = engine.on_reading(parsed, store, now=self.clock(), mode="grouped", key=key)
            else:
                out = engine.on_reading(parsed, store, now=self.clock(), mode="station")
        elif isinstance(parsed, Warning):
            out = engine.on_warning(parsed, key, store, parsed.updated_at)
        elif isinstance(parsed, Report):
            out = engine.on_report(parsed, key, store)
        elif isinstance(parsed, Command):
            out = engine.on_command(parsed, store)
            self.metrics.commands_applied.labels(
                parsed.action.value, "refused" if out.errors else "applied"
            ).inc()
        else:
            # The wall clock tells a backlog being caught up from a silence.
            out = engine.on_tick(parsed.at, store, store.own_keys(), wall=self.clock())
        outputs.append((out, msg, raw))

    async def publish(self, out: Outputs, msg: Record, raw: bytes | None, sent: list[Any]) -> None:
        """Send every output; the futures go to ``sent`` for the batch to await."""
        m = self.metrics
        for check, _ in out.rejected:
            m.quality_rejections.labels(check.value).inc()
        if out.reanchored:
            m.quality_reanchors.inc(len(out.reanchored))
        for conflict in out.conflicts:
            w = next(w for w in out.warnings if w.warning_id == conflict.warning_id)
            m.warning_version_conflicts.labels(w.domain.value).inc()
            log.warning(
                "%s v%d was already published with another content (a replay read the "
                "events in another order): this state goes out as v%d",
                conflict.warning_id,
                conflict.version,
                conflict.published_as,
            )
        for error in out.errors:
            await self.dead.reject(msg, raw, "command", error)
        for key, reading in out.forwards:
            sent.append(await self.regroup.send(key.encode(), reading.to_bytes()))
        for w in out.warnings:
            m.warning_transitions.labels(
                w.domain.value, w.hazard, w.transition.value, str(w.level)
            ).inc()
            log.info("%s %s level %s (v%d)", w.warning_id, w.transition.value, w.level, w.version)
            body = w.to_bytes()
            sent.append(await self.warnings.send(w.warning_id.encode(), body))
            for area in out.fanout.get((w.warning_id, w.version), areas_of(w)):
                sent.append(await self.correlate.send(area.encode(), body))
        for command in out.commands:
            sent.append(await self.commands.send(command.subject.encode(), command.to_bytes()))

    async def tick(self) -> None:
        """One clock tick per partition: each worker then handles the keys it owns."""
        body = Tick(at=self.clock()).to_bytes()
        for partition in range(self.partitions):
            await self.ticks.send(None, body, partition)
