"""Stage 2: the rule engine as one Faust agent with one changelog-backed table.

Every input is keyed by the *subject* the state belongs to (station, commune,
province, source), so a subject's readings, commands, re-keyed readings and
ticks all arrive on one partition and its state lives on one worker. The table
(changelog ``canhbao.state.evaluate``, compacted) is rebuilt by a restarted
worker before it processes anything: it neither forgets an active warning nor
raises it twice.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import faust
from pydantic import ValidationError

from canhbao.metrics import (
    COMMANDS_APPLIED,
    MESSAGES_REJECTED,
    QUALITY_REJECTIONS,
    WARNING_TRANSITIONS,
)
from canhbao.settings import Settings
from pipeline.agents.store import TableStore
from pipeline.engine import Engine, Outputs, areas_of
from topics.catalogue import (
    CLOCK,
    COMMANDS,
    CORRELATE_REPORTS,
    CORRELATE_WARNINGS,
    DEADLETTER,
    REGROUP_READINGS,
    STATE_EVALUATE,
    WARNINGS,
    readings_topic,
)
from topics.models import Command, DeadLetter, Domain, Reading, Report, Tick, Warning

log = logging.getLogger(__name__)


class EngineHolder:
    """The engine in force; the control-topic follower swaps it in one assignment."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine


def register(app: faust.App, settings: Settings, holder: EngineHolder) -> None:
    from pipeline.app import raw_topic

    n = settings.partitions
    names = [readings_topic(d) for d in Domain]
    names += [REGROUP_READINGS, CORRELATE_WARNINGS, CORRELATE_REPORTS, COMMANDS, CLOCK]
    source = app.topic(*names, key_type=bytes, value_type=bytes, value_serializer="raw")
    readings = set(names[: len(Domain)])
    warnings_out = raw_topic(app, WARNINGS)
    correlate_out = raw_topic(app, CORRELATE_WARNINGS)
    regroup_out = raw_topic(app, REGROUP_READINGS)
    commands_out = raw_topic(app, COMMANDS)
    dead = raw_topic(app, DEADLETTER, partitions=1)
    clock = raw_topic(app, CLOCK)
    # Keys and values are JSON in the changelog, and the table must decode them
    # the same way on restore, or a restarted worker would not find its state.
    table = app.Table(
        "state",
        default=None,
        partitions=n,
        changelog_topic=app.topic(
            STATE_EVALUATE,
            partitions=n,
            compacting=True,
            deleting=False,
            key_type=str,
            key_serializer="json",
            value_serializer="json",
            internal=True,
        ),
    )

    async def reject(msg: Any, raw: bytes | None, stage: str, reason: str) -> None:
        MESSAGES_REJECTED.labels(msg.topic, stage).inc()
        await dead.send(
            key=msg.topic.encode(),
            value=DeadLetter(
                source_topic=msg.topic,
                partition=msg.partition,
                offset=msg.offset,
                key=msg.key,
                original=raw or b"",
                stage=stage,
                reason=reason,
            ).to_bytes(),
        )

    async def publish(out: Outputs, msg: Any, raw: bytes | None) -> None:
        """Send every output and wait until the broker has them all."""
        sent: list[Any] = []
        for check, _ in out.rejected:
            QUALITY_REJECTIONS.labels(check.value).inc()
        for error in out.errors:
            await reject(msg, raw, "command", error)
        for key, reading in out.forwards:
            sent.append(await regroup_out.send(key=key.encode(), value=reading.to_bytes()))
        for w in out.warnings:
            WARNING_TRANSITIONS.labels(
                w.domain.value, w.hazard, w.transition.value, str(w.level)
            ).inc()
            log.info("%s %s level %s (v%d)", w.warning_id, w.transition.value, w.level, w.version)
            body = w.to_bytes()
            sent.append(await warnings_out.send(key=w.warning_id.encode(), value=body))
            for area in out.fanout.get((w.warning_id, w.version), areas_of(w)):
                sent.append(await correlate_out.send(key=area.encode(), value=body))
        for command in out.commands:
            sent.append(
                await commands_out.send(key=command.subject.encode(), value=command.to_bytes())
            )
        for fut in sent:
            await fut

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

    async def evaluate(stream: faust.StreamT[Any]) -> None:
        async for event in stream.events():
            msg = event.message
            raw: bytes | None = event.value
            store = TableStore(table, msg.partition)
            engine = holder.engine
            key = msg.key.decode("utf-8", "replace") if msg.key else ""
            try:
                parsed = parse(msg.topic, raw)
            except ValidationError as exc:
                await reject(msg, raw, "evaluate", f"not a valid message for {msg.topic}: {exc}")
                continue
            if isinstance(parsed, Reading):
                if msg.topic == REGROUP_READINGS:
                    out = engine.on_reading(parsed, store, mode="grouped", key=key)
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
                out = engine.on_tick(parsed.at, store, store.own_keys())
            # Outputs first, state second: a crash in between replays the event and
            # republishes the same versions (deduplicated downstream), never loses one.
            await publish(out, msg, raw)
            await store.flush()

    app.agent(source, name="canhbao.evaluate")(evaluate)

    async def tick() -> None:
        # One tick per partition: each worker then handles the keys it owns.
        body = Tick(at=datetime.now(UTC)).to_bytes()
        for partition in range(n):
            await clock.send(value=body, partition=partition)

    app.timer(settings.tick_interval, on_leader=True)(tick)
