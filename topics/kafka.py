"""The Kafka wire helpers every stage and service shares: consumer-group timing,
partition lookup, committing only owned partitions, and the dead-letter topic's one
way in (every rejected message, with where it came from and why, counted in
``canhbao_messages_rejected_total{source_topic,stage}``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
)

from topics.catalogue import STATUS
from topics.connection import Kafka, client_kwargs
from topics.metrics import Metrics
from topics.models import DeadLetter, ServiceStatus

log = logging.getLogger(__name__)


def membership(rebalance_timeout_ms: int) -> dict[str, int]:
    """Consumer-group timing for canhbao's aiokafka services, as the Faust worker's: a
    session at least 6 s (a busy loop must not look dead), heartbeats every second."""
    return {
        "rebalance_timeout_ms": rebalance_timeout_ms,
        "session_timeout_ms": max(6_000, rebalance_timeout_ms),
        "heartbeat_interval_ms": 1_000,
    }


async def partitions(bootstrap: Kafka, topic: str) -> list[TopicPartition]:
    """The partitions of ``topic`` (none when it does not exist), asking the cluster:
    a consumer without a group subscription has no metadata for it (Kafka sends only
    what is asked for), and aiokafka's consumer has no public call that fetches it."""
    admin = AIOKafkaAdminClient(**client_kwargs(bootstrap))
    await admin.start()
    try:
        return await topic_partitions(admin, topic)
    finally:
        await admin.close()


async def topic_partitions(admin: AIOKafkaAdminClient, topic: str) -> list[TopicPartition]:
    """:func:`partitions` through a started admin client. Every topic is described, not
    just this one: naming it could make a broker with ``auto.create.topics.enable``
    create it, with the broker's defaults."""
    described = await admin.describe_topics()
    found = next((t for t in described if t["topic"] == topic and not t["error_code"]), None)
    numbers = sorted(p["partition"] for p in found["partitions"]) if found else []
    return [TopicPartition(topic, n) for n in numbers]


async def commit_owned(consumer: AIOKafkaConsumer, offsets: Mapping[TopicPartition, int]) -> bool:
    """Commit the offsets of the partitions this member still owns; False when the group
    rebalanced under the batch. The partitions' new owner then reads from their last
    commit, so the batch's records are handled again (the stages downstream drop the
    copies), never lost; the failed commit must not stop the consumer."""
    owned = consumer.assignment()
    mine = {tp: offset for tp, offset in offsets.items() if tp in owned}
    if len(mine) < len(offsets):
        log.info("%d partition(s) moved to another member mid-batch", len(offsets) - len(mine))
    if not mine:
        return False
    try:
        await consumer.commit(mine)
    except (CommitFailedError, IllegalStateError) as exc:
        log.info("offsets not committed, the group is rebalancing: %s", exc)
        return False
    except KafkaError as exc:
        if not retriable(exc):
            raise
        # The broker restarting, its coordinator moving: the next batch commits these.
        log.warning("offsets not committed now, the broker did not answer: %s", exc)
        return False
    return True


T = TypeVar("T")


def retriable(exc: BaseException) -> bool:
    """Whether a Kafka error passes by itself: a broker restarting, a leader being
    elected, a connection dropped; not a refusal (authorization, a record too large)."""
    return bool(getattr(exc, "retriable", False)) or isinstance(
        exc, KafkaConnectionError | KafkaTimeoutError
    )


