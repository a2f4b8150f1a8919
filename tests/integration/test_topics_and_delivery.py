"""Topic creation and webhook delivery against a real broker (no Faust worker)."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiokafka.admin import AIOKafkaAdminClient

from consumers.webhook import WebhookConfig, WebhookDispatcher
from tests.conftest import Broker
from tests.integration.helpers import collect, ensure_topics, producer
from topics.admin import create_topics
from topics.catalogue import CATALOGUE, DEADLETTER, RECEIPTS, notifications_topic
from topics.models import (
    Audience,
    Channel,
    DeadLetter,
    DeliveryOutcome,
    DeliveryReceipt,
    Notification,
)

pytestmark = pytest.mark.integration


async def test_topics_create_is_idempotent(broker: Broker) -> None:
    first = await create_topics(broker.bootstrap, default_partitions=3)
    second = await create_topics(broker.bootstrap, default_partitions=3)
    names = {s.name for s in CATALOGUE}
    assert set(first.created) == names
    assert second.created == [] and set(second.existing) == names
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(["canhbao.ingest.readings", DEADLETTER])
    finally:
        await admin.close()
    parts = {t["topic"]: len(t["partitions"]) for t in described}
    assert parts == {"canhbao.ingest.readings": 3, DEADLETTER: 1}


def _note(address: str, n: int = 1) -> Notification:
    return Notification(
        notification_id=f"w:v{n}:snnmt-webhook",
        warning_id="w",
        warning_version=n,
        receiver_id="snnmt-webhook",
        channel=Channel.WEBHOOK,
        audience=Audience.AGENCY,
        address=address,
        body="test",
    )


async def test_flaky_receiver_is_retried_and_dead_receiver_dead_lettered(broker: Broker) -> None:
    await ensure_topics(broker.bootstrap)
    calls = {"flaky": 0}

    async def flaky(request: web.Request) -> web.Response:
        calls["flaky"] += 1
        return web.Response(status=503 if calls["flaky"] == 1 else 200)

    app = web.Application()
    app.router.add_post("/flaky", flaky)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    dispatcher = WebhookDispatcher(
        WebhookConfig(
            bootstrap=broker.bootstrap,
            max_attempts=3,
            backoff_base=0.05,
            timeout=2,
            rebalance_timeout_ms=2000,
        )
    )
    task = asyncio.create_task(dispatcher.run())
    try:
        async with producer(broker.bootstrap) as p:
            topic = notifications_topic(Channel.WEBHOOK)
            await p.send_and_wait(topic, _note(f"http://127.0.0.1:{port}/flaky", 1).to_bytes())
            # Nothing listens on port 9: connection refused every time.
            await p.send_and_wait(topic, _note("http://127.0.0.1:9/down", 2).to_bytes())
            await p.send_and_wait(topic, b"not a notification")
        receipts = [
            DeliveryReceipt.model_validate_json(v)
            for v in await collect(broker.bootstrap, RECEIPTS, lambda vs: len(vs) >= 5, 60)
        ]
        dead = [
            DeadLetter.model_validate_json(v)
            for v in await collect(broker.bootstrap, DEADLETTER, lambda vs: len(vs) >= 2, 30)
        ]
    finally:
        dispatcher.stop()
        await asyncio.wait_for(task, 20)
        await runner.cleanup()

    flaky_r = [r for r in receipts if r.notification_id == "w:v1:snnmt-webhook"]
    down_r = [r for r in receipts if r.notification_id == "w:v2:snnmt-webhook"]
    assert [(r.attempt, r.outcome) for r in flaky_r] == [
        (1, DeliveryOutcome.RETRYING),
        (2, DeliveryOutcome.DELIVERED),
    ]
    assert [r.outcome for r in down_r] == [
        DeliveryOutcome.RETRYING,
        DeliveryOutcome.RETRYING,
        DeliveryOutcome.FAILED,
    ]
    from prometheus_client import REGISTRY

    failed = REGISTRY.get_sample_value(
        "canhbao_deliveries_total", {"channel": "webhook", "outcome": "failed"}
    )
    assert failed is not None and failed >= 1, "a given-up delivery is visible in the metrics"
    reasons = sorted(d.reason for d in dead)
    assert any(r.startswith("gave up after 3 attempts") for r in reasons)
    assert any(r.startswith("not a valid notification") for r in reasons)
    invalid = next(d for d in dead if d.stage == "dispatch")
    assert invalid.original == b"not a notification" and invalid.offset is not None
    for stage in ("dispatch", "deliver"):
        counted = REGISTRY.get_sample_value(
            "canhbao_messages_rejected_total",
            {"source_topic": notifications_topic(Channel.WEBHOOK), "stage": stage},
        )
        assert counted is not None and counted >= 1, f"the {stage} stage's dead letters count"
