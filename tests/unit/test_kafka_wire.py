"""A consumer whose partitions move mid-batch keeps running and commits only its own."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError

from topics.kafka import commit_owned

P0, P1 = TopicPartition("canhbao.ingest.readings", 0), TopicPartition("canhbao.ingest.readings", 1)


class FakeConsumer:
    def __init__(self, owned: set[TopicPartition], error: Exception | None = None) -> None:
        self.owned = owned
        self.error = error
        self.committed: list[Mapping[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return self.owned

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        missing = set(offsets) - self.owned
        if missing:  # as aiokafka does
            raise AssertionError(f"IllegalStateError: {missing} not assigned")
        if self.error:
            raise self.error
        self.committed.append(dict(offsets))


async def test_a_partition_taken_away_mid_batch_is_left_to_its_new_owner() -> None:
    consumer = FakeConsumer({P0})
    assert await commit_owned(consumer, {P0: 10, P1: 7}) is True  # type: ignore[arg-type]
    assert consumer.committed == [{P0: 10}]


async def test_a_commit_refused_during_a_rebalance_does_not_stop_the_consumer() -> None:
    consumer: Any = FakeConsumer({P0, P1}, CommitFailedError("rebalancing"))
    assert await commit_owned(consumer, {P0: 10, P1: 7}) is False
    assert consumer.committed == []


async def test_nothing_owned_commits_nothing() -> None:
    consumer: Any = FakeConsumer(set())
    assert await commit_owned(consumer, {P0: 10}) is False
    assert consumer.committed == []
