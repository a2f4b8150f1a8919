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
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer

from alerting.directory import Directory
from pipeline.validate import Refused, TimePolicy, check_reading, check_report
from pipeline.worker.stages import Clock, wall_clock
from pipeline.worker.writers import Writer
from topics.kafka import DeadLetters, Record, commit_owned
from topics.metrics import Metrics
from topics.models import Domain

log = logging.getLogger(__name__)


class Incoming(Record, Protocol):
    """A record read from Kafka, with its value."""

    value: bytes | None


class ValidateStage:
    """Readings from ``canhbao.ingest.readings`` (in batches, through a plain consumer
    group: :meth:`run`) and reports from ``canhbao.ingest.reports`` (:meth:`handle_report`)."""

    def __init__(
        self,
        *,
        policy: TimePolicy,
        directory: Directory,
        readings: Mapping[Domain, Writer],
        reports: Writer,
        dead: DeadLetters,
        metrics: Metrics,
        clock: Clock = wall_clock,
    ) -> None:
        self.policy = policy
        self.directory = directory
        self.readings = readings
        self.reports = reports
        self.dead = dead
        self.clock = clock
        self.metrics = metrics
        self.accepted = {d: metrics.readings_accepted.labels(d.value) for d in Domain}

    def refused(self, kind: str, why: Refused, offset: int) -> None:
        self.metrics.validation_refused.labels(kind, why.code.value).inc()
        log.info("validate: %s at offset %d refused (%s): %s", kind, offset, why.code, why.reason)

    async def handle_batch(self, records: Sequence[Incoming]) -> None:
        """Validate a batch and send every output at once; returns when the broker has
        acknowledged them all (one round trip per batch, not per reading)."""
        sent: list[Any] = []
        now = self.clock()
        for record in records:
            result = check_reading(
                record.value, key=record.key, now=now, policy=self.policy, directory=self.directory
            )
            if isinstance(result, Refused):
                self.refused("reading", result, record.offset)
                letter = result.letter(
                    record.value,
                    source_topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    key=record.key,
                )
                sent.append(await self.dead.send(letter))
                continue
            self.accepted[result.domain].inc()
            sent.append(
                await self.readings[result.domain].send(
                    result.station_id.encode(), result.to_bytes()
                )
            )
        for fut in sent:
            await fut

    async def handle_report(self, record: Record, raw: bytes | None) -> None:
        """One report: to every commune it names, or to the dead letters with why."""
        result = check_report(raw, now=self.clock(), policy=self.policy, directory=self.directory)
        if isinstance(result, Refused):
            self.refused("report", result, record.offset)
            letter = result.letter(
                raw, source_topic=record.topic, partition=record.partition, offset=record.offset
            )
            await (await self.dead.send(letter))
            return
        body = result.to_bytes()
        for area in result.areas:
            await (await self.reports.send(area.encode(), body))

    async def run(
        self, consumer: AIOKafkaConsumer, batch_size: int, stopping: Callable[[], bool]
    ) -> None:
        """Read ``consumer``'s readings until ``stopping()``. A plain consumer group, not
        a Faust agent: the stage keeps no state, and Faust's per-message machinery cost
        more than the validation itself (the benchmark's profile). Kafka still splits
        the partitions among workers. Offsets are committed only after a batch's
        outputs are acknowledged: a crash replays the batch (the quality gate sets the
        copies aside as duplicates), never loses a reading."""
        await consumer.start()
        try:
            while not stopping():
                batch = await consumer.getmany(timeout_ms=500, max_records=batch_size)
                if not batch:
                    continue
                await self.handle_batch([r for records in batch.values() for r in records])
                await commit_owned(
                    consumer,
                    {tp: records[-1].offset + 1 for tp, records in batch.items() if records},
                )
        finally:
            await consumer.stop()
