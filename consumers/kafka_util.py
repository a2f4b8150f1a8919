"""Small aiokafka helpers."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition


def membership(rebalance_timeout_ms: int) -> dict[str, int]:
    """Consumer-group timing for canhbao's aiokafka services, as the Faust worker's: a
    session at least 6 s (a busy loop must not look dead), heartbeats every second."""
    return {
        "rebalance_timeout_ms": rebalance_timeout_ms,
        "session_timeout_ms": max(6_000, rebalance_timeout_ms),
        "heartbeat_interval_ms": 1_000,
    }


async def partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The partitions of ``topic``, asking the cluster: a consumer without a group
    subscription has no metadata for it (Kafka sends only what is asked for)."""
    cluster = await consumer._client.fetch_all_metadata()
    return [TopicPartition(topic, p) for p in sorted(cluster.partitions_for_topic(topic) or [])]
