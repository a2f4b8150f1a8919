"""Stage 2: evaluate rules per station and keep warning state in a Faust table.

The table is changelog-backed (``canhbao.state.warnings``, compacted): a
restarted worker rebuilds it before processing, so it neither forgets an
active warning nor raises it twice.
"""

from __future__ import annotations

import logging
from typing import Any

import faust

from alerting.directory import Directory
from canhbao.metrics import MESSAGES_REJECTED, WARNING_TRANSITIONS
from canhbao.settings import Settings
from pipeline.lifecycle import Context, step, warning_id
from pipeline.rules.loader import RuleSet
from topics.catalogue import DEADLETTER, STATE_WARNINGS, WARNINGS, readings_topic
from topics.models import DeadLetter, Domain, Reading, Warning

log = logging.getLogger(__name__)


def register(app: faust.App, settings: Settings, rules: RuleSet, directory: Directory) -> None:
    from pipeline.app import raw_topic

    source = app.topic(
        *[readings_topic(d) for d in Domain],
        key_type=bytes,
        value_type=bytes,
        value_serializer="raw",
    )
    warnings_out = raw_topic(app, WARNINGS)
    dead = raw_topic(app, DEADLETTER, partitions=1)
    state = app.Table(
        "warnings",
        default=None,
        partitions=settings.partitions,
        changelog_topic=app.topic(
            STATE_WARNINGS,
            partitions=settings.partitions,
            compacting=True,
            deleting=False,
            key_type=str,
            value_serializer="json",
            internal=True,
        ),
    )
    ctx = Context(directory=directory, exercise=settings.exercise)

    async def evaluate(stream: faust.StreamT[Any]) -> None:
        async for event in stream.events():
            try:
                reading = Reading.model_validate_json(event.value)
            except ValueError as exc:
                # Upstream validated it, so this is a producer writing to the
                # wrong topic: keep it for inspection rather than crash.
                msg = event.message
                MESSAGES_REJECTED.labels(msg.topic, "evaluate").inc()
                await dead.send(
                    key=msg.topic.encode(),
                    value=DeadLetter(
                        source_topic=msg.topic,
                        partition=msg.partition,
                        offset=msg.offset,
                        key=msg.key,
                        original=event.value or b"",
                        stage="evaluate",
                        reason=f"not a valid reading: {exc}",
                    ).to_bytes(),
                )
                continue
            for rule in rules.matching(reading):
                wid = warning_id(rule, reading.station_id)
                stored = state.get(wid)
                previous = Warning.model_validate(stored) if stored else None
                new = step(rule, previous, reading, ctx)
                if new is None:
                    continue
                state[wid] = new.model_dump(mode="json")
                WARNING_TRANSITIONS.labels(
                    new.domain.value, new.hazard, new.transition.value, str(new.level)
                ).inc()
                log.info("%s %s level %s (v%d)", wid, new.transition.value, new.level, new.version)
                await warnings_out.send(key=wid.encode(), value=new.to_bytes())

    app.agent(source, name="canhbao.evaluate")(evaluate)
