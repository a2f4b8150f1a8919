"""The dead-letter topic's one way in, for the Faust stages and the aiokafka
services alike: every rejected message, with where it came from and why, counted in
``canhbao_messages_rejected_total{source_topic,stage}``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from canhbao.metrics import MESSAGES_REJECTED
from topics.models import DeadLetter

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

    def __init__(self, send: Send) -> None:
        self._send = send

    async def send(self, letter: DeadLetter) -> Awaitable[Any]:
        """Count and send ``letter`` (keyed by its source topic); returns the broker
        acknowledgement's future, for callers that send in batches."""
        MESSAGES_REJECTED.labels(letter.source_topic, letter.stage).inc()
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
