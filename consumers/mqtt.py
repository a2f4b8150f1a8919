"""Loudspeaker and siren controllers in the communes, over MQTT (QoS 1).

One connection is kept between deliveries. When the MQTT broker restarts it drops that
connection: the sender then connects again before it publishes, instead of spending
an attempt (and a backoff of the dispatcher's) on a client that is known to be
disconnected. A publish that fails or is abandoned (the dispatcher's timeout) leaves
the client in an unknown state, so it is discarded too; the dispatcher sends the
notification again on a fresh connection. A loudspeaker controller may therefore get
a message twice (QoS 1 is at least once): it drops a repeated ``id``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

import aiomqtt

from consumers.dispatcher import DeliveryError
from topics.models import Channel, Notification

log = logging.getLogger(__name__)


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
        self._closing: set[asyncio.Task[None]] = set()  # discarded clients, closing

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await self._close(client)

    @staticmethod
    async def _close(client: aiomqtt.Client) -> None:
        # A client the broker already dropped may fail to say goodbye: nothing is lost
        # by that, and the next delivery connects anew.
        with contextlib.suppress(aiomqtt.MqttError, OSError):
            await client.__aexit__(None, None, None)
        gone = client._disconnected
        if gone.done() and not gone.cancelled():
            gone.exception()  # why the broker dropped it was logged: not an error here

    def _dropped(self, client: aiomqtt.Client) -> bool:
        """Whether the broker closed ``client``'s connection (a restart, say). aiomqtt
        has no public call for it; its ``_disconnected`` future is set by paho's
        disconnect callback as soon as the socket closes."""
        return client._disconnected.done()

    async def _connected(self) -> aiomqtt.Client:
        async with self._connecting:
            if self._client is not None and self._dropped(self._client):
                log.info("MQTT: the broker at %s:%d closed the connection; connecting again",
                         self.host, self.port)  # fmt: skip
                await self.stop()
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
        completed = False
        try:
            client = await self._connected()
            publish = asyncio.ensure_future(client.publish(note.address, self.payload(note), qos=1))
            try:
                # A broker that goes away before its PUBACK would leave the publish
                # waiting out its whole timeout: stop waiting as soon as it is gone.
                done, _ = await asyncio.wait(
                    {publish, client._disconnected}, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                if not publish.done():
                    publish.cancel()
            if publish not in done:
                raise DeliveryError(
                    "MQTT: the broker closed the connection before acknowledging the message"
                )
            publish.result()
            completed = True
        except aiomqtt.MqttError as exc:
            raise DeliveryError(f"MQTT: {exc}") from exc
        finally:
            if not completed:
                # Failed, or cancelled by the dispatcher's timeout while waiting for
                # the broker's PUBACK: reconnect on the next attempt.
                self._discard()
        return None

    def _discard(self) -> None:
        """Forget the client at once (also when cancelled, where nothing may be
        awaited) and close its connection in the background."""
        client, self._client = self._client, None
        if client is not None:
            task = asyncio.get_running_loop().create_task(self._close(client))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
