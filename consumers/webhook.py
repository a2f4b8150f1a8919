"""The webhook dispatcher: consume webhook notifications, POST them, record receipts.

At-least-once: offsets are committed only after every notification of a batch
has a final receipt (delivered, or failed into the dead-letter topic), so a
crash re-sends rather than loses. Receivers see ``notification_id`` in the
``Idempotency-Key`` header to drop the rare duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import ValidationError

from canhbao.metrics import DELIVERIES, DELIVERY_SECONDS, MESSAGES_REJECTED
from consumers import signing
from topics.catalogue import DEADLETTER, RECEIPTS, notifications_topic
from topics.models import Channel, DeadLetter, DeliveryOutcome, DeliveryReceipt, Notification

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WebhookConfig:
    bootstrap: str
    group_id: str = "canhbao.dispatch.webhook"
    secret: bytes | None = None
    timeout: float = 5.0
    max_attempts: int = 3
    backoff_base: float = 0.5
    rebalance_timeout_ms: int = 10_000


class WebhookDispatcher:
    def __init__(self, config: WebhookConfig) -> None:
        self.config = config
        self.topic = notifications_topic(Channel.WEBHOOK)
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        cfg = self.config
        consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=cfg.bootstrap,
            group_id=cfg.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            rebalance_timeout_ms=cfg.rebalance_timeout_ms,
            session_timeout_ms=max(6_000, cfg.rebalance_timeout_ms),
            heartbeat_interval_ms=1_000,
        )
        producer = AIOKafkaProducer(bootstrap_servers=cfg.bootstrap, linger_ms=1)
        await producer.start()
        await consumer.start()
        timeout = aiohttp.ClientTimeout(total=cfg.timeout)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http:
                while not self._stopping.is_set():
                    batches = await consumer.getmany(timeout_ms=200, max_records=100)
                    for records in batches.values():
                        for record in records:
                            await self._handle(http, producer, record.value, record)
                    if batches:
                        await producer.flush()
                        await consumer.commit()
        finally:
            await consumer.stop()
            await producer.stop()

    async def _handle(
        self,
        http: aiohttp.ClientSession,
        producer: AIOKafkaProducer,
        raw: bytes | None,
        record: object,
    ) -> None:
        try:
            note = Notification.model_validate_json(raw or b"")
        except ValidationError as exc:
            MESSAGES_REJECTED.labels(self.topic, "dispatch").inc()
            dead = DeadLetter(
                source_topic=self.topic,
                partition=getattr(record, "partition", None),
                offset=getattr(record, "offset", None),
                original=raw or b"",
                stage="dispatch",
                reason=f"not a valid notification: {exc.error_count()} error(s)",
                errors=[f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()],
            )
            await producer.send(DEADLETTER, key=self.topic.encode(), value=dead.to_bytes())
            return
        await self.deliver(http, producer, note)

    async def deliver(
        self, http: aiohttp.ClientSession, producer: AIOKafkaProducer, note: Notification
    ) -> DeliveryReceipt:
        cfg = self.config
        body = _json_bytes(note)
        receipt: DeliveryReceipt | None = None
        for attempt in range(1, cfg.max_attempts + 1):
            started = time.perf_counter()
            status: int | None = None
            error: str | None = None
            try:
                headers = {
                    "Content-Type": "application/json; charset=utf-8",
                    "Idempotency-Key": note.notification_id,
                    "User-Agent": "canhbao-webhook/1",
                    **signing.headers(cfg.secret, body),
                }
                async with http.post(note.address, data=body, headers=headers) as resp:
                    status = resp.status
                    await resp.read()
                    if not 200 <= resp.status < 300:
                        error = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            elapsed = time.perf_counter() - started
            DELIVERY_SECONDS.labels("webhook").observe(elapsed)
            if error is None:
                outcome = DeliveryOutcome.DELIVERED
            elif attempt < cfg.max_attempts:
                outcome = DeliveryOutcome.RETRYING
            else:
                outcome = DeliveryOutcome.FAILED
            DELIVERIES.labels("webhook", outcome.value).inc()
            receipt = DeliveryReceipt(
                notification_id=note.notification_id,
                warning_id=note.warning_id,
                receiver_id=note.receiver_id,
                channel=Channel.WEBHOOK,
                attempt=attempt,
                outcome=outcome,
                status_code=status,
                error=error,
                latency_seconds=elapsed,
            )
            await producer.send(
                RECEIPTS, key=note.notification_id.encode(), value=receipt.to_bytes()
            )
            if outcome is not DeliveryOutcome.RETRYING:
                break
            # Exponential backoff with full jitter: failing receivers are not hammered
            # in lockstep by every dispatcher.
            await asyncio.sleep(random.uniform(0, cfg.backoff_base * 2 ** (attempt - 1)))
        assert receipt is not None
        if receipt.outcome is DeliveryOutcome.FAILED:
            log.warning("webhook to %s failed: %s", note.receiver_id, receipt.error)
            await producer.send(
                DEADLETTER,
                key=self.topic.encode(),
                value=DeadLetter(
                    source_topic=self.topic,
                    original=note.to_bytes(),
                    stage="deliver",
                    reason=f"gave up after {receipt.attempt} attempts: {receipt.error}",
                ).to_bytes(),
            )
        return receipt


def _json_bytes(note: Notification) -> bytes:
    import json

    payload = {
        "notification_id": note.notification_id,
        "receiver_id": note.receiver_id,
        "lang": note.lang,
        "exercise": note.exercise,
        "subject": note.subject,
        "body": note.body,
        **note.payload,
    }
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
