"""The worker's Kafka transport: Faust's aiokafka driver with five corrections,
and a loud report of the loss they exist to prevent.

Subclasses, not patches: only a canhbao app uses them (``App._new_transport``).

1. **Fetch wait.** The driver hard-codes the consumer's fetch wait (1.5 s), which
   is then the floor of the pipeline's latency on a quiet partition; it becomes
   the configured ``fetch_max_wait_ms``.
2. **No records of paused partitions.** Faust hands aiokafka its *live* set of
   active partitions, and aiokafka's ``fetched_records`` reads it again after
   every wait, treating an empty set as "every partition". When table recovery
   pauses the changelog partitions during that wait, the set becomes empty and
   aiokafka returns, and moves past, prefetched records of stream partitions that
   Faust then drops as inactive. The fetch now sees the live set through a view
   that is never empty-means-all. (Not a copy: a copy taken before a rebalance
   still names partitions paused since, and hands out records of a changelog
   that recovery has just rewound, which Faust then drops: recovery waits for
   them forever.)
3. **A rewind that rewinds.** After every rebalance Faust seeks the stream
   partitions back to their committed offsets, so that records dropped during
   the rebalance are read again. aiokafka skips partitions with no committed
   offset yet (``if offset and offset > 0``), which leaves them past the dropped
   records: those now go back to the start, as ``auto_offset_reset=earliest``
   says. And Faust lowers its read offsets only after the seek, from the other
   thread, so records fetched again in between were dropped as already read:
   each read offset now moves with its partition's position, and Faust's late
   update (which made records read in the meantime look like a gap) is gone.
   (Reading again is safe: the quality gate sets duplicates aside and warning
   states are versioned.)

4. **Resuming what runs.** At the end of table recovery Faust resumes the streams'
   flow control even when it is already running (it was resumed for the changelog
   reads), after it has resumed the stream partitions and while it awaits the
   rewind of item 3. mode's ``FlowControlEvent.resume`` empties every stream's queue
   each time, so records fetched in that window, already past the consumer's
   position and Faust's read offsets, were thrown away. The next record read then
   looked like a gap, which Faust treats as done: their offsets were committed and
   the readings were never evaluated. Resuming now empties the queues only when the
   flow was suspended (their records then belong to an older generation, and the
   rewind reads them again).

5. **A stall check that knows what a stream is.** Every 7 s (2.5 commit
   intervals) Faust checks each assigned partition and, after
   ``stream_processing_timeout`` (5 min), logs an ERROR when records are waiting and
   its Monitor sensor saw no event taken from that partition. Two things made a
   quiet, healthy worker log one every 7 s per changelog partition: the tables'
   changelogs were declared with acks (``pipeline.agents.store.json_table``; Faust's
   own changelogs have none), so they were checked as streams, although an active
   table only writes its changelog and reads it back only in recovery (its high
   watermark runs ahead of a position that never moves); and the Monitor sensor is
   removed (``pipeline.app``), so "an event was taken" was never recorded for any
   partition, and a busy stream partition would have been reported too. The check
   now skips changelog partitions and measures progress from the consumer's own
   offsets, sampled at each check: a stream partition is reported when records wait
   for it (on the broker, or handed to the stream and not yet done) and neither its
   read nor its committed offset has moved for ``stream_processing_timeout``. A
   hanging agent is still reported, at ERROR (``tests/unit/test_transport.py``).

Without 2 and 3 a worker that joined a group could silently skip the readings a
partition had received before its first commit; without 4 a worker that took over
a partition could skip the readings that arrived during its recovery. The
scale-out test caught both, under load. Should records ever be read past again,
``Consumer._add_gap`` logs an error and counts them (``canhbao_offset_gaps_total``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, cast

import aiokafka
from aiokafka import TopicPartition
from faust.transport.drivers import aiokafka as driver
from faust.types import TP
from mode.utils.queues import FlowControlEvent
from mode.utils.times import humanize_seconds, humanize_seconds_ago

from canhbao.metrics import OFFSET_GAPS
from topics.catalogue import BY_NAME, Cleanup

log = logging.getLogger(__name__)


class FlowControl(FlowControlEvent):
    """The streams' flow control, whose ``resume`` empties the queues only when it
    ends a suspension (see item 4 above)."""

    def resume(self) -> None:
        suspended = not self.is_active()
        self._suspend.clear()
        self._resume.set()
        if suspended:
            self.clear()


class LivePartitions:
    """Faust's live set of active partitions as aiokafka's ``fetched_records`` reads
    it (``if partitions and tp not in partitions``), except that it is never false:
    once every partition is paused, it lets nothing through instead of everything."""

    def __init__(self, live: set[TP]) -> None:
        self.live = live

    def __bool__(self) -> bool:
        return True

    def __contains__(self, tp: object) -> bool:
        return tp in self.live

    def __iter__(self) -> Iterator[TP]:
        return iter(set(self.live))

    def __len__(self) -> int:
        return len(self.live)


class ConsumerThread(driver.AIOKafkaConsumerThread):
    # Per stream partition, at the last check: (read offset, committed offset) and
    # since when they have stood still with records waiting (see item 5 above).
    _progress: dict[TP, tuple[tuple[int | None, int | None], float]]

    def __post_init__(self) -> None:
        super().__post_init__()
        self._progress = {}

    @property
    def rewound(self) -> dict[TP, int]:
        return cast("Consumer", self.consumer).rewound

    def verify_event_path(self, now: float, tp: TP) -> None:
        """Faust's stall check for one assigned partition (item 5 above): its fetch
        checks as they are, then a stream check that needs no Monitor sensor."""
        if self._verify_aiokafka_event_path(now, tp):
            return  # aiokafka stopped fetching: Faust has logged it
        app = self.app
        if tp.topic in app.tables.changelog_topics or not app.topics.acks_enabled_for(tp.topic):
            return  # written by this worker, read only in recovery: not a stream
        assignment = self._ensure_consumer()._fetcher._subscriptions.subscription.assignment
        state = assignment.state_value(TopicPartition(tp.topic, tp.partition))
        if state is None:
            return
        if state.highwater is None:
            if now - self.time_started >= self.tp_stream_timeout_secs:
                log.error(
                    "%s[%d]: no fetch answered since the worker started %s",
                    tp.topic,
                    tp.partition,
                    humanize_seconds_ago(now - self.time_started),
                )
            return
        faust = self.consumer
        read = faust._read_offset.get(tp)  # the last record handed to the stream
        committed = faust._committed_offset.get(tp)  # the next record not yet done
        on_broker = state.position is not None and state.highwater > state.position
        # Taken by a stream and not yet acknowledged (a few thousand at most).
        in_stream = any(m.tp == tp for m in list(faust._unacked_messages))
        mark = (read, committed)
        progress = self._progress
        seen = progress.get(tp)
        if not (on_broker or in_stream) or seen is None or seen[0] != mark:
            progress[tp] = (mark, now)  # nothing waits, or the stream moved on
            return
        still = now - seen[1]
        if still >= self.tp_stream_timeout_secs:
            log.error(
                "%s[%d]: records wait (up to offset %d) and the stream has taken or "
                "finished none for %s (last handed to it: %s, next to commit: %s); "
                "its agent may hang: `kill -USR1 <pid>` prints every task's stack",
                tp.topic,
                tp.partition,
                state.highwater - 1,
                humanize_seconds(still),
                read,
                committed,
            )

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        wait = getattr(self.app, "fetch_max_wait_ms", None)  # set on canhbao apps
        if wait is not None:
            consumer._fetch_max_wait_ms = wait  # read when the consumer starts
        return consumer

    async def _fetch_records(
        self,
        consumer: aiokafka.AIOKafkaConsumer,
        active_partitions: set[TP],
        timeout: float | None = None,  # noqa: ASYNC109 (the overridden signature)
        max_records: int | None = None,
    ) -> Any:
        # The drain loop has handed out the whole previous batch before it asks for
        # the next one: from here on, a jump in offsets is no longer a rewound batch.
        self.rewound.clear()
        if active_partitions is None:
            return await super()._fetch_records(consumer, active_partitions, timeout, max_records)
        if not active_partitions:
            return {}  # nothing is active: never "every partition"
        live = cast(set[TP], LivePartitions(active_partitions))
        return await super()._fetch_records(consumer, live, timeout, max_records)

    async def seek_to_committed(self) -> Mapping[TP, int]:
        # As aiokafka's, None stands for "nothing committed" (Faust's type omits it).
        committed: Mapping[TP, int] = await self.call_thread(self._seek_to_committed)
        return committed

    async def _seek_to_committed(self) -> Mapping[TP, int | None]:
        consumer = self._ensure_consumer()
        read_offset = self.consumer._read_offset
        rewind = self.app.conf.consumer_auto_offset_reset == "earliest"
        changelogs = self.app.tables.changelog_topics
        assigned = list(consumer.assignment())
        # One OffsetFetch for every partition (aiokafka's ``committed`` asks per
        # partition); -1 is Kafka's "none committed".
        fetched = await consumer._coordinator.fetch_committed_offsets(assigned)
        committed: dict[TP, int | None] = {
            tp: fetched[tp].offset if tp in fetched and fetched[tp].offset != -1 else None
            for tp in assigned
        }
        to_beginning: list[TopicPartition] = []
        marks = self.rewound
        for tp, offset in committed.items():
            # The read offset moves with the position, in one step of this thread:
            # records fetched after the seek are never compared with the old one
            # (and dropped as already read, as Faust's own update comes later).
            if offset is not None and offset > 0:
                consumer.seek(tp, offset)
                read_offset[tp] = offset
                marks[tp] = offset
            elif rewind and tp.topic not in changelogs:
                # Changelog partitions are positioned by table recovery, not by commits.
                to_beginning.append(tp)
                read_offset[tp] = None
        if to_beginning:
            await consumer.seek_to_beginning(*to_beginning)
        return committed


class Consumer(driver.Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The partitions rewound since the drain loop last asked for records, and
        # where to: the batch it is handing out may still hold their later records.
        self.rewound: dict[TP, int] = {}

    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def perform_seek(self) -> None:
        # Faust's own sets the read offsets once more after the rewind, from this
        # thread and late: records read since then were taken for a gap and counted
        # done before they were handled. The rewind moved them with the positions.
        committed = await self.seek_to_committed()
        self._committed_offset.update(
            {tp: offset for tp, offset in committed.items() if offset is not None and offset > 0}
        )

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        # Faust takes a jump in offsets for records compaction removed, and counts
        # them done. On a topic that is not compacted the records were there: they
        # were read and lost on the way to the streams. Say so, loudly.
        start = self.rewound.get(tp)
        if start is not None and offset_from <= start + 1:
            # A batch fetched before a rewind, handed out after it: the rewind reads
            # the range again, so it is neither lost nor done.
            log.debug("%s: records after a rewind to %d, read again", tp, start)
            return
        spec = BY_NAME.get(tp.topic)
        if spec is None or spec.cleanup is not Cleanup.COMPACT:
            OFFSET_GAPS.labels(tp.topic).inc(max(0, offset_to - offset_from))
            log.error(
                "%s[%d]: offsets %d to %d were read but never reached the streams; "
                "they count as done (a fault: please report it)",
                tp.topic,
                tp.partition,
                offset_from,
                offset_to - 1,
            )
        await super()._add_gap(tp, offset_from, offset_to)


class Transport(driver.Transport):
    Consumer: ClassVar[Any] = Consumer
