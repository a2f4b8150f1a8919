"""A consumer whose partitions move mid-batch keeps running and commits only its own."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    CoordinatorNotAvailableError,
    KafkaConnectionError,
    KafkaTimeoutError,
    LeaderNotAvailableError,
    MessageSizeTooLargeError,
    TopicAuthorizationFailedError,
)

from topics.kafka import commit_owned, until_acked

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


async def test_a_commit_while_the_broker_restarts_is_left_for_the_next_batch() -> None:
    consumer: Any = FakeConsumer({P0}, CoordinatorNotAvailableError("restarting"))
    assert await commit_owned(consumer, {P0: 10}) is False


async def test_a_commit_the_broker_refuses_for_good_still_raises() -> None:
    consumer: Any = FakeConsumer({P0}, TopicAuthorizationFailedError("no"))
    with pytest.raises(TopicAuthorizationFailedError):
        await commit_owned(consumer, {P0: 10})


async def test_a_write_that_must_follow_a_delivery_waits_out_a_broker_restart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A dispatcher's ledger entry or receipt, refused while the broker restarts, is sent
    again until it is taken: the dispatcher no longer ends (and delivers again)."""
    monkeypatch.setattr("topics.kafka.asyncio.sleep", _no_sleep)
    answers: list[Exception | None] = [
        LeaderNotAvailableError(),
        KafkaConnectionError("down"),
        KafkaTimeoutError(),
        None,
    ]

    async def send() -> str:
        error = answers.pop(0)
        if error is not None:
            raise error
        return "acked"

    assert await until_acked(send, "ledger entry") == "acked"
    assert answers == []


async def test_a_refusal_is_not_sent_again() -> None:
    calls = 0

    async def send() -> None:
        nonlocal calls
        calls += 1
        raise MessageSizeTooLargeError()

    with pytest.raises(MessageSizeTooLargeError):
        await until_acked(send, "receipt")
    assert calls == 1


async def _no_sleep(seconds: float) -> None:
    return None
