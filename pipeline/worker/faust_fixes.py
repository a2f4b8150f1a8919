"""Every use of a private part of faust-streaming, mode-streaming or aiokafka, in one
place: the worker's corrections to its Kafka transport, its producer, its sensors, its
tables and its terminal. The rest of the worker uses only their public API.

Each correction fixes a real loss or stall, and each was verified on the versions in
:data:`VERIFIED` only: :func:`check_versions` (called by ``build_app``) refuses to
start a worker on any other, naming both. Upgrading one of the three means reading
each correction below against the new code, running the tests each one names, then
moving :data:`VERIFIED` (and ``constraints.txt``).

The transport: Faust's aiokafka driver with five corrections (and table recovery
with a sixth), and a loud report of
the loss they exist to prevent. Subclasses, not patches: only a canhbao app uses them
(:meth:`WorkerApp._new_transport`).

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
   changelogs were declared with acks (``pipeline.worker.store.json_table``; Faust's
   own changelogs have none), so they were checked as streams, although an active
   table only writes its changelog and reads it back only in recovery (its high
   watermark runs ahead of a position that never moves); and the Monitor sensor is
   removed (:class:`WorkerApp`), so "an event was taken" was never recorded for any
   partition, and a busy stream partition would have been reported too. The check
   now skips changelog partitions and measures progress from the consumer's own
   offsets, sampled at each check: a stream partition is reported when records wait
   for it (on the broker, or handed to the stream and not yet done) and neither its
   read nor its committed offset has moved for ``stream_processing_timeout``. A
   hanging agent is still reported, at ERROR (``tests/unit/test_faust_fixes.py``).

6. **A recovery round that gives way.** When a worker joins as another ends its
   table recovery, Faust's rebalance handler replaces the sets of active and standby
   changelog partitions (a partition new to a set gets no start offset: None, built
   by the next round) and signals a new round; the current one, if its wait for the
   end of recovery returned in the same turn of the event loop, goes on and seeks
   the new standby partitions to None. aiokafka refuses (``ValueError: Offset must
   be a positive integer``) and, when that answer came back before the signal, the
   recovery service, and so the worker, crashed: the bench's two workers on Apache
   Kafka lost one that way. A seek of offsets built before a pending rebalance now
   gives way to the next round, as every other step of recovery does.

7. **One hand-off per record, not five tasks.** Faust's drain loop hands each
   record to its stream through ``wait_first(callback(message),
   suspend_flow.wait())``: four tasks created and three cancelled per record, so
   that a hand-off blocked on a full stream buffer or a suspended flow gives way to
   a rebalance. That was the largest single cost of the worker's Faust machinery
   in the profile of ``canhbao bench`` (py-spy on a worker draining a backlog).
   When the hand-off cannot block (the flow runs, no suspension is asked for, the
   conductor's lock is free and every stream buffer of the record's topic has
   room), it runs in place: it then completes without yielding to the event loop,
   so nothing can change in between, exactly as the task would have. Otherwise
   Faust's race runs as before. Proven by the worker's integration tests (every
   record goes this way) and ``test_a_record_is_handed_over_in_place_only_when_it_cannot_block``.

Without 2 and 3 a worker that joined a group could silently skip the readings a
partition had received before its first commit; without 4 a worker that took over
a partition could skip the readings that arrived during its recovery. The
scale-out test caught both, under load. Should records ever be read past again,
``Consumer._add_gap`` logs an error and counts them (``canhbao_offset_gaps_total``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from importlib import metadata
from typing import Any, ClassVar, cast

import aiokafka
import faust
from aiokafka import TopicPartition
from faust.tables.manager import TableManager as FaustTableManager
from faust.tables.recovery import RebalanceAgain
from faust.tables.recovery import Recovery as FaustRecovery
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as driver
from faust.types import TP
from faust.types.transports import ConsumerT
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent
from mode.utils.times import humanize_seconds, humanize_seconds_ago

from topics.catalogue import BY_NAME, Cleanup
from topics.connection import Kafka, connection
from topics.metrics import Metrics

log = logging.getLogger(__name__)

# -- the versions these corrections were verified on ---------------------------------

#: The distributions whose internals this module relies on, at the versions it was
#: read against and tested with (``constraints.txt``).
VERIFIED: dict[str, str] = {
    "faust-streaming": "0.15.3",
    "mode-streaming": "0.7.1",
    "aiokafka": "0.14.0",
}


class UnverifiedVersions(RuntimeError):
    """The worker was started on a faust-streaming, mode-streaming or aiokafka version
    its corrections were not verified on."""


def installed_versions() -> dict[str, str | None]:
    """The installed version of each distribution in :data:`VERIFIED` (None: missing)."""
    found: dict[str, str | None] = {}
    for name in VERIFIED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def check_versions(found: Mapping[str, str | None] | None = None) -> None:
    """Refuse to start on versions the corrections below were not verified on: each
    one reaches into their internals, and a silent change there could lose readings
    (``tests/unit/test_faust_fixes.py::test_another_faust_version_stops_the_worker``)."""
    found = installed_versions() if found is None else found
    wrong = {name: found.get(name) for name, want in VERIFIED.items() if found.get(name) != want}
    if not wrong:
        return
    lines = [
        f"  {name}: found {got or 'not installed'}, verified {VERIFIED[name]}"
        for name, got in wrong.items()
    ]
    raise UnverifiedVersions(
        "the canhbao worker does not start on versions its Faust/aiokafka corrections "
        "(pipeline/worker/faust_fixes.py) were not verified on:\n"
        + "\n".join(lines)
        + "\ninstall the verified ones (pip install -c constraints.txt -e .), or verify "
        "each correction on the new versions and update VERIFIED"
    )


# -- the transport -----------------------------------------------------------------


class FlowControl(FlowControlEvent):
    """The streams' flow control, whose ``resume`` empties the queues only when it
    ends a suspension (item 4 above; mode's ``_suspend``/``_resume`` events).
    Proven by ``test_resuming_running_streams_keeps_the_records_already_queued``."""

    def resume(self) -> None:
        suspended = not self.is_active()
        self._suspend.clear()
        self._resume.set()
        if suspended:
            self.clear()


class LivePartitions:
    """Faust's live set of active partitions as aiokafka's ``fetched_records`` reads
    it (``if partitions and tp not in partitions``), except that it is never false:
    once every partition is paused, it lets nothing through instead of everything
    (item 2 above). Proven by
    ``test_records_of_partitions_paused_during_the_fetch_stay_unread``."""

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
    """Faust's consumer thread with items 1, 2, 3 and 5 above."""

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
        checks as they are, then a stream check that needs no Monitor sensor. Proven
        by ``test_a_quiet_workers_changelogs_are_not_taken_for_stalled_streams`` and
        ``test_a_stream_whose_agent_hangs_is_reported_at_error``."""
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
        # Item 1: the driver passes no fetch wait of ours; aiokafka reads this at start.
        # Proven by test_the_worker_consumer_waits_as_configured.
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
        # Item 2 (and the end of item 3's rewind window). Proven by
        # test_records_of_partitions_paused_during_the_fetch_stay_unread and
        # test_a_batch_handed_out_after_a_rewind_is_not_taken_for_a_gap.
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
        # Item 3. Proven by
        # test_after_a_rebalance_every_partition_is_read_again_from_its_commit.
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
    """Faust's consumer with item 3's rewind and the loud report of offset gaps."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The partitions rewound since the drain loop last asked for records, and
        # where to: the batch it is handing out may still hold their later records.
        self.rewound: dict[TP, int] = {}

    def delivers_at_once(self, topic: str) -> bool:
        """Whether handing a record of ``topic`` to its streams cannot block (item 7):
        the flow runs, no suspension is asked for, the conductor's lock is free and
        every stream buffer of the topic has room."""
        app = self.app
        if not app.flow_control.is_active() or self.suspend_flow.is_set():
            return False
        conductor = cast(Any, app.topics)  # Faust's Conductor, whose internals these are
        if conductor._tp_to_callback_lock.locked():
            return False
        return all(not channel.queue.full() for channel in conductor._topic_name_index[topic])

    async def _drain_messages(self, fetcher: Any) -> None:
        # Faust's loop (faust/transport/consumer.py, 0.15.3) with item 7: a record's
        # hand-off runs in place when it cannot block, through Faust's race otherwise.
        callback = self.callback
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        acks_enabled_for = self.app.topics.acks_enabled_for
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        at_once = self.delivers_at_once
        yield_every = 100
        num_since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                ait = self.getmany(timeout=1.0)
                await self.sleep(0)  # Faust's: getmany may not yield to the loop
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await asyncio.sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            every = self._commit_every
                            if every is not None and self._n_acked >= every:
                                self._n_acked = 0
                                await self.commit()
                            if at_once(message.topic):
                                await callback(message)
                            else:
                                await self.wait_first(callback(message), self.suspend_flow.wait())
                            set_read_offset(tp, offset)
                    self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def perform_seek(self) -> None:
        # Item 3. Proven by test_the_rewind_is_not_undone_by_a_late_read_offset_update.
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
        # were read and lost on the way to the streams. Say so, loudly. Proven by
        # test_records_lost_on_the_way_to_the_streams_are_reported.
        start = self.rewound.get(tp)
        if start is not None and offset_from <= start + 1:
            # A batch fetched before a rewind, handed out after it: the rewind reads
            # the range again, so it is neither lost nor done.
            log.debug("%s: records after a rewind to %d, read again", tp, start)
            return
        spec = BY_NAME.get(tp.topic)
        if spec is None or spec.cleanup is not Cleanup.COMPACT:
            metrics = getattr(self.app, "metrics", None) or Metrics.default()
            metrics.offset_gaps.labels(tp.topic).inc(max(0, offset_to - offset_from))
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


# -- table recovery ---------------------------------------------------------------


class Recovery(FaustRecovery):
    """Faust's table recovery with item 6 above."""

    async def _seek_offsets(
        self, consumer: ConsumerT, tps: set[TP], offsets: Any, title: str
    ) -> None:
        # Item 6. Proven by
        # test_a_rebalance_as_recovery_ends_restarts_it_instead_of_crashing_the_worker.
        if self.signal_recovery_start.is_set():
            # The sets changed under this round: the next one builds their offsets.
            log.info("%s changelog partitions changed by a rebalance: recovery restarts", title)
            raise RebalanceAgain()
        await super()._seek_offsets(consumer, tps, offsets, title)


class TableManager(FaustTableManager):
    """Faust's table manager, recovering with :class:`Recovery`."""

    @property
    def recovery(self) -> FaustRecovery:
        if self._recovery is None:
            self._recovery = Recovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


# -- the app: its transport, flow control and sensors ------------------------------


class WorkerApp(faust.App):
    """A Faust app with the corrected transport and flow control, and without the
    Monitor sensor. ``fetch_max_wait_ms`` and ``metrics`` are read by the transport."""

    #: The worker consumer's fetch wait (item 1 above); None keeps Faust's.
    fetch_max_wait_ms: int | None = None
    #: Where the transport counts offset gaps (None: the process's metrics).
    metrics: Metrics | None = None

    def on_init_dependencies(self) -> Any:
        deps = super().on_init_dependencies()
        # Faust's Monitor sensor keeps per-event statistics for its web UI, which a
        # canhbao worker does not run (metrics are Prometheus): a cost on every event.
        # The monitor object stays for the few places that call it directly. Proven
        # by test_the_monitor_sensor_is_gone_and_its_warning_quiet.
        self.sensors.remove(self.monitor)
        # Without a sensor, every rebalance would log a warning that no sensor kept
        # state for it: true, and not a problem.
        self.log.logger.addFilter(no_sensor_state_warning)
        return deps

    @cached_property
    def tables(self) -> Any:
        # Item 6 (Faust's own builds its manager from conf.TableManager, the same way).
        return TableManager(app=self, beacon=self.beacon)

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        # Item 4. Proven by test_the_worker_app_uses_this_flow_control.
        return FlowControl(loop=self.loop)

    def _new_transport(self) -> Any:
        # Items 1, 2, 3 and 5 (Faust's hook for its transport; private in name only).
        return Transport(self.conf.broker_consumer, self)


def broker_credentials(kafka: Kafka) -> faust.auth.Credentials | None:
    """Faust's ``broker_credentials`` (a public setting) for ``kafka``: the same TLS
    context and SASL login as every aiokafka client canhbao makes
    (``topics.connection.client_kwargs``); None for a plaintext cluster. Proven by
    test_faust_gets_the_same_credentials_as_every_client and the SASL_SSL test."""
    conn = connection(kafka)
    context = conn.ssl_context()
    if conn.uses_sasl:
        assert conn.password is not None  # checked when the connection was made
        return faust.SASLCredentials(
            username=conn.username,
            password=conn.password.get_secret_value(),
            ssl_context=context,
            mechanism=conn.sasl_mechanism,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def no_sensor_state_warning(record: logging.LogRecord) -> bool:
    return "Missing sensor state" not in record.getMessage()


def producer_of(app: faust.App) -> Any:
    """The aiokafka producer Faust started and owns for ``app`` (created on first use).

    The worker's writers send through it directly, without Faust's per-message
    ``Topic.send`` machinery: that path awaits ``maybe_start_producer``, whose
    stampede guard yields to the event loop on every call (more than half a
    millisecond per message in the worker), and feeds Faust's send sensors, which
    nothing here reads. Proven by tests/integration/test_rules_live.py (every output
    of the worker goes this way) and the throughput of ``canhbao bench``."""
    return cast(Any, app.producer)._ensure_producer()


# -- tables -----------------------------------------------------------------------
# The worker's TableStore writes a table's local data directly and its changelog
# itself (flushed and acknowledged before an event is acked; Faust's own changelog
# writes go through a buffer whose flush can return early). Faust's table then must
# still know which partition a key came from, to drop it when that partition is
# revoked: its store keeps that in ``_key_partition``. Proven by
# test_a_revoked_partitions_state_leaves_the_workers_table, and under load by
# tests/integration/test_scale_out.py (partitions moving between workers).


def table_put(table: Any, key: str, value: Any, partition: int) -> None:
    """Set ``key`` in ``table``'s local data, without a changelog write of Faust's."""
    table.data[key] = value
    key_partition = getattr(table.data, "_key_partition", None)
    if key_partition is not None:
        key_partition[key] = partition  # so a revoked partition's keys are dropped


def table_pop(table: Any, key: str) -> bool:
    """Remove ``key`` from ``table``'s local data; False when it was not there."""
    if table.data.get(key) is None:
        return False
    del table.data[key]
    getattr(table.data, "_key_partition", {}).pop(key, None)
    return True


def table_items(table: Any) -> list[tuple[str, Any]]:
    """A snapshot of ``table``'s local data (this worker's partitions)."""
    return list(table.data.items())


# -- the terminal -----------------------------------------------------------------


class QuietWorker(faust.Worker):
    """Faust's worker without its terminal spinner: Faust's sets the root logger to
    DEBUG so that it can spin on every record, which makes every debug call in
    aiokafka and Faust build a log record nobody reads (a few % of the worker's CPU).
    Proven by test_the_worker_keeps_its_log_level."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None


# -- fetching behind the end of a log on a broker that answers by its deadline -------
# Kafka answers a fetch as soon as it has records at the position; ``fetch_max_wait_ms``
# only bounds the wait for records that do not exist yet. Tansu (the embedded broker,
# memory storage) also stops *reading* at that deadline: reading from a position far
# behind the end of a large log takes it longer than the embedded 10 ms, so it answers
# with no records, the consumer asks again from the same position, and it never catches
# up (a soak saw the validate stage stop for good 8 minutes in, 13,000 readings behind,
# while a fresh consumer read the same offsets at once). A fetch that brings nothing
# while the broker reports records beyond the position now doubles the next wait (up
# to CATCH_UP_WAIT_MS); the first fetch with records brings it back to the configured
# value, so a consumer that keeps up keeps its short wait. On Kafka the wait never
# grows (a position behind the end always gets records). aiokafka's Fetcher is the
# same for every consumer of a process (the worker's Faust consumer and its plain
# ones, the dispatchers, the recorder): ``install_catch_up_fetch`` patches it once.
# Proven by test_a_fetch_that_brings_nothing_while_behind_waits_longer_next_time
# (tests/unit/test_faust_fixes.py); on Tansu, by `canhbao bench --soak 30m` (RELIABILITY.md:
# the validate stage stopped for good without it, a fresh consumer with it read the
# 20,000 readings it was behind in 3.4 s).

#: The longest a fetch waits while catching up (ms): long enough for Tansu to read from
#: anywhere in a log of millions of records, short enough to notice a stop quickly.
CATCH_UP_WAIT_MS = 2_000


def _behind(assignment: Any, request: Any) -> bool:
    """True when a partition of ``request`` has records on the broker beyond the
    position it was fetched from (the high watermark of the last answer)."""
    for topic, partitions in request.topics:
        for partition, offset, *_ in partitions:
            state = assignment.state_value(TopicPartition(topic, partition))
            if state is not None and state.highwater is not None and state.highwater > offset:
                return True
    return False


def catch_up_fetch(original: Any) -> Any:
    """``Fetcher._proc_fetch_request`` that lengthens the next fetch's wait while a
    fetch comes back empty behind the end of the log (see above)."""

    async def proc_fetch_request(self: Any, assignment: Any, node_id: int, request: Any) -> Any:
        floor = self.__dict__.setdefault("_canhbao_floor_wait_ms", self._fetch_max_wait_ms)
        got = await original(self, assignment, node_id, request)
        if got:
            self._fetch_max_wait_ms = floor
        elif assignment.active and _behind(assignment, request):
            longer = min(CATCH_UP_WAIT_MS, max(floor, self._fetch_max_wait_ms) * 2)
            if longer != self._fetch_max_wait_ms:
                log.info("fetch: behind the end of the log with nothing back; wait %d ms", longer)
            self._fetch_max_wait_ms = longer
        return got

    proc_fetch_request.canhbao_catch_up = True  # type: ignore[attr-defined]
    return proc_fetch_request


def install_catch_up_fetch() -> None:
    """Patch aiokafka's Fetcher once per process (idempotent)."""
    from aiokafka.consumer.fetcher import Fetcher

    current = Fetcher._proc_fetch_request
    if not getattr(current, "canhbao_catch_up", False):
        Fetcher._proc_fetch_request = catch_up_fetch(current)
