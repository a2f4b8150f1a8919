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
    from pipeline.app import raw_topic

    source = raw_topic(app, INGEST_READINGS)
    reports_in = raw_topic(app, INGEST_REPORTS)
    by_domain = {d: raw_topic(app, readings_topic(d)) for d in Domain}
    reports_out = raw_topic(app, CORRELATE_REPORTS)
    dead = raw_topic(app, DEADLETTER, partitions=1)

    async def validate(stream: faust.StreamT[Any]) -> None:
        async for event in stream.events():
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
                await dead.send(key=msg.topic.encode(), value=result.to_bytes())
                continue
            READINGS_ACCEPTED.labels(result.domain.value).inc()
            await by_domain[result.domain].send(
                key=result.station_id.encode(), value=result.to_bytes()
            )

    async def validate_reports(stream: faust.StreamT[Any]) -> None:
        async for event in stream.events():
            msg = event.message
            result = validate_report(
                event.value, source_topic=msg.topic, partition=msg.partition, offset=msg.offset
            )
            if isinstance(result, DeadLetter):
                MESSAGES_REJECTED.labels(msg.topic, result.stage).inc()
                await dead.send(key=msg.topic.encode(), value=result.to_bytes())
                continue
            body = result.to_bytes()
            for area in result.areas:
                await reports_out.send(key=area.encode(), value=body)

    app.agent(source, name="canhbao.validate")(validate)
    app.agent(reports_in, name="canhbao.validate-reports")(validate_reports)
