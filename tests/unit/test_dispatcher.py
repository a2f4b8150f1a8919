"""The dispatcher's record of deliveries, with in-memory topics in place of Kafka:
wherever a dispatcher is killed, the restarted one leaves every delivered
notification with its ``delivered`` receipt, and never sends again what the ledger
knows was delivered.

The producer stand-in keeps Kafka's behaviour that matters here: ``send`` only
queues a record (lost if the process dies before a flush), ``send_and_wait``
returns once the record (and everything queued before it) is in the topic. The
kill is a write that never lands: it and everything after it are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from consumers.delivery import RetryPolicy
from consumers.dispatcher import DeliveryError, DispatchConfig, Dispatcher, Ledger
from topics.catalogue import RECEIPTS, STATE_DELIVERIES, notifications_topic
from topics.models import Audience, Channel, DeliveryOutcome, DeliveryReceipt, Notification

TOPIC = notifications_topic(Channel.WEBHOOK)


class Killed(Exception):
    """The dispatcher process dies here (kill -9): nothing after this point happens."""


@dataclass
class Topics:
    """What the broker holds: every acknowledged record, per topic, in order."""

    records: dict[str, list[tuple[bytes | None, bytes | None]]] = field(
        default_factory=lambda: defaultdict(list)
    )

    def values(self, topic: str) -> list[bytes]:
        return [v for _, v in self.records[topic] if v is not None]

    def receipts(self) -> list[DeliveryReceipt]:
        return [DeliveryReceipt.model_validate_json(v) for v in self.values(RECEIPTS)]


class Producer:
    """aiokafka's producer as the dispatcher uses it; dies after ``lands`` writes."""

    def __init__(self, topics: Topics, lands: int | None = None) -> None:
        self.topics = topics
        self.lands = lands
        self.queued: list[tuple[str, bytes | None, bytes | None]] = []

    def _land(self, topic: str, value: bytes | None, key: bytes | None) -> None:
        if self.lands is not None:
            if self.lands == 0:
                raise Killed(f"before a write to {topic}")
            self.lands -= 1
        self.topics.records[topic].append((key, value))

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Any:
        self.queued.append((topic, value, key))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def flush(self) -> None:
        queued, self.queued = self.queued, []
        for record in queued:
            self._land(*record)

    async def send_and_wait(
        self, topic: str, value: bytes | None = None, key: bytes | None = None
    ) -> Any:
        await self.flush()  # a partition's records land in order
        self._land(topic, value, key)


class Receiver:
    """The agency's webhook: answers 200, or fails the first ``failures`` requests."""

    channel = Channel.WEBHOOK

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.requests: list[str] = []

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, note: Notification) -> int | None:
        self.requests.append(note.notification_id)
        if self.failures:
            self.failures -= 1
            raise DeliveryError("HTTP 503", status=503)
        return 200


def notification(i: int = 3) -> Notification:
    return Notification(
        notification_id=f"water.flood.dap-cau:dap-cau:v{i}:snnmt-webhook:webhook",
        warning_id="water.flood.dap-cau:dap-cau", warning_version=i,
        receiver_id="snnmt-webhook", channel=Channel.WEBHOOK, audience=Audience.AGENCY,
        address="http://127.0.0.1:9/hooks/snnmt", body="Mực nước sông Cầu tại Đáp Cầu: 6,41 m",
    )  # fmt: skip


def record(note: Notification, offset: int = 0) -> Any:
    return SimpleNamespace(
        topic=TOPIC, partition=0, offset=offset, key=b"snnmt-webhook", value=note.to_bytes()
    )


def dispatcher(receiver: Receiver, ledger: Ledger) -> Dispatcher:
    policy = RetryPolicy(max_attempts=3, base=0.0, cap=0.0)
    return Dispatcher(receiver, DispatchConfig(bootstrap="-", policy=policy), ledger)


def restarted_ledger(topics: Topics) -> Ledger:
    """A restarted dispatcher's ledger: the compacted topic, read whole."""
    ledger = Ledger()
    for key, value in topics.records[STATE_DELIVERIES]:
        assert key is not None
        ledger.apply(key.decode(), value)
    return ledger


async def handle_then_commit(d: Dispatcher, producer: Producer, rec: Any) -> bool:
    """What ``Dispatcher.run`` does for one record: handle, flush, then commit."""
    finished = await d._handle(producer, TOPIC, rec)
    await producer.flush()
    return finished


