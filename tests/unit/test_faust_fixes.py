"""The worker's Kafka transport never lets a rebalance skip readings.

aiokafka itself is replaced by a stand-in that keeps its documented behaviour:
``fetched_records`` re-reads the partitions it was given after each wait and
treats an empty set as every partition; ``seek_to_committed`` leaves partitions
without a committed offset where they are. The streams' flow control is mode's
own, with its queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP
from mode.utils.queues import FlowControlQueue
from prometheus_client import CollectorRegistry

from canhbao.settings import Settings
from pipeline.worker import faust_fixes
from pipeline.worker.faust_fixes import (
    VERIFIED,
    Consumer,
    ConsumerThread,
    FlowControl,
    QuietWorker,
    UnverifiedVersions,
    check_versions,
    installed_versions,
)
from tests.unit.conftest import worker_app
from topics.metrics import Metrics

WATER = TP("canhbao.readings.water", 2)
CHANGELOG = TP("canhbao.state.evaluate", 2)


class FakeFetcher:
    """Records already fetched in the background, per partition, like aiokafka's."""

    _closed = False

    def __init__(self, records: dict[TP, list[str]]) -> None:
        self.records = records
        self.released = asyncio.Event()
        self.waiting = asyncio.Event()
        self._subscriptions = SimpleNamespace(fetch_context=contextlib.nullcontext)

    async def fetched_records(
        self, partitions: set[TP] | None, timeout: float = 0, max_records: int | None = None
    ) -> dict[TP, list[str]]:
        self.waiting.set()
        await self.released.wait()  # the set may change meanwhile: it is read after the wait
        drained = {}
        for tp in list(self.records):
            if partitions and tp not in partitions:
                continue
            drained[tp] = self.records.pop(tp)  # handed out: the position moves past them
        return drained


def thread(
    aiokafka_consumer: Any, *, reset: str = "earliest", changelogs: set[str] | None = None
) -> ConsumerThread:
    t = object.__new__(ConsumerThread)  # no service start-up: only the methods under test
    t.consumer = SimpleNamespace(flow_active=True, rewound={})  # type: ignore[assignment]
    t.app = SimpleNamespace(  # type: ignore[assignment]
        conf=SimpleNamespace(consumer_auto_offset_reset=reset),
        tables=SimpleNamespace(changelog_topics=changelogs or {CHANGELOG.topic}),
    )
    t._consumer = aiokafka_consumer

    async def call_thread(fun: Any, *args: Any, **kwargs: Any) -> Any:
        return await fun(*args, **kwargs)

    t.call_thread = call_thread  # type: ignore[method-assign]
    return t


@pytest.fixture
def fetcher() -> Iterator[FakeFetcher]:
    yield FakeFetcher({WATER: ["reading 98", "reading 99"], CHANGELOG: ["state"]})


async def test_records_of_partitions_paused_during_the_fetch_stay_unread(
    fetcher: FakeFetcher,
) -> None:
    consumer = SimpleNamespace(_fetcher=fetcher, _closed=False)
    t = thread(consumer)
    active = {CHANGELOG}  # table recovery: only the changelog is being read
    fetch = asyncio.ensure_future(t._fetch_records(consumer, active, timeout=1.0))  # type: ignore[arg-type]
    await fetcher.waiting.wait()
    active.clear()  # "Done reading from changelog topics": recovery pauses it
    fetcher.released.set()
    got = await fetch
    # Nothing paused is handed out (aiokafka would move past it and Faust drop it):
    # not the stream partition, nor the changelog recovery has just paused.
    assert got == {}
    assert fetcher.records[WATER] == ["reading 98", "reading 99"]  # still there to read
    assert fetcher.records[CHANGELOG] == ["state"]


async def test_a_partition_resumed_during_the_fetch_is_handed_out(fetcher: FakeFetcher) -> None:
    consumer = SimpleNamespace(_fetcher=fetcher, _closed=False)
    active = {CHANGELOG}
    fetch = asyncio.ensure_future(thread(consumer)._fetch_records(consumer, active, timeout=1.0))  # type: ignore[arg-type]
    await fetcher.waiting.wait()
    active.add(WATER)  # recovery done: the stream partition is resumed
    fetcher.released.set()
    assert set(await fetch) == {CHANGELOG, WATER}


