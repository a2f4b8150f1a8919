"""Loudspeaker and siren controllers in the communes, over MQTT (QoS 1)."""

from __future__ import annotations

import asyncio
import json

import aiomqtt

from consumers.dispatcher import DeliveryError
from topics.models import Channel, Notification


class MqttSender:
    channel = Channel.LOUDSPEAKER

    def __init__(
        self,
        host: str,
        port: int = 1883,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.username, self.password = username, password
        self._client: aiomqtt.Client | None = None
        # Several sends at once share one connection: only the first may open it.
        self._connecting = asyncio.Lock()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.__aexit__(None, None, None)
            self._client = None

    async def _connected(self) -> aiomqtt.Client:
        async with self._connecting:
            if self._client is None:
                client = aiomqtt.Client(
                    self.host, self.port, username=self.username, password=self.password,
                    identifier=None,
                )  # fmt: skip
                await client.__aenter__()
                self._client = client
            return self._client

    def payload(self, note: Notification) -> bytes:
        return json.dumps(
            {
                "id": note.notification_id,
                "warning_id": note.warning_id,
                "exercise": note.exercise,
                "lang": note.lang,
                "script": note.body,
                "siren": bool(note.payload.get("siren", False)),
            },
            ensure_ascii=False,
        ).encode("utf-8")

    async def send(self, note: Notification) -> int | None:
        try:
            client = await self._connected()
            await client.publish(note.address, self.payload(note), qos=1)
        except aiomqtt.MqttError as exc:
            await self.stop()  # reconnect on the next attempt
            raise DeliveryError(f"MQTT: {exc}") from exc
        return None