async def run_until_killed(receiver: Receiver, lands: int) -> tuple[Topics, bool]:
    """Deliver one notification, the process dying after ``lands`` writes; then a
    restarted dispatcher reads the notification again unless its offset was committed."""
    topics = Topics()
    note = notification()
    committed = False
    with contextlib.suppress(Killed):
        committed = await handle_then_commit(
            dispatcher(receiver, Ledger()), Producer(topics, lands), record(note)
        )
    if not committed:
        again = dispatcher(receiver, restarted_ledger(topics))
        assert await handle_then_commit(again, Producer(topics), record(note))
    return topics, committed


async def test_an_undisturbed_delivery_has_one_receipt_and_one_ledger_entry() -> None:
    receiver = Receiver()
    topics, committed = await run_until_killed(receiver, lands=100)
    assert committed
    [receipt] = topics.receipts()
    assert receipt.outcome is DeliveryOutcome.DELIVERED and receipt.status_code == 200
    assert receiver.requests == [notification().notification_id]
    ledger = restarted_ledger(topics)
    assert notification().notification_id in ledger and not ledger.unsent


@pytest.mark.parametrize("lands", range(4))
async def test_wherever_the_dispatcher_dies_a_delivery_keeps_its_receipt(lands: int) -> None:
    # Writes of one delivery: ledger entry, receipt, "receipt sent" mark. Killed
    # before each of them (0, 1, 2), or after all (3), and restarted.
    receiver = Receiver()
    topics, _ = await run_until_killed(receiver, lands)
    note = notification()
    delivered = [r for r in topics.receipts() if r.outcome is DeliveryOutcome.DELIVERED]
    assert delivered, "a delivered notification without its receipt"
    # A receipt twice only if the kill fell between it and its mark, and then the
    # same receipt (same attempt and time), so whoever counts can tell.
    assert len({r.model_dump_json() for r in delivered}) == 1
    assert len(delivered) == (2 if lands == 2 else 1)
    # Sent again only when the ledger had not acknowledged the delivery.
    assert receiver.requests == [note.notification_id] * (2 if lands == 0 else 1)
    assert not restarted_ledger(topics).unsent


async def test_every_attempts_receipt_is_out_before_the_next_attempt() -> None:
    receiver = Receiver(failures=2)
    topics, committed = await run_until_killed(receiver, lands=100)
    assert committed
    assert [(r.attempt, r.outcome) for r in topics.receipts()] == [
        (1, DeliveryOutcome.RETRYING),
        (2, DeliveryOutcome.RETRYING),
        (3, DeliveryOutcome.DELIVERED),
    ]


async def test_a_duplicate_of_a_delivered_notification_adds_no_receipt() -> None:
    # The worker may publish the same notification twice (a replay): the ledger drops
    # the second, and a receipt already out is not sent again.
    receiver = Receiver()
    topics = Topics()
    d = dispatcher(receiver, Ledger())
    producer = Producer(topics)
    assert await handle_then_commit(d, producer, record(notification(), offset=0))
    assert await handle_then_commit(d, producer, record(notification(), offset=1))
    again = dispatcher(receiver, restarted_ledger(topics))
    assert await handle_then_commit(again, producer, record(notification(), offset=2))
    assert len(topics.receipts()) == 1 and len(receiver.requests) == 1


def test_a_ledger_written_before_receipts_were_kept_still_stops_resends() -> None:
    # Entries of earlier versions held only the time of delivery.
    ledger = Ledger()
    ledger.apply("w:v1:r:webhook", b'{"delivered_at": 1760000000.0}')
    ledger.apply("w:v2:r:webhook", b"not json")
    assert "w:v1:r:webhook" in ledger and "w:v2:r:webhook" in ledger
    assert not ledger.unsent
    ledger.apply("w:v1:r:webhook", None)  # a tombstone forgets it
    assert "w:v1:r:webhook" not in ledger


async def test_its_status_names_the_receivers_whose_breaker_is_open() -> None:
    # canhbao.state.services (the console's health page): a receiver that failed enough in a
    # row is listed with its breaker's state; one that answers is not.
    receiver = Receiver(failures=5)
    d = Dispatcher(receiver, DispatchConfig(bootstrap="-", breaker_threshold=2,
                   breaker_cooldown=60.0, policy=RetryPolicy(max_attempts=2, base=0.0, cap=0.0)),
                   Ledger())  # fmt: skip
    assert d.status("host:1").breakers == []
    await d._handle(Producer(Topics()), TOPIC, record(notification()))
    status = d.status("host:1")
    assert (status.service, status.key) == ("dispatch:webhook", "dispatch:webhook:host:1")
    assert [(b.receiver_id, b.state, b.failures) for b in status.breakers] == [
        ("snnmt-webhook", "open", 2)
    ]
