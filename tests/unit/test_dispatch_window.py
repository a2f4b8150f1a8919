"""The dispatcher with several notifications in flight (issue 12, goal 4), driven
through its read loop with in-memory topics: distinct warnings to one receiver go
out together, versions of one warning never overtake each other, offsets are
committed only up to the lowest record not yet finished, and the per-receiver pace
holds however many are in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition

from consumers.delivery import CircuitBreaker, Offsets, RetryPolicy, TokenBucket
from consumers.dispatcher import DispatchConfig, Dispatcher, Ledger
from tests.unit.test_dispatcher import TOPIC, Producer, Topics
from topics.models import Audience, Channel, DeliveryOutcome, Notification

TP = TopicPartition(TOPIC, 0)
RECEIVER = "snnmt-webhook"


def note(warning: str, version: int = 1) -> Notification:
    return Notification(
        notification_id=f"{warning}:v{version}:{RECEIVER}:webhook", warning_id=warning,
        warning_version=version, receiver_id=RECEIVER, channel=Channel.WEBHOOK,
        audience=Audience.AGENCY, address="http://127.0.0.1:9/hooks/snnmt",
        body=f"Mực nước sông Cầu tại Đáp Cầu (bản {version})",
    )  # fmt: skip


class Consumer:
    """aiokafka's consumer as the dispatcher uses it: the records once, then nothing."""

    def __init__(self, notes: list[Notification]) -> None:
        self.pending = [
            SimpleNamespace(topic=TOPIC, partition=0, offset=i, key=RECEIVER.encode(),
                            value=n.to_bytes())
            for i, n in enumerate(notes)
        ]  # fmt: skip
        self.commits: list[int] = []

    async def getmany(self, timeout_ms: int = 0, max_records: int = 0) -> Any:
        if self.pending:
            records, self.pending = self.pending, []
            return {TP: records}
        await asyncio.sleep(0.005)
        return {}

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets[TP])


class Receiver:
    """The agency's webhook; each request waits for the test to answer it."""

    channel = Channel.WEBHOOK

    def __init__(self) -> None:
        self.started: list[str] = []
        self.answered: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def answer(self, notification_id: str) -> None:
        self.gates.setdefault(notification_id, asyncio.Event()).set()

    async def send(self, note: Notification) -> int | None:
        self.started.append(note.notification_id)
        await self.gates.setdefault(note.notification_id, asyncio.Event()).wait()
        self.answered.append(note.notification_id)
        return 200


async def until(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):  # a guard against a hang, not a measure
        while not check():  # noqa: ASYNC110 (a test watching the dispatcher from outside)
            await asyncio.sleep(0.001)


def dispatcher(receiver: Any, window: int = 8, rate: float = 1e6) -> Dispatcher:
    config = DispatchConfig(bootstrap="-", policy=RetryPolicy(max_attempts=2, base=0.0, cap=0.0),
                            window_per_receiver=window, rate_per_receiver=rate,
                            burst_per_receiver=rate)  # fmt: skip
    return Dispatcher(receiver, config, Ledger())


def test_commits_go_up_to_the_lowest_record_not_finished() -> None:
    offsets = Offsets()
    for o in range(5):
        offsets.take(TP, o)
    for o in (0, 1, 3, 4):
        offsets.finish(TP, o)
    assert offsets.committable() == {TP: 2}  # 3 and 4 are done, 2 is not
    offsets.committed({TP: 2})
    assert offsets.committable() == {}  # nothing new to commit
    offsets.take(TP, 2)  # read again (the partition came back) while the first is under way
    offsets.finish(TP, 2)
    assert offsets.committable() == {}  # one reading of 2 is still unfinished
    offsets.finish(TP, 2)
    assert offsets.committable() == {TP: 5} and offsets.unfinished == 0
    # Given up in a rebalance while 5 is under way: 5 finishing later moves nothing,
    # and the partition, back later, is tracked afresh from where it is read.
    offsets.take(TP, 5)
    offsets.forget(TP)
    offsets.finish(TP, 5)
    assert offsets.committable() == {} and offsets.unfinished == 0
    offsets.take(TP, 9)
    assert offsets.committable() == {TP: 9}


