"""SMS channel through an HTTP gateway whose request shape is configuration.

The body template is JSON in which the strings ``"$to"``, ``"$recipients"``,
``"$text"``, ``"$sender"`` and ``"$id"`` are replaced by values (typed: a list
stays a list), so a message text can never break the request's structure.
"""

from __future__ import annotations

import json
from typing import Any

from consumers.http import HttpClient
from topics.ids import idempotency_key
from topics.models import Channel, Notification

DEFAULT_TEMPLATE = '{"to": "$recipients", "message": "$text", "sender": "$sender", "ref": "$id"}'


def fill(template: Any, values: dict[str, Any]) -> Any:
    if isinstance(template, str) and template.startswith("$") and template[1:] in values:
        return values[template[1:]]
    if isinstance(template, list):
        return [fill(v, values) for v in template]
    if isinstance(template, dict):
        return {k: fill(v, values) for k, v in template.items()}
    return template


class SmsSender(HttpClient):
    channel = Channel.SMS

    def __init__(
        self,
        gateway_url: str,
        token: str | None = None,
        template: str = DEFAULT_TEMPLATE,
        sender_name: str = "CANHBAO",
        timeout: float = 10.0,
    ) -> None:
        super().__init__(timeout)
        self.gateway_url = gateway_url
        self.token = token
        self.template = json.loads(template)
        self.sender_name = sender_name

    def request_body(self, note: Notification) -> dict[str, Any]:
        recipients = note.recipients or [note.address]
        values = {
            "to": recipients[0],
            "recipients": recipients,
            "text": note.body,
            "sender": self.sender_name,
            "id": note.notification_id,
        }
        body = fill(self.template, values)
        assert isinstance(body, dict)
        return body

    async def send(self, note: Notification) -> int | None:
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Idempotency-Key": idempotency_key(note.notification_id),
        }
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        body = json.dumps(self.request_body(note), ensure_ascii=False).encode("utf-8")
        return await self.post(self.gateway_url, body, headers, what="gateway HTTP")