async def until_acked(send: Callable[[], Awaitable[T]], what: str, give_up: float = 600.0) -> T:
    """``send()``, sent again while the broker cannot take it (a restart, a leader
    election: longer than the client's own retries when the machine is loaded), for up
    to ``give_up`` seconds. A write that must follow an action already taken (a
    delivery's ledger entry, its receipt) must not end its service over a broker
    restart: the action would be taken again after the restart."""
    delay, start = 0.5, time.monotonic()
    while True:
        try:
            return await send()
        except KafkaError as exc:
            if not retriable(exc) or time.monotonic() - start > give_up:
                raise
            log.warning("%s: the broker did not take it (%s); again in %.1f s", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


#: Sends ``(key, value)`` to the dead-letter topic; returns the broker
#: acknowledgement's future (as aiokafka's ``send`` does).
Send = Callable[[bytes | None, bytes], Awaitable[Awaitable[Any]]]


class Record(Protocol):
    """A Kafka record or a Faust message: where a rejected message came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None


class DeadLetters:
    """Dead letters through ``send``: the app's producer in a worker, a service's own
    aiokafka producer at the edges (:func:`to_producer`)."""

    def __init__(self, send: Send, metrics: Metrics) -> None:
        self._send = send
        self._rejected = metrics.messages_rejected

    async def send(self, letter: DeadLetter) -> Awaitable[Any]:
        """Count and send ``letter`` (keyed by its source topic); returns the broker
        acknowledgement's future, for callers that send in batches."""
        self._rejected.labels(letter.source_topic, letter.stage).inc()
        return await self._send(letter.source_topic.encode(), letter.to_bytes())

    async def reject(
        self,
        record: Record,
        raw: bytes | None,
        stage: str,
        reason: str,
        errors: list[str] | None = None,
    ) -> None:
        """Dead-letter ``record`` and wait for the broker: rejections are rare, so
        nothing is gained by batching them."""
        letter = DeadLetter(
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            original=raw or b"",
            stage=stage,
            reason=reason,
            errors=errors or [],
        )
        await (await self.send(letter))


def to_producer(producer: Any, topic: str) -> Send:
    """A ``Send`` through an aiokafka producer (``producer.send`` to ``topic``)."""

    async def send(key: bytes | None, value: bytes) -> Awaitable[Any]:
        return await producer.send(topic, value, key=key)  # type: ignore[no-any-return]

    return send


async def values(bootstrap: Kafka, topic: str) -> list[bytes | None]:
    """Every value of ``topic`` as it is now, in order (a compacted control topic's
    history: the reader decides which record is in force)."""
    found: list[bytes | None] = []
    async with TopicReader(bootstrap, topic, lambda r: found.append(r.value)) as reader:
        await reader.catch_up()
    return found


def instance_name(group_instance_id: str | None = None) -> str:
    """A running service's name on ``canhbao.state.services``: its static group instance id
    when it has one (stable across restarts), else host and process id."""
    import os
    import socket

    return group_instance_id or f"{socket.gethostname()}:{os.getpid()}"


async def report_status(
    bootstrap: Kafka, make: Callable[[], ServiceStatus], stop: asyncio.Event | None = None
) -> None:
    """Publish ``make()`` on ``canhbao.state.services`` now and every ``every_s`` seconds until
    ``stop`` is set or the task is cancelled, then a tombstone (a stopped service is
    not shown as running). A broker error is logged and tried again next time: the
    status must never stop the service it describes."""
    stop = stop or asyncio.Event()
    producer = AIOKafkaProducer(**client_kwargs(bootstrap), acks=1)
    await producer.start()
    key = b""
    try:
        while not stop.is_set():
            status = make()
            key = status.key.encode()
            try:
                await producer.send_and_wait(STATUS, status.to_bytes(), key=key)
            except Exception as exc:
                log.warning("canhbao.state.services not published: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), status.every_s)
    finally:
        try:
            if key:
                await asyncio.shield(producer.send_and_wait(STATUS, None, key=key))
        except Exception as exc:
            log.info("canhbao.state.services tombstone not published: %s", exc)
        finally:
            await producer.stop()


class TopicReader:
    """A topic read whole, without a consumer group: from the beginning to the end it
    had when :meth:`catch_up` was called (a compacted topic's current state), then
    followed with :meth:`poll` or :meth:`follow`. Every record goes to ``on_record``;
    what it keeps is the caller's. The one way canhbao rebuilds state from a log (the
    delivery ledger, the worker's views and rule set, the operators' views of tables,
    the CAP feed, the console)."""

    def __init__(
        self,
        bootstrap: Kafka,
        topic: str | Sequence[str],
        on_record: Callable[[ConsumerRecord[Any, Any]], None],
    ) -> None:
        self.topic = topic if isinstance(topic, str) else ", ".join(topic)
        self.topics = [topic] if isinstance(topic, str) else list(topic)
        self.on_record = on_record
        self._bootstrap = bootstrap
        self.consumer = AIOKafkaConsumer(
            **client_kwargs(bootstrap), group_id=None, enable_auto_commit=False
        )
        self._tps: list[TopicPartition] = []

    async def __aenter__(self) -> TopicReader:
        await self.consumer.start()
        try:
            await self._assign()
        except BaseException:
            await self.consumer.stop()
            raise
        return self

    async def _assign(self) -> None:
        self._tps = [tp for t in self.topics for tp in await partitions(self._bootstrap, t)]
        if self._tps:
            self.consumer.assign(self._tps)
            await self.consumer.seek_to_beginning(*self._tps)

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def catch_up(self, within: float | None = None) -> bool:
        """Read up to the end offsets as they are now; False if ``within`` seconds
        passed first (what was read is applied all the same)."""
        if not self._tps:
            return True
        ends = await self.consumer.end_offsets(self._tps)
        deadline = None if within is None else time.monotonic() + within
        while any([await self.consumer.position(tp) < ends[tp] for tp in self._tps]):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await self.poll(0.5 if deadline is None else min(0.5, deadline - time.monotonic()))
        return True

    async def poll(self, seconds: float) -> int:
        """Apply what arrived since the last call, waiting up to ``seconds``."""
        if not self._tps:  # the topic did not exist yet: look again
            await asyncio.sleep(seconds)
            await self._assign()
            return 0
        batch = await self.consumer.getmany(timeout_ms=max(0, int(seconds * 1000)))
        n = 0
        for records in batch.values():
            for record in records:
                self.on_record(record)
                n += 1
        return n

    async def follow(self, stop: asyncio.Event) -> None:
        """Apply every record as it comes until ``stop`` is set."""
        while not stop.is_set():
            await self.poll(0.5)
