"""The console's Kafka side (console.kafka) on a real broker: the board follows the
warnings, the broadcasts' changelog (as the worker's table writes it) and the
approval requests; the writer puts commands and approval events on the CLI's topics
with the CLI's keys."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaConsumer

from console.board import Board
from console.kafka import Feeds, KafkaWriter
from tests.conftest import Broker
from tests.integration.helpers import collect, ensure_topics, producer, wait_for
from tests.integration.test_console_browser import WID, flood
from topics.catalogue import APPROVALS, COMMANDS, STATE_BROADCASTS, WARNINGS
from topics.models import (
    Action,
    ApprovalAction,
    ApprovalEvent,
    Broadcast,
    BroadcastStatus,
    Channel,
    Command,
)

pytestmark = pytest.mark.integration
BID = f"{WID}:v2:citizens"


def broadcast(status: BroadcastStatus = BroadcastStatus.PENDING) -> Broadcast:
    now = datetime.now(UTC)
    return Broadcast(broadcast_id=BID, warning=flood(level=3, version=2), communes=["bn-vu-ninh"],
                     channels=[Channel.SMS], requested_at=now,
                     expires_at=now + timedelta(minutes=30), status=status)  # fmt: skip


def as_changelog(b: Broadcast) -> tuple[bytes, bytes]:
    """A broadcast as the worker's table writes it: JSON key, JSON value with ``_p``."""
    value = {**b.model_dump(mode="json"), "_p": 0}
    return json.dumps(b.broadcast_id).encode(), json.dumps(value).encode()


async def test_the_board_follows_the_pipeline_and_the_writer_uses_its_topics(
    broker: Broker,
) -> None:
    await ensure_topics(broker.bootstrap)
    request = ApprovalEvent(event_id="e1", broadcast_id=BID, action=ApprovalAction.REQUEST,
                            actor="canhbao", broadcast=broadcast())  # fmt: skip
    async with producer(broker.bootstrap) as p:
        # Before the console starts: read from the beginning.
        await p.send_and_wait(WARNINGS, flood(2, 1).to_bytes(), key=WID.encode())
        key, value = as_changelog(broadcast())
        await p.send_and_wait(STATE_BROADCASTS, value, key=key)
        await p.send_and_wait(APPROVALS, request.to_bytes(), key=WID.encode())
        board = Board()
        feeds = Feeds(broker.bootstrap, board)
        await feeds.start()
        writer = KafkaWriter(broker.bootstrap)
        await writer.start()
        try:
            assert board.warnings[WID].level == 2
            assert [b.broadcast_id for b in board.pending()] == [BID]
            assert board.requesters == {BID: "canhbao"}
            # After: followed as they come.
            with board.listen() as listener:
                await p.send_and_wait(WARNINGS, flood(3, 2).to_bytes(), key=WID.encode())
                seen = await listener.queue.get()
                assert seen is not None and seen[1].version == 2
            key, value = as_changelog(broadcast(BroadcastStatus.SENT))
            await p.send_and_wait(STATE_BROADCASTS, value, key=key)
            await wait_for(lambda: not board.pending(), 20, "the sent broadcast")
            assert board.others()[0].status is BroadcastStatus.SENT

            command = Command(command_id="c1", warning_id=WID, action=Action.VERIFY,
                              actor="truc-ban-a")  # fmt: skip
            await writer.command(command)
            approve = ApprovalEvent(event_id="e2", broadcast_id=BID,
                                    action=ApprovalAction.APPROVE, actor="pho-ban-b")  # fmt: skip
            await writer.approval(approve)
        finally:
            await writer.stop()
            await feeds.stop()

    [sent] = await collect(broker.bootstrap, COMMANDS, lambda v: len(v) >= 1)
    assert Command.model_validate_json(sent) == command
    keys = await _keys(broker.bootstrap, COMMANDS, 1)
    assert keys == [b"dap-cau"]  # the subject, as `canhbao warning` keys it
    values = await collect(broker.bootstrap, APPROVALS, lambda v: len(v) >= 2)
    assert ApprovalEvent.model_validate_json(values[-1]).actor == "pho-ban-b"
    assert await _keys(broker.bootstrap, APPROVALS, 2) == [WID.encode()] * 2


async def _keys(bootstrap: str, topic: str, n: int) -> list[bytes]:
    """The keys of the first ``n`` records of ``topic``."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest")  # fmt: skip
    await consumer.start()
    keys: list[bytes] = []
    try:
        for _ in range(40):
            batch = await consumer.getmany(timeout_ms=500)
            keys += [r.key or b"" for records in batch.values() for r in records]
            if len(keys) >= n:
                break
        return keys
    finally:
        await consumer.stop()