async def test_nothing_active_fetches_nothing(fetcher: FakeFetcher) -> None:
    consumer = SimpleNamespace(_fetcher=fetcher, _closed=False)
    fetch = thread(consumer)._fetch_records(consumer, set())  # type: ignore[arg-type]
    got = await asyncio.wait_for(fetch, 2)
    assert got == {}
    assert not fetcher.waiting.is_set()
    assert WATER in fetcher.records


class FakeConsumer:
    """aiokafka's consumer as the rewind uses it: committed offsets, seeks."""

    def __init__(self, committed: dict[TP, int | None]) -> None:
        self.committed_offsets = committed
        self.positions: dict[TP, int] = {tp: 100 for tp in committed}  # past what was dropped
        self.to_beginning: list[TP] = []

        self._coordinator = self  # the one OffsetFetch goes through aiokafka's coordinator

    def assignment(self) -> set[TP]:
        return set(self.committed_offsets)

    async def fetch_committed_offsets(self, partitions: list[TP]) -> dict[TP, Any]:
        # Nothing committed comes back as -1 or not at all: both are exercised.
        return {
            tp: SimpleNamespace(offset=-1 if o is None else o)
            for tp in partitions
            if (o := self.committed_offsets[tp]) is not None or tp.partition % 2
        }

    def seek(self, tp: TP, offset: int) -> None:
        self.positions[tp] = offset

    async def seek_to_beginning(self, *partitions: Any) -> None:
        for p in partitions:
            tp = TP(p.topic, p.partition)
            self.to_beginning.append(tp)
            self.positions[tp] = 0


def rewinding(
    consumer: FakeConsumer, reset: str = "earliest"
) -> tuple[ConsumerThread, dict[TP, Any]]:
    t = thread(consumer, reset=reset)
    read_offset: dict[TP, Any] = {tp: 100 for tp in consumer.committed_offsets}  # Faust's, stale
    t.consumer._read_offset = read_offset  # type: ignore[attr-defined]
    return t, read_offset


W0, W1, W2 = (TP("canhbao.readings.water", p) for p in range(3))


async def test_after_a_rebalance_every_partition_is_read_again_from_its_commit() -> None:
    committed: dict[TP, int | None] = {
        W0: 57,
        W1: None,  # the group has not committed it yet
        W2: 0,
        CHANGELOG: None,  # recovery positions changelogs itself
    }
    consumer = FakeConsumer(committed)
    t, read_offset = rewinding(consumer)
    result = await t.seek_to_committed()
    assert result == committed
    assert consumer.positions == {W0: 57, W1: 0, W2: 0, CHANGELOG: 100}
    assert sorted(consumer.to_beginning) == [W1, W2]
    # Faust's read offsets moved with the positions, at once: what is fetched after
    # the rewind is delivered, not dropped as "already read".
    assert read_offset == {W0: 57, W1: None, W2: None, CHANGELOG: 100}


async def test_latest_reset_keeps_aiokafkas_behaviour() -> None:
    consumer = FakeConsumer({W1: None})
    t, _ = rewinding(consumer, reset="latest")
    await t.seek_to_committed()
    assert consumer.to_beginning == [] and consumer.positions == {W1: 100}


async def test_resuming_running_streams_keeps_the_records_already_queued() -> None:
    # Faust resumes at the end of recovery even when the flow already runs: the
    # records queued meanwhile were read from Kafka and must not be thrown away.
    flow = FlowControl()
    queue: FlowControlQueue[str] = FlowControlQueue(flow_control=flow, clear_on_resume=True)
    flow.resume()
    await queue.put("water/0@82")
    flow.resume()
    assert queue.qsize() == 1


async def test_resuming_suspended_streams_drops_the_old_generations_records() -> None:
    flow = FlowControl()
    queue: FlowControlQueue[str] = FlowControlQueue(flow_control=flow, clear_on_resume=True)
    flow.resume()
    await queue.put("water/0@82")
    flow.suspend()  # a rebalance: the rewind will read it again
    flow.resume()
    assert queue.qsize() == 0


def test_the_worker_app_uses_this_flow_control() -> None:
    settings = Settings()
    app = worker_app(settings)
    assert isinstance(app.flow_control, FlowControl)


