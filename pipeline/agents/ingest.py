"""Stage 1: validate raw readings and reports. Good readings go to their domain's
topic; good reports go to the correlation topic once per commune they name;
bad input goes to the dead-letter topic with the reason. Nothing is dropped
silently."""

from __future__ import annotations

from typing import Any

import faust

from canhbao.metrics import MESSAGES_REJECTED, READINGS_ACCEPTED
from canhbao.settings import Settings
from pipeline.validate import validate_reading, validate_report
from topics.catalogue import (
    CORRELATE_REPORTS,
    DEADLETTER,
    INGEST_READINGS,
    INGEST_REPORTS,
    readings_topic,
)
from topics.models import DeadLetter, Domain


def register(app: faust.App, settings: Settings) -> None:
    from pipeline.app import Out, batches, raw_topic

    source = raw_topic(app, INGEST_READINGS)
    reports_in = raw_topic(app, INGEST_REPORTS)
    by_domain = {d: Out(app, readings_topic(d)) for d in Domain}
    reports_out = Out(app, CORRELATE_REPORTS)
    dead = Out(app, DEADLETTER)

    accepted = {d: READINGS_ACCEPTED.labels(d.value) for d in Domain}

    async def validate(stream: faust.StreamT[Any]) -> None:
        # In batches: every output of a batch is in flight at once and awaited
        # together, then Faust acks the batch. One broker round trip per batch, not
        # per reading; a crash before the acks replays the batch (duplicates are
        # set aside by the quality gate), never loses a reading.
        async for events in batches(stream, settings):
            sent: list[Any] = []
            for event in events:
                msg = event.message
                result = validate_reading(
                    event.value,
                    source_topic=msg.topic,
                    partition=msg.partition,
                    offset=msg.offset,
                    key=msg.key,
                )
                if isinstance(result, DeadLetter):
                    MESSAGES_REJECTED.labels(msg.topic, result.stage).inc()
                    sent.append(await dead.send(msg.topic.encode(), result.to_bytes()))
                    continue
                accepted[result.domain].inc()
                sent.append(
                    await by_domain[result.domain].send(
                        result.station_id.encode(), result.to_bytes()
                    )
                )
            for fut in sent:
                await fut

    async def validate_reports(stream: faust.StreamT[Any]) -> None:
        async for event in stream.events():
            msg = event.message
            result = validate_report(
                event.value, source_topic=msg.topic, partition=msg.partition, offset=msg.offset
            )
            if isinstance(result, DeadLetter):
                MESSAGES_REJECTED.labels(msg.topic, result.stage).inc()
                await (await dead.send(msg.topic.encode(), result.to_bytes()))
                continue
            body = result.to_bytes()
            for area in result.areas:
                await (await reports_out.send(area.encode(), body))

    app.agent(source, name="canhbao.validate")(validate)
    app.agent(reports_in, name="canhbao.validate-reports")(validate_reports)
