"""Webhook channel: JSON POST, signed with HMAC-SHA256 over timestamp and body."""

from __future__ import annotations

import json
from dataclasses import dataclass

from consumers import signing
from consumers.delivery import RetryPolicy
from consumers.dispatcher import DispatchConfig, Dispatcher
from consumers.http import HttpClient
from topics.connection import Kafka
from topics.ids import idempotency_key
from topics.models import Channel, Notification


def webhook_body(note: Notification) -> bytes:
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


class HttpSender(HttpClient):
    """POSTs a body to ``note.address``, signed, with the notification as idempotency key."""

    channel = Channel.WEBHOOK
    content_type = "application/json; charset=utf-8"

    def __init__(self, secret: bytes | None = None, timeout: float = 10.0) -> None:
        super().__init__(timeout)
        self.secret = secret

    def body(self, note: Notification) -> bytes:
        return webhook_body(note)

    async def send(self, note: Notification) -> int | None:
        body = self.body(note)
        headers = {
            "Content-Type": self.content_type,
            "Idempotency-Key": idempotency_key(note.notification_id),
            "User-Agent": "canhbao/1",
            **signing.headers(self.secret, body),
        }
        return await self.post(note.address, body, headers)


class WebhookSender(HttpSender):
    channel = Channel.WEBHOOK


class CapSender(HttpSender):
    """CAP to partners (e.g. Mondulkiri): the alert XML, POSTed as application/cap+xml."""

    channel = Channel.CAP
    content_type = "application/cap+xml; charset=utf-8"

    def body(self, note: Notification) -> bytes:
        return note.body.encode("utf-8")


@dataclass(frozen=True)
class WebhookConfig:
    bootstrap: Kafka
    group_id: str | None = None
    secret: bytes | None = None
    timeout: float = 5.0
    max_attempts: int = 10
    backoff_base: float = 0.5
    rebalance_timeout_ms: int = 10_000
    fetch_max_wait_ms: int = 500


def WebhookDispatcher(config: WebhookConfig) -> Dispatcher:
    return Dispatcher(
        WebhookSender(config.secret, config.timeout),
        DispatchConfig(
            bootstrap=config.bootstrap,
            group_id=config.group_id,
            policy=RetryPolicy(
                max_attempts=config.max_attempts, base=config.backoff_base, timeout=config.timeout
            ),
            rebalance_timeout_ms=config.rebalance_timeout_ms,
            fetch_max_wait_ms=config.fetch_max_wait_ms,
        ),
    )