def gap_consumer() -> Consumer:
    from collections import defaultdict

    from intervaltree import IntervalTree

    consumer = object.__new__(Consumer)  # only what Faust's _add_gap reads
    consumer._committed_offset = defaultdict(lambda: None)
    consumer._gap = defaultdict(IntervalTree)
    consumer.rewound = {}
    consumer.app = SimpleNamespace(metrics=Metrics(CollectorRegistry()))  # type: ignore[assignment]
    return consumer


async def test_records_lost_on_the_way_to_the_streams_are_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    consumer = gap_consumer()
    with caplog.at_level("ERROR", logger="pipeline.worker.faust_fixes"):
        await consumer._add_gap(WATER, 82, 102)
    registry = consumer.app.metrics.registry
    assert registry.get_sample_value("canhbao_offset_gaps_total", {"topic": WATER.topic}) == 20
    assert "canhbao.readings.water[2]: offsets 82 to 101 were read but never reached" in (
        caplog.text
    )
    assert consumer._gap[WATER]  # Faust's own bookkeeping still happens


async def test_a_compacted_topics_gaps_are_normal(caplog: pytest.LogCaptureFixture) -> None:
    consumer = gap_consumer()
    with caplog.at_level("ERROR", logger="pipeline.worker.faust_fixes"):
        await consumer._add_gap(CHANGELOG, 5, 9)
    assert caplog.text == ""


async def test_the_rewind_is_not_undone_by_a_late_read_offset_update() -> None:
    from collections import defaultdict

    consumer = object.__new__(Consumer)
    consumer._read_offset = {W0: None}
    consumer._committed_offset = defaultdict(lambda: None)

    async def seek_to_committed() -> dict[TP, int | None]:
        consumer._read_offset[W0] = 90  # the rewind, in the consumer thread
        consumer._read_offset[W0] = 100  # records 90 to 100 read since
        return {W0: 90, W1: None}

    consumer.seek_to_committed = seek_to_committed  # type: ignore[assignment,method-assign]
    await consumer.perform_seek()
    # Put back to 90, the next record (101) would look like a gap over 91 to 100,
    # and Faust would count those done before they were handled.
    assert consumer._read_offset[W0] == 100
    assert consumer._committed_offset[W0] == 90 and consumer._committed_offset[W1] is None


async def test_a_batch_handed_out_after_a_rewind_is_not_taken_for_a_gap(
    caplog: pytest.LogCaptureFixture, fetcher: FakeFetcher
) -> None:
    # The drain loop was handing out records 42 on when the rewind took W0 back to 29:
    # they are read again from 29, so 29 to 41 are neither lost nor done.
    faust_consumer = gap_consumer()
    faust_consumer._read_offset = {}
    aiokafka_consumer = FakeConsumer({W0: 29})
    t = thread(aiokafka_consumer)
    t.consumer = faust_consumer
    await t.seek_to_committed()
    with caplog.at_level("ERROR", logger="pipeline.worker.faust_fixes"):
        await faust_consumer._add_gap(W0, 30, 42)
    assert caplog.text == "" and not faust_consumer._gap[W0]
    # Once the loop asks for the next batch, a jump is a jump again.
    fetcher.released.set()
    await t._fetch_records(SimpleNamespace(_fetcher=fetcher, _closed=False), {W0}, timeout=1.0)  # type: ignore[arg-type]
    with caplog.at_level("ERROR", logger="pipeline.worker.faust_fixes"):
        await faust_consumer._add_gap(W0, 30, 42)
    assert "offsets 30 to 41 were read but never reached the streams" in caplog.text


# -- the stall check (item 5 of pipeline.worker.faust_fixes) ---------------------------------

TIMEOUT = 300.0  # Faust's stream_processing_timeout


class PartitionState(SimpleNamespace):
    """aiokafka's per-partition fetch state, as Faust's stall check reads it."""