async def test_distinct_warnings_go_together_and_versions_of_one_in_order() -> None:
    receiver = Receiver()
    d = dispatcher(receiver)
    notes = [note("a", 1), note("b"), note("a", 2), note("c"), note("a", 3)]
    consumer = Consumer(notes)
    topics = Topics()
    running = asyncio.create_task(d._dispatch(consumer, Producer(topics), TOPIC, Offsets()))
    ids = [n.notification_id for n in notes]
    # a:v1, b and c are out at once; a:v2 waits for a:v1, a:v3 for a:v2.
    await until(lambda: len(receiver.started) == 3)
    assert sorted(receiver.started) == sorted([ids[0], ids[1], ids[3]])
    receiver.answer(ids[1])
    receiver.answer(ids[3])
    await until(lambda: len(receiver.answered) == 2)
    assert ids[2] not in receiver.started
    receiver.answer(ids[2])  # ready to answer at once: it must still wait for a:v1
    receiver.answer(ids[4])
    await asyncio.sleep(0.02)
    assert ids[2] not in receiver.started
    receiver.answer(ids[0])
    await until(lambda: len(receiver.answered) == 5)
    versions = [i for i in receiver.started if i.startswith("a:")]
    assert versions == [ids[0], ids[2], ids[4]]
    await until(lambda: consumer.commits[-1:] == [5])
    d.stop()
    await running
    delivered = {r.notification_id for r in topics.receipts()
                 if r.outcome is DeliveryOutcome.DELIVERED}  # fmt: skip
    assert delivered == set(ids)


async def test_offsets_stop_at_a_notification_still_in_flight() -> None:
    receiver = Receiver()
    d = dispatcher(receiver)
    notes = [note("a"), note("slow"), note("b"), note("c")]
    ids = [n.notification_id for n in notes]
    for i in (ids[0], ids[2], ids[3]):
        receiver.answer(i)
    consumer = Consumer(notes)
    running = asyncio.create_task(d._dispatch(consumer, Producer(Topics()), TOPIC, Offsets()))
    await until(lambda: len(receiver.answered) == 3 and consumer.commits[-1:] == [1])
    await asyncio.sleep(0.02)
    # b and c are delivered, but "slow" before them is not: a restart must read it again.
    assert consumer.commits[-1] == 1
    d.stop()  # a stop waits for the request under way; it is answered, then committed
    await asyncio.sleep(0.01)
    receiver.answer(ids[1])
    await running
    assert consumer.commits[-1] == 4


async def test_the_pace_per_receiver_holds_with_several_in_flight() -> None:
    # Six at once to one receiver paced at 2/s with bursts of 2: each gets its own
    # slot, not the same wait (after which all would go together).
    receiver = Receiver()
    d = dispatcher(receiver, window=8, rate=2)
    d._buckets[RECEIVER] = TokenBucket(rate=2, burst=2, clock=lambda: 0.0)
    waits: list[float] = []

    async def pause(seconds: float) -> bool:
        waits.append(seconds)
        return False

    d._pause = pause  # type: ignore[method-assign]
    notes = [note(f"w{i}") for i in range(6)]
    for n in notes:
        receiver.answer(n.notification_id)
    consumer = Consumer(notes)
    running = asyncio.create_task(d._dispatch(consumer, Producer(Topics()), TOPIC, Offsets()))
    await until(lambda: len(receiver.answered) == 6)
    d.stop()
    await running
    assert sorted(w for w in waits if w > 0) == [0.5, 1.0, 1.5, 2.0]


async def test_a_half_open_breaker_lets_one_trial_out_and_its_answer_decides() -> None:
    # A receiver that failed enough in a row, its cool-down over: the first request is
    # a trial, alone; the others follow once it is answered.
    receiver = Receiver()
    d = dispatcher(receiver)
    d._breakers[RECEIVER] = CircuitBreaker(threshold=2, cooldown=10, clock=lambda: 11.0,
                                           failures=2, opened_at=0.0)  # fmt: skip
    notes = [note(f"w{i}") for i in range(4)]
    consumer = Consumer(notes)
    running = asyncio.create_task(d._dispatch(consumer, Producer(Topics()), TOPIC, Offsets()))
    await until(lambda: len(receiver.started) >= 1)
    await asyncio.sleep(0.1)
    assert len(receiver.started) == 1
    for n in notes:
        receiver.answer(n.notification_id)
    await until(lambda: len(receiver.answered) == 4)
    assert d._breakers[RECEIVER].state == "closed"
    d.stop()
    await running
