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
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import faust
from pydantic import ValidationError

from canhbao.metrics import (
    COMMANDS_APPLIED,
    QUALITY_REANCHORS,
    QUALITY_REJECTIONS,
    READINGS_EVALUATED,
    WARNING_TRANSITIONS,
    WARNING_VERSION_CONFLICTS,
)
from canhbao.settings import Settings
from pipeline.agents.store import TableStore, json_table
from pipeline.engine import Engine, Outputs, areas_of
from pipeline.lifecycle import PUBLISHED
from topics.catalogue import (
    CLOCK,
    COMMANDS,
    CORRELATE_REPORTS,
    CORRELATE_WARNINGS,
    REGROUP_READINGS,
    STATE_EVALUATE,
    WARNINGS,
    readings_topic,
)
from topics.models import Command, Domain, Reading, Report, Tick, Warning

log = logging.getLogger(__name__)


class EngineHolder:
    """The engine in force; the control-topic follower swaps it in one assignment."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine


def register(app: faust.App, settings: Settings, holder: EngineHolder) -> None:
    from pipeline.app import DeadLetters, Out, batches, raw_topic

    n = settings.partitions
    names = [readings_topic(d) for d in Domain]
    names += [REGROUP_READINGS, CORRELATE_WARNINGS, CORRELATE_REPORTS, COMMANDS, CLOCK]
    source = app.topic(*names, key_type=bytes, value_type=bytes, value_serializer="raw")
    readings = set(names[: len(Domain)])
    warnings_out = Out(app, WARNINGS)
    correlate_out = Out(app, CORRELATE_WARNINGS)
    regroup_out = Out(app, REGROUP_READINGS)
    commands_out = Out(app, COMMANDS)
    dead = DeadLetters(app)
    clock = raw_topic(app, CLOCK)
    # Keys and values are JSON in the changelog, and the table must decode them
    # the same way on restore, or a restarted worker would not find its state.
    table = json_table(app, "state", STATE_EVALUATE, n)

    async def flush_all(stores: Iterable[TableStore]) -> None:
        # Every partition's quality marks (q|) go last, after all other state.
        await TableStore.flush_together(list(stores))

    async def publish(out: Outputs, msg: Any, raw: bytes | None, sent: list[Any]) -> None:
        """Send every output; the futures go to ``sent`` for the batch to await."""
        for check, _ in out.rejected:
            QUALITY_REJECTIONS.labels(check.value).inc()
        if out.reanchored:
            QUALITY_REANCHORS.inc(len(out.reanchored))
        for conflict in out.conflicts:
            w = next(w for w in out.warnings if w.warning_id == conflict.warning_id)
            WARNING_VERSION_CONFLICTS.labels(w.domain.value).inc()
            log.warning(
                "%s v%d was already published with another content (a replay read the "
                "events in another order): this state goes out as v%d",
                conflict.warning_id,
                conflict.version,
                conflict.published_as,
            )
        for error in out.errors:
            await dead.reject(msg, raw, "command", error)
        for key, reading in out.forwards:
            sent.append(await regroup_out.send(key.encode(), reading.to_bytes()))
        for w in out.warnings:
            WARNING_TRANSITIONS.labels(
                w.domain.value, w.hazard, w.transition.value, str(w.level)
            ).inc()
            log.info("%s %s level %s (v%d)", w.warning_id, w.transition.value, w.level, w.version)
            body = w.to_bytes()
            sent.append(await warnings_out.send(w.warning_id.encode(), body))
            for area in out.fanout.get((w.warning_id, w.version), areas_of(w)):
                sent.append(await correlate_out.send(area.encode(), body))
        for command in out.commands:
            sent.append(await commands_out.send(command.subject.encode(), command.to_bytes()))

    def parse(topic: str, raw: bytes | None) -> Reading | Warning | Report | Command | Tick:
        body = raw or b""
        if topic in readings or topic == REGROUP_READINGS:
            return Reading.model_validate_json(body)
        if topic == CORRELATE_WARNINGS:
            return Warning.model_validate_json(body)
        if topic == CORRELATE_REPORTS:
            return Report.model_validate_json(body)
        if topic == COMMANDS:
            return Command.model_validate_json(body)
        return Tick.model_validate_json(body)

    evaluated = {d: READINGS_EVALUATED.labels(d.value) for d in Domain}

    async def handle(event: Any, store: TableStore, outputs: list[Any]) -> None:
        """Evaluate one event; its outputs go to ``outputs``, to be published once
        the batch's versions are recorded."""
        msg = event.message
        raw: bytes | None = event.value
        engine = holder.engine
        key = msg.key.decode("utf-8", "replace") if msg.key else ""
        try:
            parsed = parse(msg.topic, raw)
        except ValidationError as exc:
            await dead.reject(msg, raw, "evaluate", f"not a valid message for {msg.topic}: {exc}")
            return
        if isinstance(parsed, Reading):
            evaluated[parsed.domain].inc()
            if msg.topic == REGROUP_READINGS:
                out = engine.on_reading(
                    parsed, store, now=datetime.now(UTC), mode="grouped", key=key
                )
            else:
                out = engine.on_reading(parsed, store, now=datetime.now(UTC), mode="station")
        elif isinstance(parsed, Warning):
            out = engine.on_warning(parsed, key, store, parsed.updated_at)
        elif isinstance(parsed, Report):
            out = engine.on_report(parsed, key, store)
        elif isinstance(parsed, Command):
            out = engine.on_command(parsed, store)
            COMMANDS_APPLIED.labels(
                parsed.action.value, "refused" if out.errors else "applied"
            ).inc()
        else:
            # The wall clock tells a backlog being caught up from a silence.
            out = engine.on_tick(parsed.at, store, store.own_keys(), wall=datetime.now(UTC))
        outputs.append((out, msg, raw))

    async def evaluate(stream: faust.StreamT[Any]) -> None:
        # In batches, as the validate stage. Versions published first, outputs
        # second, state third: every output of the batch is acknowledged before any
        # of its state is written, so a crash in between replays the batch and never
        # loses an output; and the record of the versions is acknowledged before any
        # output is sent, so the replay cannot publish one of them with another
        # content. Within a batch the engine sees its own writes at once (the table
        # is updated in memory as it goes).
        async for events in batches(stream, settings):
            stores: dict[int, TableStore] = {}
            outputs: list[tuple[Outputs, Any, bytes | None]] = []
            for event in events:
                partition = event.message.partition
                store = stores.get(partition)
                if store is None:
                    store = stores[partition] = TableStore(table, partition)
                await handle(event, store, outputs)
            await TableStore.flush_together(list(stores.values()), prefix=PUBLISHED)
            sent: list[Any] = []
            for out, msg, raw in outputs:
                await publish(out, msg, raw, sent)
            for fut in sent:
                await fut
            await flush_all(stores.values())

    app.agent(source, name="canhbao.evaluate")(evaluate)

    async def tick() -> None:
        # One tick per partition: each worker then handles the keys it owns.
        body = Tick(at=datetime.now(UTC)).to_bytes()
        for partition in range(n):
            await clock.send(value=body, partition=partition)

    app.timer(settings.tick_interval, on_leader=True)(tick)
