"""Small aiokafka helpers."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

log = logging.getLogger(__name__)


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
    return True
