"""Small aiokafka helpers."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition


async def partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The partitions of ``topic``, asking the cluster: a consumer without a group
    subscription has no metadata for it (Kafka sends only what is asked for)."""
    cluster = await consumer._client.fetch_all_metadata()
    return [TopicPartition(topic, p) for p in sorted(cluster.partitions_for_topic(topic) or [])]
