"""Where a stage's outputs go: a :class:`Writer` per topic, passed in.

In the worker a writer is :class:`Out`, the app's producer; in tests
:class:`MemoryWriter` keeps what was sent, so a stage runs without a broker."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol

import faust

from pipeline.worker.faust_fixes import producer_of


class Writer(Protocol):
    """Bytes to one topic. ``send`` returns once the record is handed to the client,
    with the broker acknowledgement's future (as aiokafka's ``send``): a stage sends a
    batch, then awaits every acknowledgement before it commits or writes state."""

    async def send(
        self, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> Awaitable[Any]: ...


class Out:
    """A :class:`Writer` to topic ``name`` through the app's producer (see
    :func:`pipeline.worker.faust_fixes.producer_of` for why not ``Topic.send``)."""

    def __init__(self, app: faust.App, name: str) -> None:
        self.app = app
        self.name = name

    async def send(
        self, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> Awaitable[Any]:
        producer = producer_of(self.app)
        ack: Awaitable[Any] = await producer.send(self.name, value, key=key, partition=partition)
        return ack


@dataclass(frozen=True)
class Sent:
    """One record a :class:`MemoryWriter` took."""

    key: bytes | None
    value: bytes | None
    partition: int | None


@dataclass
class MemoryWriter:
    """A :class:`Writer` that keeps every record, acknowledged at once (for tests)."""

    name: str
    records: list[Sent] = field(default_factory=list)

    async def send(
        self, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> Awaitable[Any]:
        self.records.append(Sent(key, value, partition))
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ack.set_result(None)
        return ack

    def values(self) -> list[bytes]:
        """The values sent (tombstones left out), in order."""
        return [r.value for r in self.records if r.value is not None]
