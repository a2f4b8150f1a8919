"""Stage 1: validate raw readings and reports. Good readings go to their domain's
topic; good reports go to the correlation topic once per commune they name;
bad input goes to the dead-letter topic with the reason. Nothing is dropped
silently.

Besides their shape, the stage judges each message's time against the wall clock
(or its drill's clock) and its station and communes against the geography
(:mod:`pipeline.validate`): far-future, implausibly old and historical messages, and
those from unknown stations or about unknown communes, are dead-lettered with the
reason and counted in ``canhbao_validation_refused_total{kind,reason}``."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import faust
from aiokafka import AIOKafkaConsumer

from canhbao.metrics import READINGS_ACCEPTED, VALIDATION_REFUSED
from canhbao.settings import Settings
from pipeline.validate import Refused, TimePolicy, check_reading, check_report
from topics.catalogue import (
    CORRELATE_REPORTS,
    INGEST_READINGS,
    INGEST_REPORTS,
    readings_topic,
)
from topics.kafka import commit_owned, membership
from topics.models import Domain

if TYPE_CHECKING:
    from alerting.directory import Directory

log = logging.getLogger(__name__)


def register(app: faust.App, settings: Settings, bootstrap: str, directory: Directory) -> None:
    from pipeline.app import App, DeadLetters, Out, raw_topic

    reports_in = raw_topic(app, INGEST_REPORTS)
    by_domain = {d: Out(app, readings_topic(d)) for d in Domain}
    reports_out = Out(app, CORRELATE_REPORTS)
    dead = DeadLetters(app)
    policy = TimePolicy.from_settings(settings)

    accepted = {d: READINGS_ACCEPTED.labels(d.value) for d in Domain}

    def refused(kind: str, why: Refused, offset: int) -> None:
        VALIDATION_REFUSED.labels(kind, why.code.value).inc()
        log.info("validate: %s at offset %d refused (%s): %s", kind, offset, why.code, why.reason)

    async def validate_batch(records: list[Any]) -> None:
        """Validate a batch and send every output at once; returns when the broker has
        acknowledged them all (one round trip per batch, not per reading)."""
        sent: list[Any] = []
        now = datetime.now(UTC)
        for record in records:
            result = check_reading(
                record.value, key=record.key, now=now, policy=policy, directory=directory
            )
            if isinstance(result, Refused):
                refused("reading", result, record.offset)
                letter = result.letter(
                    record.value,
                    source_topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    key=record.key,
                )
                sent.append(await dead.send(letter))
                continue
            accepted[result.domain].inc()
            sent.append(
                await by_domain[result.domain].send(result.station_id.encode(), result.to_bytes())
            )
        for fut in sent:
            await fut

    async def validate() -> None:
        # A plain consumer group, not a Faust agent: the stage keeps no state, and
        # Faust's per-message machinery cost more than the validation itself (the
        # benchmark's profile). Kafka still splits the partitions among workers.
        # Offsets are committed only after a batch's outputs are acknowledged: a
        # crash replays the batch (the quality gate sets the copies aside as
        # duplicates), never loses a reading.
        consumer = AIOKafkaConsumer(
            INGEST_READINGS,
            bootstrap_servers=bootstrap,
            group_id=f"{settings.app_id}.validate",
            group_instance_id=(
                f"{settings.group_instance_id}.validate" if settings.group_instance_id else None
            ),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            **membership(int(settings.rebalance_timeout * 1000)),
        )
        await consumer.start()
        try:
            while not app.should_stop:
                batch = await consumer.getmany(timeout_ms=500, max_records=settings.batch_size)
                if not batch:
                    continue
                await validate_batch([r for records in batch.values() for r in records])
                await commit_owned(
                    consumer,
                    {tp: records[-1].offset + 1 for tp, records in batch.items() if records},
                )
        finally:
            await consumer.stop()

    async def validate_reports(stream: faust.StreamT[Any]) -> None:
        async for event in stream.events():
            msg = event.message
            result = check_report(
                event.value, now=datetime.now(UTC), policy=policy, directory=directory
            )
            if isinstance(result, Refused):
                refused("report", result, msg.offset)
                letter = result.letter(
                    event.value, source_topic=msg.topic, partition=msg.partition, offset=msg.offset
                )
                await (await dead.send(letter))
                continue
            body = result.to_bytes()
            for area in result.areas:
                await (await reports_out.send(area.encode(), body))

    cast(App, app).edge_task(validate, graceful=True)
    app.agent(reports_in, name="canhbao.validate-reports")(validate_reports)
