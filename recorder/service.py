"""``canhbao record``: one aiokafka consumer over the record's topics, writing each
batch into the database with its offsets (:mod:`recorder.store`).

The database, not Kafka, holds the consumer's place: on every assignment the
recorder seeks each partition to the offset stored with the rows (the beginning of
the topic when none is stored, so a new database records all the topics still hold).
It also commits the same offsets to Kafka after the database, only so that the usual
tools show the group's lag; they are never read back."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from recorder.decode import TOPICS, Incoming, Rows, decode, unreadable
from recorder.readings import ReadingSelection
from recorder.store import Span, StaleOffsets, Store
from topics.connection import Kafka, client_kwargs
from topics.kafka import commit_owned, membership
from topics.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecorderConfig:
    bootstrap: Kafka
    group_id: str = "canhbao.record"
    rebalance_timeout_ms: int = 10_000
    fetch_max_wait_ms: int = 500
    max_records: int = 500
    readings_days: int = 30
    purge_every: float = 3600.0
    topics: tuple[str, ...] = TOPICS


class _Seek(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        for tp in revoked:
            self.recorder.starts.pop(tp, None)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.recorder.seek_to_stored(list(assigned))


@dataclass
class Recorder:
    store: Store
    config: RecorderConfig
    metrics: Metrics = field(default_factory=Metrics.default)
    #: the rule set in force: which readings to keep (it follows canhbao.control.rules)
    selection: ReadingSelection = field(default_factory=ReadingSelection)
    #: per owned partition, the stored offset the next batch starts from (None: none yet)
    starts: dict[TopicPartition, int | None] = field(default_factory=dict)
    _consumer: AIOKafkaConsumer | None = None
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _next_purge: float = 0.0

    def stop(self) -> None:
        self._stopping.set()

    async def seek_to_stored(self, tps: list[TopicPartition]) -> None:
        consumer = self._consumer
        assert consumer is not None
        stored = await self.store.offsets(self.config.group_id)
        fresh = []
        for tp in tps:
            offset = stored.get((tp.topic, tp.partition))
            self.starts[tp] = offset
            if offset is None:
                fresh.append(tp)
            else:
                consumer.seek(tp, offset)
        if fresh:
            await consumer.seek_to_beginning(*fresh)
        log.info(
            "recording %d partition(s) from the offsets stored in the database (%d from the "
            "beginning)",
            len(tps),
            len(fresh),
        )

    async def run(self) -> None:
        cfg = self.config
        await self.store.check_schema()  # before joining the group: say what to run
        consumer = AIOKafkaConsumer(
            **client_kwargs(cfg.bootstrap),
            group_id=cfg.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **membership(cfg.rebalance_timeout_ms),
            max_poll_interval_ms=600_000,
            fetch_max_wait_ms=cfg.fetch_max_wait_ms,
        )
        self._consumer = consumer
        consumer.subscribe(list(cfg.topics), listener=_Seek(self))
        await consumer.start()
        try:
            while not self._stopping.is_set():
                await self._purge_if_due()
                batches = await consumer.getmany(timeout_ms=500, max_records=cfg.max_records)
                if batches:
                    await self.record(consumer, batches)
        finally:
            await consumer.stop()
            self._consumer = None

    async def record(
        self, consumer: AIOKafkaConsumer, batches: dict[TopicPartition, list[Any]]
    ) -> bool:
        """Write one batch; False when it was rolled back (the partitions are then read
        again from the stored offsets)."""
        spans: dict[tuple[str, int], Span] = {}
        incoming: list[Incoming] = []
        for tp, records in batches.items():
            if not records or tp not in self.starts:
                continue  # revoked since the fetch: its new owner reads it
            spans[(tp.topic, tp.partition)] = Span(self.starts[tp], records[-1].offset + 1)
            incoming += [
                Incoming(
                    r.topic,
                    r.partition,
                    r.offset,
                    r.key,
                    r.value,
                    r.timestamp,
                    tuple(r.headers or ()),
                )
                for r in records
            ]
        if not spans:
            return True
        rows = decode(incoming, self.selection)
        try:
            await self.store.apply(self.config.group_id, rows, spans)
        except (DataError, IntegrityError) as exc:
            # A record the database refuses (a value out of its range ...) must not stop
            # the record: write the batch one record at a time, and keep the refused ones
            # whole in unreadable_records.
            log.warning("the database refused a row (%s): recording one by one", exc.orig)
            try:
                rows = await self._one_by_one(incoming)
            except StaleOffsets as stale:
                return await self._stale(stale, spans)
        except StaleOffsets as exc:
            return await self._stale(exc, spans)
        except DBAPIError as exc:
            self.metrics.record_batches_retried.labels("database").inc()
            log.error("the record database failed (%s); the batch is read again", exc.orig)
            await asyncio.sleep(2.0)
            await self.seek_to_stored([TopicPartition(t, p) for t, p in spans])
            return False
        for (topic, partition), span in spans.items():
            self.starts[TopicPartition(topic, partition)] = span.end
        for skip in rows.skipped:
            r = skip.record
            self.metrics.record_skipped.labels(r.topic, skip.reason).inc()
            log.warning(
                "%s[%d]@%d not recorded as a message (%s: %s); kept in unreadable_records",
                r.topic,
                r.partition,
                r.offset,
                skip.reason,
                skip.detail,
            )
        for table, table_rows in rows.tables.items():
            self.metrics.record_rows.labels(table.__tablename__).inc(len(table_rows))
        await commit_owned(
            consumer, {TopicPartition(t, p): span.end for (t, p), span in spans.items()}
        )
        return True

    async def _stale(self, exc: StaleOffsets, spans: dict[tuple[str, int], Span]) -> bool:
        self.metrics.record_batches_retried.labels("stale_offsets").inc()
        log.warning("another recorder wrote %s meanwhile: reading them again", exc)
        await self.seek_to_stored([TopicPartition(t, p) for t, p in spans])
        return False

    async def _one_by_one(self, incoming: list[Incoming]) -> Rows:
        done = Rows()
        for record in incoming:
            tp = TopicPartition(record.topic, record.partition)
            span = {(record.topic, record.partition): Span(self.starts[tp], record.offset + 1)}
            rows = decode([record], self.selection)
            try:
                await self.store.apply(self.config.group_id, rows, span)
            except (DataError, IntegrityError) as exc:
                rows = Rows()
                unreadable(rows, record, "refused", f"the database refused it: {exc.orig}")
                await self.store.apply(self.config.group_id, rows, span)
            self.starts[tp] = record.offset + 1
            for table, table_rows in rows.tables.items():
                done.tables.setdefault(table, []).extend(table_rows)
            done.skipped += rows.skipped
        return done

    async def _purge_if_due(self) -> None:
        now = asyncio.get_running_loop().time()
        if now < self._next_purge:
            return
        self._next_purge = now + self.config.purge_every
        before = datetime.now(UTC) - timedelta(days=self.config.readings_days)
        try:
            purged = await self.store.purge(before)
        except DBAPIError as exc:
            log.error("purging old readings failed: %s", exc.orig)
            return
        for table, n in purged.items():
            self.metrics.record_purged.labels(table).inc(n)
        if any(purged.values()):
            log.info("purged readings observed before %s: %s", before.isoformat(),
                     ", ".join(f"{n} from {t}" for t, n in purged.items()))  # fmt: skip


async def behind(
    bootstrap: Kafka, store: Store, group_id: str, topics: tuple[str, ...] = TOPICS
) -> list[str]:
    """The partitions whose records the database does not hold yet (empty: the record
    has everything the topics hold now)."""
    admin = AIOKafkaAdminClient(**client_kwargs(bootstrap))
    await admin.start()
    try:
        described = await admin.describe_topics()
    finally:
        await admin.close()
    tps = [
        TopicPartition(t["topic"], p["partition"])
        for t in described
        if t["topic"] in topics and not t["error_code"]
        for p in t["partitions"]
    ]
    if not tps:
        return []
    consumer = AIOKafkaConsumer(**client_kwargs(bootstrap), group_id=None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    stored = await store.offsets(group_id)
    return [
        f"{tp.topic}[{tp.partition}]"
        for tp, end in ends.items()
        if end > 0 and stored.get((tp.topic, tp.partition), 0) < end
    ]