def watching(
    states: dict[TP, PartitionState], unacked: list[Any] | None = None
) -> tuple[ConsumerThread, Any]:
    """A consumer thread 20 minutes into a worker's life, its last fetch just answered,
    with the Monitor sensor gone (as in the worker: ``WorkerApp``)."""
    from collections import defaultdict

    import faust
    from mode.utils.logging import CompositeLogger

    assignment = SimpleNamespace(
        active=True, state_value=lambda aiotp: states.get(TP(aiotp.topic, aiotp.partition))
    )
    aiokafka_consumer = SimpleNamespace(
        _fetcher=SimpleNamespace(
            _subscriptions=SimpleNamespace(subscription=SimpleNamespace(assignment=assignment))
        )
    )
    t = thread(aiokafka_consumer)
    t._progress = {}
    t.log = CompositeLogger(logging.getLogger("faust.transport.drivers.aiokafka"))
    t.time_started = 0.0
    t.tp_stream_timeout_secs = t.tp_fetch_request_timeout_secs = TIMEOUT
    t.tp_fetch_response_timeout_secs = t.tp_commit_timeout_secs = TIMEOUT
    app = worker_app(Settings())
    # What the conductor indexes at subscription: the agents' streams, and the
    # changelogs as the tables declare them.
    acking = {WATER.topic}
    for table in app.tables.values():
        if table.changelog_topic.acks:
            acking |= set(table.changelog_topic.topics)
    t.app = SimpleNamespace(  # type: ignore[assignment]
        conf=app.conf,
        tables=SimpleNamespace(changelog_topics=set(app.tables.changelog_topics)),
        topics=SimpleNamespace(acks_enabled_for=acking.__contains__),
        monitor=SimpleNamespace(stream_inbound_time={}),
    )
    faust_consumer = SimpleNamespace(
        _read_offset={},
        _committed_offset=defaultdict(lambda: None),
        _unacked_messages=list(unacked or []),
        app=t.app,
    )
    t.consumer = faust_consumer  # type: ignore[assignment]
    assert isinstance(app, faust.App)
    return t, faust_consumer


