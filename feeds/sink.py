"""Where adapters put messages: one small protocol, a Kafka producer behind it in
production and a list in tests, so adapters are tested without a broker."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from aiokafka import AIOKafkaProducer

from topics.catalogue import INGEST_READINGS, INGEST_REPORTS
from topics.connection import Kafka, client_kwargs


class Sink(Protocol):
    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Hand one message to the broker; returns once it is acknowledged."""

    async def send_many(self, messages: list[tuple[str, bytes | None, bytes]]) -> None:
        """Hand several messages over at once; returns once all are acknowledged."""


class KafkaSink:
    """An acks=all producer: an acknowledged reading is on the broker. Not idempotent
    (Tansu refuses InitProducerId): a retried send may store a reading twice, and the
    quality gate sets the copy aside as a duplicate."""

    def __init__(self, bootstrap: Kafka, *, linger_ms: int = 5) -> None:
        self._producer = AIOKafkaProducer(
            **client_kwargs(bootstrap), acks="all", linger_ms=linger_ms
        )

    async def start(self) -> None:
        try:
            await self._producer.start()
        except BaseException:
            await self._producer.stop()  # or aiokafka warns of an unclosed producer
            raise

    async def stop(self) -> None:
        await self._producer.stop()

    async def __aenter__(self) -> KafkaSink:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        await self._producer.send_and_wait(topic, value=value, key=key)

    async def send_many(self, messages: list[tuple[str, bytes | None, bytes]]) -> None:
        # Queue them all first so they share batches, then wait for every ack.
        futures = [await self._producer.send(t, value=v, key=k) for t, k, v in messages]
        for fut in futures:
            await fut


@dataclass
class MemorySink:
    """Keeps what was sent, for tests and dry runs."""

    sent: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.sent.append((topic, key, value))

    async def send_many(self, messages: list[tuple[str, bytes | None, bytes]]) -> None:
        self.sent.extend(messages)

    def on(self, topic: str) -> list[bytes]:
        return [v for t, _, v in self.sent if t == topic]


__all__ = ["INGEST_READINGS", "INGEST_REPORTS", "KafkaSink", "MemorySink", "Sink"]
