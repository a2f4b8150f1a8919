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
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from alerting.directory import Directory
from pipeline.validate import Refused, TimePolicy, check_reading, check_report
from pipeline.worker.stages import Clock, wall_clock
from pipeline.worker.writers import Writer
from topics.kafka import DeadLetters, Record
from topics.metrics import Metrics
from topics.models import Domain, Reading

log = logging.getLogger(__name__)


class Incoming(Record, Protocol):
    """A record read from Kafka, with its value."""

    value: bytes | None


class ValidateStage:
    """Readings from ``canhbao.ingest.readings`` and reports from
    ``canhbao.ingest.reports`` (:meth:`handle_report`). In the worker the evaluate
    stage calls :meth:`judge` and :meth:`forward` on the readings it consumes from the
    ingest topic itself (one Kafka hop less per reading); :meth:`handle_batch` does
    both for a batch on its own."""

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
        for record in records:
            result = await self.judge(record, record.value, sent)
            if result is not None:
                await self.forward(result, sent)
        for fut in sent:
            await fut

    async def judge(self, record: Record, raw: bytes | None, sent: list[Any]) -> Reading | None:
        """The reading in ``record``, or None when it is refused: its dead letter is
        then sent (its acknowledgement goes to ``sent``, for the caller to await
        before it commits the record's offset)."""
        result = check_reading(
            raw, key=record.key, now=self.clock(), policy=self.policy, directory=self.directory
        )
        if isinstance(result, Refused):
            self.refused("reading", result, record.offset)
            letter = result.letter(
                raw,
                source_topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                key=record.key,
            )
            sent.append(await self.dead.send(letter))
            return None
        return result

    async def forward(self, reading: Reading, sent: list[Any]) -> None:
        """Publish an accepted reading on its domain's topic, keyed by station (for
        the threat record and other readers), and count it."""
        self.accepted[reading.domain].inc()
        sent.append(
            await self.readings[reading.domain].send(
                reading.station_id.encode(), reading.to_bytes()
            )
        )

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