def fetched(now: float, highwater: int, position: int) -> PartitionState:
    return PartitionState(highwater=highwater, position=position, timestamp=now * 1000)


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_quiet_workers_changelogs_are_not_taken_for_stalled_streams(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # What a healthy worker showed every 7 s after 5 minutes: its tables' changelogs,
    # written since recovery and never read back, are ahead of their position.
    now = 1200.0
    states = {
        TP(topic, p): fetched(now, highwater=57, position=12)
        for topic in ("canhbao.state.evaluate", "canhbao.state.groups", "canhbao.state.broadcasts")
        for p in range(3)
    }
    t, _ = watching(states)
    with caplog.at_level(logging.ERROR):
        for check in range(3):
            for tp in states:
                t.verify_event_path(now + 7 * check, tp)
    assert errors(caplog) == []


def test_a_busy_stream_is_not_taken_for_a_stalled_one(caplog: pytest.LogCaptureFixture) -> None:
    # Records keep arriving (the high watermark is ahead at every check), and the
    # stream keeps taking and finishing them.
    states: dict[TP, PartitionState] = {}
    t, faust_consumer = watching(states)
    with caplog.at_level(logging.ERROR):
        for check in range(100):  # 11 minutes of checks
            now = 1200.0 + 7 * check
            states[WATER] = fetched(now, highwater=1000 * (check + 1), position=1000 * check + 900)
            faust_consumer._read_offset[WATER] = 1000 * check + 899
            faust_consumer._committed_offset[WATER] = 1000 * check + 500
            t.verify_event_path(now, WATER)
    assert errors(caplog) == []


def test_a_quiet_stream_is_not_taken_for_a_stalled_one(caplog: pytest.LogCaptureFixture) -> None:
    states = {WATER: fetched(1200.0, highwater=42, position=42)}
    t, faust_consumer = watching(states)
    faust_consumer._read_offset[WATER] = 41
    faust_consumer._committed_offset[WATER] = 42
    with caplog.at_level(logging.ERROR):
        for check in range(100):
            states[WATER].timestamp = (1200.0 + 7 * check) * 1000
            t.verify_event_path(1200.0 + 7 * check, WATER)
    assert errors(caplog) == []


def test_a_stream_whose_agent_hangs_is_reported_at_error(caplog: pytest.LogCaptureFixture) -> None:
    # The agent hangs on offset 41: records 42 to 99 wait on the broker, and neither
    # the read nor the committed offset moves.
    states = {WATER: fetched(1200.0, highwater=100, position=42)}
    hung = SimpleNamespace(tp=WATER, offset=41)
    t, faust_consumer = watching(states, unacked=[hung])
    faust_consumer._read_offset[WATER] = 41
    faust_consumer._committed_offset[WATER] = 41
    with caplog.at_level(logging.ERROR):
        for check in range(0, 42):  # up to 287 s: not yet
            states[WATER].timestamp = (1200.0 + 7 * check) * 1000
            t.verify_event_path(1200.0 + 7 * check, WATER)
        assert errors(caplog) == []
        states[WATER].timestamp = (1200.0 + 301) * 1000
        t.verify_event_path(1200.0 + 301, WATER)
    [message] = errors(caplog)
    assert message.startswith("canhbao.readings.water[2]: records wait (up to offset 99)")
    assert "none for 5.02 minutes" in message


def test_a_hang_on_the_last_record_of_a_quiet_partition_is_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Nothing else arrives: only the unacknowledged record shows the stream is stuck.
    states = {WATER: fetched(1200.0, highwater=42, position=42)}
    t, faust_consumer = watching(states, unacked=[SimpleNamespace(tp=WATER, offset=41)])
    faust_consumer._read_offset[WATER] = 41
    faust_consumer._committed_offset[WATER] = 41
    with caplog.at_level(logging.ERROR):
        for now in (1200.0, 1400.0, 1507.0):
            states[WATER].timestamp = now * 1000
            t.verify_event_path(now, WATER)
    assert len(errors(caplog)) == 1


def test_the_tables_changelogs_are_not_acked_streams() -> None:
    settings = Settings()
    app = worker_app(settings)
    assert {t.changelog_topic.get_topic_name() for t in app.tables.values()} == {
        "canhbao.state.evaluate",
        "canhbao.state.groups",
        "canhbao.state.broadcasts",
    }
    assert all(not t.changelog_topic.acks for t in app.tables.values())


# -- the versions, the sensors, the terminal ----------------------------------------


def test_the_verified_versions_are_the_pinned_ones() -> None:
    from canhbao.settings import REPO_ROOT

    pins = dict(
        line.split("==", 1)
        for line in (REPO_ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line
    )
    assert {name: pins[name] for name in VERIFIED} == VERIFIED
    assert installed_versions() == VERIFIED
    check_versions()  # the installed ones: the worker starts


def test_another_faust_version_stops_the_worker() -> None:
    found = {**VERIFIED, "faust-streaming": "0.16.0", "aiokafka": None}
    with pytest.raises(UnverifiedVersions) as stopped:
        check_versions(found)
    message = str(stopped.value)
    assert "faust-streaming: found 0.16.0, verified 0.15.3" in message
    assert "aiokafka: found not installed, verified 0.14.0" in message
    assert "mode-streaming" not in message  # the right one is not named
    assert "constraints.txt" in message  # and what to do about it


def test_the_monitor_sensor_is_gone_and_its_warning_quiet() -> None:
    app = worker_app(Settings())
    app.on_init_dependencies()
    assert app.monitor not in app.sensors
    record = logging.LogRecord(
        "faust", logging.WARNING, __file__, 1, "Missing sensor state for rebalance #1", None, None
    )
    other = logging.LogRecord("faust", logging.WARNING, __file__, 1, "Timed out", None, None)
    logger = app.log.logger
    assert not logger.filter(record) and logger.filter(other)


def test_the_worker_keeps_its_log_level() -> None:
    # Faust's own worker sets the root logger to DEBUG for its spinner at WARNING and
    # above; every debug call of aiokafka would then build a record.
    app = worker_app(Settings())
    logger = logging.getLogger("canhbao-test-root")
    logger.addHandler(logging.NullHandler())
    logger.setLevel(logging.WARNING)
    worker = QuietWorker(app, loglevel="warning", quiet=True)
    worker.on_setup_root_logger(logger, logging.WARNING)
    assert worker.spinner is None
    assert logger.level == logging.WARNING


# -- the fetch wait and the tables' local data --------------------------------------


def test_the_worker_consumer_waits_as_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    # Faust's driver hard-codes 1.5 s, the floor of a quiet partition's latency.
    from faust.transport.drivers import aiokafka as driver

    created = SimpleNamespace(_fetch_max_wait_ms=1500)
    monkeypatch.setattr(
        driver.AIOKafkaConsumerThread, "_create_worker_consumer", lambda self, transport: created
    )
    t = object.__new__(ConsumerThread)
    t.app = SimpleNamespace(fetch_max_wait_ms=10)  # type: ignore[assignment]
    assert t._create_worker_consumer(None) is created
    assert created._fetch_max_wait_ms == 10


async def test_a_revoked_partitions_state_leaves_the_workers_table() -> None:
    from pipeline.worker.store import TableStore
    from pipeline.worker.writers import MemoryWriter

    app = worker_app(Settings())
    table = app.tables["state"]
    changelog = MemoryWriter("canhbao.state.evaluate")
    TableStore(table, 2, changelog)["w|revoked"] = {"level": 2}
    TableStore(table, 0, changelog)["w|kept"] = {"level": 1}
    # Faust, after a rebalance that left this worker partition 0 only.
    await table.data.on_recovery_completed({TP("canhbao.state.evaluate", 0)}, set())
    assert "w|revoked" not in table.data and table.data["w|kept"]["level"] == 1
    # A deletion is a tombstone on the changelog, on the key's partition.
    store = TableStore(table, 0, changelog)
    del store["w|kept"]
    await store.flush()
    assert "w|kept" not in table.data
    last = changelog.records[-1]
    assert (last.key, last.value, last.partition) == (b'"w|kept"', None, 0)


class _State:
    def __init__(self, highwater: int | None) -> None:
        self.highwater = highwater


class _Assignment:
    active = True

    def __init__(self, highwater: int | None) -> None:
        self.state = _State(highwater)

    def state_value(self, tp: object) -> _State:
        return self.state


class _Request:
    def __init__(self, offset: int) -> None:
        self.topics = [("canhbao.ingest.readings", [(0, offset, 4 * 1024 * 1024)])]


async def test_a_fetch_that_brings_nothing_while_behind_waits_longer_next_time() -> None:
    """Tansu stops reading at the fetch's deadline: far behind the end of a big log,
    10 ms brings nothing, every time. The wait doubles while that goes on (up to the
    ceiling), and comes back to the configured one with the first records."""
    answers: list[bool] = []

    async def original(self: object, assignment: object, node: int, request: object) -> bool:
        return answers.pop(0)

    class Fetcher:
        _fetch_max_wait_ms = 10
        proc = faust_fixes.catch_up_fetch(original)

    fetcher = Fetcher()
    behind, caught_up = _Assignment(highwater=30_000), _Assignment(highwater=17_000)
    waits = []
    answers += [False] * 10 + [True]
    for _ in range(11):
        await fetcher.proc(behind, 1, _Request(17_000))
        waits.append(fetcher._fetch_max_wait_ms)
    assert waits == [20, 40, 80, 160, 320, 640, 1280, 2000, 2000, 2000, 10]
    # Nothing new at the end of the log is the normal quiet case: the wait stays short.
    answers += [False, False]
    for _ in range(2):
        await fetcher.proc(caught_up, 1, _Request(17_000))
    assert fetcher._fetch_max_wait_ms == 10


def test_the_catch_up_fetch_is_installed_once() -> None:
    from aiokafka.consumer.fetcher import Fetcher

    faust_fixes.install_catch_up_fetch()
    first = Fetcher._proc_fetch_request
    faust_fixes.install_catch_up_fetch()
    assert Fetcher._proc_fetch_request is first
    assert getattr(first, "canhbao_catch_up", False)


# -- a rebalance at the end of table recovery ------------------------------------------


class Seeker:
    """A Faust consumer whose seek checks each offset as aiokafka's does (a consumer
    that was never started still checks before it seeks), and answers at once, as
    its thread may when the machine is quiet."""

    def __init__(self) -> None:
        import aiokafka

        self.aiokafka = aiokafka.AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")
        self.sought: dict[TP, int] = {}

    async def seek_wait(self, partitions: dict[TP, int]) -> None:
        from aiokafka import TopicPartition
        from aiokafka.errors import IllegalStateError

        for tp, offset in partitions.items():
            # Never started (no fetcher, nothing assigned): past the offset's check.
            with contextlib.suppress(IllegalStateError, AttributeError):
                self.aiokafka.seek(TopicPartition(tp.topic, tp.partition), offset)
            self.sought[tp] = offset


async def test_a_rebalance_as_recovery_ends_restarts_it_instead_of_crashing_the_worker() -> None:
    """Two workers of one id draining a backlog on Apache Kafka: the second joined as
    the first finished restoring its table. Faust's rebalance handler gave the first
    worker new standby changelog partitions, whose start offsets are built only by the
    next recovery round (until then: None), and signalled that round; the current one,
    past its last check, sought them, and when aiokafka's refusal (ValueError: Offset
    must be a positive integer) came back before the signal, the worker crashed. The
    round now gives way to the next one, which seeks them once it has built them."""
    from faust.tables.recovery import RebalanceAgain

    app = worker_app(Settings())
    recovery = app.tables.recovery
    table = app.tables["state"]
    tp = TP("canhbao.state.evaluate", 0)
    # What Faust's on_rebalance does for a changelog partition moved to standby.
    recovery.revoke(tp)
    recovery.add_standby(table, tp)
    recovery.signal_recovery_start.set()
    seeker = Seeker()
    try:
        seek = recovery._seek_offsets(seeker, recovery.standby_tps, recovery.standby_offsets, "s")
        with pytest.raises(RebalanceAgain):
            await recovery._wait(seek)
        assert tp not in seeker.sought
        # The next round, offsets built: sought from the start (nothing read yet).
        recovery.signal_recovery_start.clear()
        recovery.standby_offsets[tp] = -1
        await recovery._wait(
            recovery._seek_offsets(seeker, recovery.standby_tps, recovery.standby_offsets, "s")
        )
        assert seeker.sought == {tp: 0}
    finally:
        await seeker.aiokafka.stop()


def handing(queue_size: int, maxsize: int = 4) -> tuple[Consumer, Any, FlowControlQueue[Any]]:
    """A consumer whose one stream buffer (of ``WATER``'s topic) holds ``queue_size``
    of ``maxsize`` records."""
    from mode.utils.locks import Event

    flow = FlowControl()
    flow.resume()  # the streams run (the flow starts suspended)
    queue: FlowControlQueue[Any] = FlowControlQueue(maxsize=maxsize, flow_control=flow)
    for i in range(queue_size):
        queue.put_nowait(i)
    conductor = SimpleNamespace(
        _tp_to_callback_lock=asyncio.Lock(),
        _topic_name_index={WATER.topic: [SimpleNamespace(queue=queue)]},
    )
    consumer = object.__new__(Consumer)  # only what delivers_at_once reads
    consumer.app = SimpleNamespace(flow_control=flow, topics=conductor)  # type: ignore[assignment]
    consumer.suspend_flow = Event()
    return consumer, flow, queue


async def test_a_record_is_handed_over_in_place_only_when_it_cannot_block() -> None:
    consumer, flow, _ = handing(queue_size=3)
    assert consumer.delivers_at_once(WATER.topic)  # room in the buffer, the flow runs
    full, _, _ = handing(queue_size=4)
    assert not full.delivers_at_once(WATER.topic)  # would wait for the stream
    flow.suspend()
    assert not consumer.delivers_at_once(WATER.topic)  # would wait for the resume
    flow.resume()
    consumer.suspend_flow.set()
    assert not consumer.delivers_at_once(WATER.topic)  # a rebalance asks the loop to give way
    consumer.suspend_flow.clear()
    async with consumer.app.topics._tp_to_callback_lock:
        assert not consumer.delivers_at_once(WATER.topic)  # subscriptions are changing
    assert consumer.delivers_at_once(WATER.topic)


async def test_state_keys_keep_their_bytes_on_the_changelog_and_read_back() -> None:
    from faust.serializers.codecs import get_codec

    from pipeline.worker.store import TableStore
    from pipeline.worker.writers import MemoryWriter

    app = worker_app(Settings())
    changelog = MemoryWriter("canhbao.state.evaluate")
    store = TableStore(app.tables["state"], 1, changelog)
    key = "e|water.flood|Đáp Cầu"
    store[key] = {"since": 1796412768.723459, "note": "mưa lớn", "gaps": [60.0]}
    await store.flush()
    [record] = changelog.records
    # Compaction keeps the last record per key's *bytes*: the key is written as every
    # earlier worker wrote it (ASCII, escaped), or a changed state would sit beside
    # its old version and a deletion would leave the old one in place.
    assert record.key == b'"e|water.flood|\\u0110\\u00e1p C\\u1ea7u"'
    # A restarted worker's table decodes both with Faust's codec.
    codec = get_codec("json")
    assert codec.loads(record.key) == key
    assert codec.loads(record.value or b"") == {
        "since": 1796412768.723459, "note": "mưa lớn", "gaps": [60.0], "_p": 1,
    }  # fmt: skip
