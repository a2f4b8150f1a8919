"""Producing the load, and the yardstick: a bare aiokafka consumer that only decodes."""

from __future__ import annotations

import json
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from topics.connection import Kafka, client_kwargs
from topics.kafka import partitions


async def produce(bootstrap: Kafka, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    """Send everything (batched by the client), wait for every ack; seconds taken."""
    producer = AIOKafkaProducer(
        **client_kwargs(bootstrap), linger_ms=5, max_batch_size=256 * 1024, acks=1
    )
    await producer.start()
    try:
        t0 = time.perf_counter()
        pending = [await producer.send(topic, value=v, key=k) for k, v in messages]
        for fut in pending:
            await fut
        return time.perf_counter() - t0
    finally:
        await producer.stop()


async def raw_consume(bootstrap: Kafka, topic: str, expected: int) -> float:
    """Read ``expected`` records from the start of ``topic`` and ``json.loads`` each one:
    the least any consumer of these readings must do. Seconds from the first record
    to the last, so connecting and the first fetch's wait are not counted."""
    consumer = AIOKafkaConsumer(
        **client_kwargs(bootstrap),
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        parts = await partitions(bootstrap, topic)
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        seen = 0
        t0 = 0.0
        while seen < expected:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batch.values():
                if not t0:
                    t0 = time.perf_counter()
                for record in records:
                    json.loads(record.value or b"")
                seen += len(records)
        return time.perf_counter() - t0
    finally:
        await consumer.stop()
