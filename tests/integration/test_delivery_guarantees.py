"""Delivery guarantees with a real HTTP receiver: a dispatcher killed mid-batch and
restarted sends nothing twice (at most the requests in flight, which the receiver
recognises by their Idempotency-Key), loses nothing, keeps the versions of a warning
in order, and leaves every
delivery with its ``delivered`` receipt; a receiver that is down for 30 s gets its
notifications when it comes back."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import pytest

from canhbao.broker import free_port
from canhbao.receiver import Delivery, WebhookReceiver
from consumers.webhook import WebhookConfig, WebhookDispatcher
from tests.conftest import Broker
from tests.integration.helpers import (
    collect,
    dispatcher_process,
    ensure_topics,
    producer,
    wait_for,
)
from topics.catalogue import RECEIPTS, notifications_topic
from topics.models import Audience, Channel, DeliveryOutcome, DeliveryReceipt, Notification

pytestmark = pytest.mark.integration


def note(i: int, address: str, warning: str = "w.test:s") -> Notification:
    return Notification(
        notification_id=f"{warning}:v{i}:snnmt-webhook:webhook", warning_id=warning,
        warning_version=i, receiver_id="snnmt-webhook", channel=Channel.WEBHOOK,
        audience=Audience.AGENCY, address=address or "http://127.0.0.1:9/", body=f"thông báo {i}",
    )  # fmt: skip


def mixed(i: int, address: str = "") -> Notification:
    """Odd: the versions of one warning (in order, one at a time); even: warnings of
    their own (several in flight at once, up to the dispatcher's window)."""
    return note(i, address) if i % 2 else note(i, address, f"w.test:other-{i}")


async def test_killed_dispatcher_sends_nothing_twice_and_loses_nothing(
    broker: Broker, tmp_path: Path
) -> None:
    await ensure_topics(broker.bootstrap)
    total = 150
    started: list[subprocess.Popen[bytes]] = []

    def kill_after_the_40th_answer(delivery: Delivery) -> None:
        # Just after the receiver answers 200: the dispatcher is recording the
        # delivery, or sending its receipt (or still reading the answer).
        if len(receiver.deliveries) == 40:
            asyncio.get_running_loop().call_later(0.003, started[0].send_signal, signal.SIGKILL)

    receiver = await WebhookReceiver(delay=0.02, on_delivery=kill_after_the_40th_answer).start()
    async with producer(broker.bootstrap) as p:
        for i in range(1, total + 1):
            n = mixed(i, f"{receiver.base_url}/hooks/snnmt")
            await p.send(notifications_topic(Channel.WEBHOOK), n.to_bytes(), key=b"snnmt-webhook")
    first = dispatcher_process(broker.bootstrap, tmp_path / "dispatch-1.log")
    started.append(first)
    try:
        await wait_for(lambda: first.poll() is not None, 90, "the first deliveries and the kill")
        assert first.returncode == -signal.SIGKILL  # mid-batch, no clean shutdown
        at_kill = len(receiver.deliveries)
        assert at_kill < total
        second = dispatcher_process(broker.bootstrap, tmp_path / "dispatch-2.log")
        try:
            await wait_for(lambda: len(receiver.deliveries) == total, 120, "every notification")
            await asyncio.sleep(2)  # nothing else may arrive afterwards
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(20)
    finally:
        if first.poll() is None:
            first.kill()
        await receiver.stop()
    ids = {mixed(i).notification_id for i in range(1, total + 1)}
    assert sorted(d.key for d in receiver.deliveries) == sorted(ids)
    # Only the requests in flight at the kill may come again (at most the window per
    # receiver: CANHBAO_DISPATCH_WINDOW_PER_RECEIVER, 32), each recognisable by its key.
    assert receiver.duplicates <= 32
    assert receiver.requests == total + receiver.duplicates
    # The versions of one warning arrived in order, across the kill too.
    versions = [d.key for d in receiver.deliveries if d.key.startswith("w.test:s:")]
    assert versions == [mixed(i).notification_id for i in range(1, total + 1, 2)]
    # Every delivery has its receipt, the one delivered at the kill included. A
    # receipt may come twice (killed between it and its ledger mark), then the same.

    def delivered(values: list[bytes]) -> dict[str, set[bytes]]:
        out: dict[str, set[bytes]] = {}
        for v in values:
            r = DeliveryReceipt.model_validate_json(v)
            if r.outcome is DeliveryOutcome.DELIVERED:
                out.setdefault(r.notification_id, set()).add(v)
        return out

    receipts = delivered(
        await collect(broker.bootstrap, RECEIPTS, lambda vs: set(delivered(vs)) >= ids, 30)
    )
    assert set(receipts) == ids
    assert all(len(same) == 1 for same in receipts.values())


async def test_receiver_down_for_30_seconds_gets_its_notifications(broker: Broker) -> None:
    await ensure_topics(broker.bootstrap)
    port = free_port()
    address = f"http://127.0.0.1:{port}/hooks/snnmt"
    async with producer(broker.bootstrap) as p:
        for i in (1, 2):
            await p.send_and_wait(notifications_topic(Channel.WEBHOOK), note(i, address).to_bytes(),
                                  key=b"snnmt-webhook")  # fmt: skip
    dispatcher = WebhookDispatcher(
        WebhookConfig(bootstrap=broker.bootstrap, timeout=2, rebalance_timeout_ms=2000)
    )
    task = asyncio.create_task(dispatcher.run())
    receiver = WebhookReceiver(port=port)
    try:
        await asyncio.sleep(30)  # the receiver is down
        await receiver.start()
        await wait_for(lambda: len(receiver.deliveries) == 2, 120, "delivery after the outage")
    finally:
        dispatcher.stop()
        await asyncio.wait_for(task, 30)
        await receiver.stop()
    receipts = [
        DeliveryReceipt.model_validate_json(v)
        for v in await collect(
            broker.bootstrap, RECEIPTS,
            lambda vs: sum(b'"delivered"' in v for v in vs) >= 2, 30,
        )
    ]  # fmt: skip
    first = [r for r in receipts if r.notification_id.endswith(":v1:snnmt-webhook:webhook")]
    assert first[0].outcome is DeliveryOutcome.RETRYING and "Connect" in (first[0].error or "")
    assert first[-1].outcome is DeliveryOutcome.DELIVERED and first[-1].attempt > 3
