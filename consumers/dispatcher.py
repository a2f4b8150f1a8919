"""The dispatcher every channel shares: consume ``canhbao.notifications.<channel>``,
deliver through a channel ``Sender``, record a ``DeliveryReceipt`` per attempt.

Guarantee: a notification is delivered once per receiver. Before sending, the
dispatcher checks the idempotency ledger (``canhbao.state.deliveries``, keyed by
``<warning>:v<version>:<receiver>...``); after a successful send it records the
delivery there and waits for the broker's acknowledgement; offsets are committed
only after that. A dispatcher killed at any point restarts, skips what the ledger
says was delivered, and delivers the rest. The one request in flight at the
moment of a kill has an unknown outcome and is sent again; it carries the same
``Idempotency-Key`` so a receiver can drop it.

Receipts: every attempt whose outcome is known has its ``DeliveryReceipt`` on
``canhbao.receipts`` before the next attempt. A delivery's receipt is part of its
ledger entry, so the two are written in one step: the entry (with the receipt) is
acknowledged, then the receipt is published, then the entry is marked "receipt
sent", and the offset is committed only once that mark is acknowledged. A
dispatcher killed in between reads the notification again (its offset was not
committed), finds it delivered with its receipt unsent, and publishes the receipt
from the ledger. Should the kill fall between the receipt and its mark, the receipt
goes out twice, identical (same notification, attempt and time).

Several at once: up to ``window_per_receiver`` notifications per receiver are in
flight together (their sends, and their ledger and receipt writes, which the
producer then batches), because one at a time leaves the dispatcher waiting on
round trips. Versions of one warning to one receiver still go one after the other:
a version is sent only once the one before it is finished (delivered and recorded,
or dead-lettered), so a later version never overtakes an earlier one. Offsets are
committed only up to the lowest record not yet finished. A kill therefore leaves at
most the window's requests with an unknown outcome, each sent again with its
``Idempotency-Key``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from consumers.delivery import CircuitBreaker, Offsets, RetryPolicy, TokenBucket
from topics.catalogue import DEADLETTER, RECEIPTS, STATE_DELIVERIES, notifications_topic
from topics.connection import Kafka, client_kwargs
from topics.errors import field_errors
from topics.kafka import (
    DeadLetters,
    TopicReader,
    commit_owned,
    instance_name,
    membership,
    report_status,
    to_producer,
    until_acked,
)
from topics.metrics import Metrics
from topics.models import (
    BreakerState,
    Channel,
    DeadLetter,
    DeliveryOutcome,
    DeliveryReceipt,
    Notification,
    ServiceStatus,
)

log = logging.getLogger(__name__)


class DeliveryError(Exception):
    """A failed attempt; ``retryable`` False gives up at once (e.g. HTTP 400)."""

    def __init__(self, message: str, status: int | None = None, retryable: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class Sender(Protocol):
    """A channel's way of delivering. A sender may set ``max_in_flight`` (an int) to
    cap how many of its sends to one receiver run at once, below the dispatcher's
    window (e-mail: one SMTP connection each)."""

    channel: Channel

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, note: Notification) -> int | None:
        """Deliver once; return a status code if the channel has one, or raise."""
        ...


class Writer(Protocol):
    """What the dispatcher asks of its Kafka producer (aiokafka's, or a test's)."""

    async def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None
    ) -> Any: ...

    async def send_and_wait(
        self, topic: str, value: bytes | None = None, key: bytes | None = None
    ) -> Any: ...

    async def flush(self) -> None: ...


@dataclass(frozen=True)
class DispatchConfig:
    bootstrap: Kafka
    group_id: str | None = None
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    rate_per_receiver: float = 20.0
    burst_per_receiver: float = 40.0
    breaker_threshold: int = 5
    breaker_cooldown: float = 15.0
    rebalance_timeout_ms: int = 10_000
    fetch_max_wait_ms: int = 500
    # Notifications in flight at once to one receiver; 1 delivers one at a time.
    window_per_receiver: int = 32
    # Records read and not yet finished, over all receivers: past it the dispatcher
    # reads no more until some finish (a receiver retrying holds its records).
    max_unfinished: int = 500


class Ledger:
    """Which notifications were delivered (compacted topic, read whole at start), and
    the receipts of those whose receipt may not have been published yet."""

    def __init__(self) -> None:
        self.delivered: set[str] = set()
        self.unsent: dict[str, DeliveryReceipt] = {}

    def apply(self, notification_id: str, value: bytes | None) -> None:
        """One ledger record, as read back from the topic (the last one of a key wins)."""
        self.unsent.pop(notification_id, None)
        if value is None:  # a tombstone
            self.delivered.discard(notification_id)
            return
        self.delivered.add(notification_id)
        try:
            entry = json.loads(value)
            if entry.get("receipt") is not None and not entry.get("receipt_sent", True):
                self.unsent[notification_id] = DeliveryReceipt.model_validate(entry["receipt"])
        except (ValueError, ValidationError, AttributeError) as exc:
            # Still delivered (never sent again); only its receipt cannot be recovered.
            log.error("ledger entry of %s unreadable: %s", notification_id, exc)

    async def load(self, bootstrap: Kafka) -> None:
        """Read the whole ledger (the end it has now)."""

        def apply(record: ConsumerRecord[bytes, bytes]) -> None:
            if record.key is not None:
                self.apply(record.key.decode(), record.value)

        async with TopicReader(bootstrap, STATE_DELIVERIES, apply) as reader:
            await reader.catch_up()

    def __contains__(self, notification_id: object) -> bool:
        return notification_id in self.delivered

    @staticmethod
    def entry(receipt: DeliveryReceipt, sent: bool) -> bytes:
        return json.dumps(
            {
                "delivered_at": receipt.at.timestamp(),
                "receipt": receipt.model_dump(mode="json"),
                "receipt_sent": sent,
            }
        ).encode()

    async def record(self, producer: Writer, receipt: DeliveryReceipt) -> None:
        """The delivery, with its receipt, acknowledged: from here on it is never sent
        again, and its receipt can always be published from here."""
        key = receipt.notification_id
        entry = self.entry(receipt, False)
        await until_acked(
            lambda: producer.send_and_wait(STATE_DELIVERIES, entry, key=key.encode()),
            f"ledger entry of {key}",
        )
        self.delivered.add(key)
        self.unsent[key] = receipt

    async def receipt_sent(self, producer: Writer, receipt: DeliveryReceipt) -> None:
        """Mark the receipt published; the caller flushes before committing the offset."""
        key = receipt.notification_id
        await producer.send(STATE_DELIVERIES, self.entry(receipt, True), key=key.encode())
        self.unsent.pop(key, None)


class _Handover(ConsumerRebalanceListener):  # type: ignore[misc]
    """Partitions given up in a rebalance: commit what is finished on them first (so
    their next owner does not send it again), then stop tracking them."""

    def __init__(self, consumer: AIOKafkaConsumer, producer: Writer, offsets: Offsets) -> None:
        self.consumer, self.producer, self.offsets = consumer, producer, offsets

    async def on_partitions_revoked(self, revoked: Any) -> None:
        ready = {tp: o for tp, o in self.offsets.committable().items() if tp in revoked}
        try:
            if ready:
                await self.producer.flush()
                await self.consumer.commit(ready)
        except KafkaError as exc:
            log.info("offsets of the partitions given up not committed: %s", exc)
        for tp in revoked:
            self.offsets.forget(tp)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


@dataclass
class Dispatcher:
    sender: Sender
    config: DispatchConfig
    ledger: Ledger = field(default_factory=Ledger)
    metrics: Metrics = field(default_factory=Metrics.default)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)
    _breakers: dict[str, CircuitBreaker] = field(default_factory=dict)
    _windows: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    _trials: set[str] = field(default_factory=set)  # receivers with a half-open trial out

    @property
    def channel(self) -> Channel:
        return self.sender.channel

    def stop(self) -> None:
        self._stopping.set()

    async def _pause(self, seconds: float) -> bool:
        """Sleep, but wake at once on stop; True when stopping."""
        if seconds <= 0:
            return self._stopping.is_set()
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return False
        return True

    @property
    def group_id(self) -> str:
        return self.config.group_id or f"canhbao.dispatch.{self.channel.value}"

    def status(self, instance: str) -> ServiceStatus:
        """Its open (and half-open) circuit breakers, for ``canhbao.state.services``."""
        breakers = [
            BreakerState(receiver_id=receiver, state=b.state, failures=b.failures)
            for receiver, b in sorted(self._breakers.items())
            if b.state != "closed"
        ]
        return ServiceStatus(
            service=f"dispatch:{self.channel.value}", instance=instance, breakers=breakers
        )

    async def run(self) -> None:
        cfg = self.config
        topic = notifications_topic(self.channel)
        await self.ledger.load(cfg.bootstrap)
        # The console's health page shows the open breakers (canhbao.state.services).
        instance = instance_name()
        reporting = asyncio.create_task(
            report_status(cfg.bootstrap, lambda: self.status(instance), self._stopping)
        )
        consumer = AIOKafkaConsumer(
            **client_kwargs(cfg.bootstrap),
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **membership(cfg.rebalance_timeout_ms),
            max_poll_interval_ms=600_000,
            fetch_max_wait_ms=cfg.fetch_max_wait_ms,
        )
        producer = AIOKafkaProducer(**client_kwargs(cfg.bootstrap), linger_ms=1, acks="all")
        offsets = Offsets()
        consumer.subscribe([topic], listener=_Handover(consumer, producer, offsets))
        await producer.start()
        await consumer.start()
        await self.sender.start()
        try:
            await self._dispatch(consumer, producer, topic, offsets)
        finally:
            reporting.cancel()
            await asyncio.gather(reporting, return_exceptions=True)
            await self.sender.stop()
            await consumer.stop()
            await producer.stop()

    async def _dispatch(
        self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, topic: str, offsets: Offsets
    ) -> None:
        """Read, start each record's handling at once (in its receiver's window, after
        the versions before it), commit what is finished; on stop, let what is under
        way end, then commit."""
        cfg = self.config
        tasks: set[asyncio.Task[bool]] = set()
        chains: dict[tuple[str, str], asyncio.Task[bool]] = {}
        failed: list[BaseException] = []

        def ended(
            task: asyncio.Task[bool], *, tp: TopicPartition, offset: int,
            chain: tuple[str, str] | None,
        ) -> None:  # fmt: skip
            tasks.discard(task)
            if chain is not None and chains.get(chain) is task:
                del chains[chain]
            if task.cancelled():
                return
            exc = task.exception()
            if exc is not None:
                failed.append(exc)
                self._stopping.set()
            elif task.result():
                offsets.finish(tp, offset)

        try:
            while not self._stopping.is_set():
                if offsets.unfinished >= cfg.max_unfinished:
                    await asyncio.wait(tasks, timeout=0.2, return_when=asyncio.FIRST_COMPLETED)
                else:
                    batches = await consumer.getmany(timeout_ms=200, max_records=500)
                    for tp, records in batches.items():
                        for record in records:
                            offsets.take(tp, record.offset)
                            note, chain = self._parse(record)
                            task = asyncio.create_task(
                                self._process(producer, record, note, chains.get(chain)
                                              if chain is not None else None)
                            )  # fmt: skip
                            if chain is not None:
                                chains[chain] = task
                            tasks.add(task)
                            task.add_done_callback(
                                functools.partial(ended, tp=tp, offset=record.offset, chain=chain)
                            )
                if not failed:
                    await self._commit(consumer, producer, offsets)
        finally:
            # A stop (or a failure) cuts the waits short; sends under way end.
            self._stopping.set()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
        if failed:
            raise failed[0]
        await self._commit(consumer, producer, offsets)

    async def _commit(self, consumer: AIOKafkaConsumer, producer: Writer, offsets: Offsets) -> None:
        ready = offsets.committable()
        if not ready:
            return
        await producer.flush()  # the finished ones' "receipt sent" marks
        if await commit_owned(consumer, ready):
            owned = consumer.assignment()
            offsets.committed({tp: o for tp, o in ready.items() if tp in owned})

    def _parse(self, record: Any) -> tuple[Notification | ValidationError, tuple[str, str] | None]:
        """The notification, and the chain it joins (its receiver and warning)."""
        try:
            note = Notification.model_validate_json(record.value or b"")
        except ValidationError as exc:
            return exc, None
        return note, (note.receiver_id, note.warning_id)

    async def _process(
        self,
        producer: Writer,
        record: Any,
        note: Notification | ValidationError,
        after: asyncio.Task[bool] | None = None,
    ) -> bool:
        """True when the record reached a final outcome (and its offset may be committed)."""
        if isinstance(note, ValidationError):
            raw: bytes = record.value or b""
            await DeadLetters(to_producer(producer, DEADLETTER), self.metrics).reject(
                record,
                raw,
                "dispatch",
                f"not a valid notification: {note.error_count()} error(s)",
                field_errors(note),
            )
            return True
        if after is not None and not await asyncio.shield(after):
            # The version before it is not finished (a stop): neither is this one, so
            # it cannot go first.
            return False
        if note.notification_id in self.ledger:
            self.metrics.deliveries.labels(
                self.channel.value, DeliveryOutcome.DUPLICATE.value
            ).inc()
            unsent = self.ledger.unsent.get(note.notification_id)
            if unsent is None:
                log.info("%s already delivered: not sent again", note.notification_id)
                return True
            # Delivered and in the ledger, but the dispatcher stopped before its
            # receipt was known to be out: publish it from the ledger.
            log.warning(
                "%s was delivered before a restart; its receipt is published from the ledger",
                note.notification_id,
            )
            await self._publish(producer, unsent)
            return True
        async with self._window(note.receiver_id):
            receipt = await self.deliver(producer, note)
        return receipt is not None

    def _window(self, receiver: str) -> asyncio.Semaphore:
        window = self._windows.get(receiver)
        if window is None:
            size = max(1, self.config.window_per_receiver)
            size = min(size, getattr(self.sender, "max_in_flight", size))
            window = self._windows[receiver] = asyncio.Semaphore(size)
        return window

    async def _handle(self, producer: Writer, topic: str, record: Any) -> bool:
        """One record alone, start to end: True when it reached a final outcome."""
        note, _ = self._parse(record)
        return await self._process(producer, record, note)

    async def _publish(self, producer: Writer, receipt: DeliveryReceipt) -> None:
        """The receipt, acknowledged before anything else happens to its notification;
        a delivery's ledger entry is then marked "receipt sent"."""
        key = receipt.notification_id.encode()
        body = receipt.to_bytes()
        await until_acked(
            lambda: producer.send_and_wait(RECEIPTS, body, key=key),
            f"receipt of {receipt.notification_id}",
        )
        if receipt.outcome is DeliveryOutcome.DELIVERED:
            await self.ledger.receipt_sent(producer, receipt)

    def _observe_end_to_end(self, note: Notification) -> None:
        """Reading observed → this first delivery (the ledger keeps it the first: a
        notification already delivered is never sent, nor counted, again)."""
        if note.observed_at is None:
            return
        seconds = (datetime.now(UTC) - note.observed_at).total_seconds()
        # A clock ahead of ours (a sensor's, beyond the skew the pipeline allows) gives
        # no latency worth counting: leave it out rather than clamp it to 0.
        if seconds >= 0:
            self.metrics.end_to_end_latency.labels(self.channel.value, note.audience.value).observe(
                seconds
            )

    async def deliver(self, producer: Writer, note: Notification) -> DeliveryReceipt | None:
        """Deliver with retries; None when interrupted by a stop (not final)."""
        policy = self.config.policy
        bucket = self._buckets.setdefault(
            note.receiver_id,
            TokenBucket(self.config.rate_per_receiver, self.config.burst_per_receiver),
        )
        breaker = self._breakers.setdefault(
            note.receiver_id,
            CircuitBreaker(self.config.breaker_threshold, self.config.breaker_cooldown),
        )
        receipt: DeliveryReceipt | None = None
        trial = False
        try:
            for attempt in range(1, policy.max_attempts + 1):
                stopping, trial = await self._turn(note.receiver_id, breaker, bucket)
                if stopping:
                    return None
                receipt = await self._attempt(producer, note, attempt, breaker)
                if trial:
                    self._trials.discard(note.receiver_id)
                    trial = False
                if receipt.outcome is not DeliveryOutcome.RETRYING:
                    break
                if await self._pause(policy.backoff(attempt)):
                    return None
        finally:
            if trial:
                self._trials.discard(note.receiver_id)
        assert receipt is not None
        if receipt.outcome is DeliveryOutcome.FAILED:
            log.warning("%s to %s failed: %s", self.channel.value, note.receiver_id, receipt.error)
            dead = DeadLetter(
                source_topic=notifications_topic(self.channel),
                original=note.to_bytes(),
                stage="deliver",
                reason=f"gave up after {receipt.attempt} attempts: {receipt.error}",
            )
            await (await DeadLetters(to_producer(producer, DEADLETTER), self.metrics).send(dead))
        return receipt

    async def _turn(
        self, receiver: str, breaker: CircuitBreaker, bucket: TokenBucket
    ) -> tuple[bool, bool]:
        """Wait for this attempt's turn: the receiver's breaker, then its pace.
        Returns (stopping, trial): a half-open breaker lets one trial out at a time,
        and its outcome decides for the others waiting."""
        while True:
            wait = breaker.wait_time()
            if wait > 0:
                if await self._pause(wait):
                    return True, False
                continue
            if breaker.opened_at is None:
                trial = False
                break
            if receiver not in self._trials:
                self._trials.add(receiver)
                trial = True
                break
            if await self._pause(0.05):  # another trial is out: its outcome decides
                return True, False
        if await self._pause(bucket.reserve()):
            if trial:
                self._trials.discard(receiver)
            return True, False
        return False, trial

    async def _attempt(
        self, producer: Writer, note: Notification, attempt: int, breaker: CircuitBreaker
    ) -> DeliveryReceipt:
        """One send, its outcome recorded: the ledger entry when delivered, then the
        receipt (both acknowledged)."""
        policy = self.config.policy
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        retryable = True
        try:
            status = await asyncio.wait_for(self.sender.send(note), policy.timeout)
        except DeliveryError as exc:
            status, error, retryable = exc.status, str(exc), exc.retryable
        except TimeoutError:
            error = f"no answer within {policy.timeout:g} s"
        elapsed = time.perf_counter() - started
        self.metrics.delivery_seconds.labels(self.channel.value).observe(elapsed)
        if error is None:
            breaker.success()
            outcome = DeliveryOutcome.DELIVERED
            self._observe_end_to_end(note)
        else:
            breaker.failure()
            last = attempt == policy.max_attempts or not retryable
            outcome = DeliveryOutcome.FAILED if last else DeliveryOutcome.RETRYING
        self.metrics.deliveries.labels(self.channel.value, outcome.value).inc()
        receipt = DeliveryReceipt(
            notification_id=note.notification_id,
            warning_id=note.warning_id,
            receiver_id=note.receiver_id,
            channel=self.channel,
            attempt=attempt,
            outcome=outcome,
            status_code=status,
            error=error,
            latency_seconds=elapsed,
        )
        if outcome is DeliveryOutcome.DELIVERED:
            # The ledger first, with the receipt: once it is acknowledged, a
            # restart never resends, and publishes the receipt if it must.
            await self.ledger.record(producer, receipt)
        await self._publish(producer, receipt)
        return receipt
