"""A local webhook receiver: what an agency's system would run, for the demo and tests.

It checks the HMAC signature when it knows the secret, answers 401 when the
signature is wrong, and keeps every accepted delivery (deduplicated by the
``Idempotency-Key`` header, as a real receiver should).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from consumers import signing


@dataclass
class Delivery:
    path: str
    key: str
    body: dict[str, Any]
    xml: str | None = None  # CAP documents arrive as XML


@dataclass
class WebhookReceiver:
    secret: bytes | None = None
    host: str = "127.0.0.1"
    port: int = 0
    on_delivery: Callable[[Delivery], None] | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    requests: int = 0
    rejected: int = 0
    duplicates: int = 0
    repeated: list[str] = field(default_factory=list)  # the key of each duplicate dropped
    delay: float = 0.0  # seconds to answer each request (a slow receiver)
    _runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _hook(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.secret is not None:
            ok = signing.verify(
                self.secret,
                request.headers.get(signing.TIMESTAMP_HEADER, ""),
                request.headers.get(signing.SIGNATURE_HEADER, ""),
                body,
            )
            if not ok:
                self.rejected += 1
                return web.json_response({"error": "bad signature"}, status=401)
        xml: str | None = None
        data: dict[str, Any] = {}
        if request.content_type == "application/cap+xml":
            xml = body.decode("utf-8", "replace")
        else:
            try:
                data = json.loads(body)
            except ValueError:
                self.rejected += 1
                return web.json_response({"error": "not JSON"}, status=400)
        key = request.headers.get("Idempotency-Key", "")
        if key and any(d.key == key for d in self.deliveries):
            self.duplicates += 1
            self.repeated.append(key)
            return web.json_response({"status": "duplicate"})
        delivery = Delivery(path=request.path, key=key, body=data, xml=xml)
        self.deliveries.append(delivery)
        if self.on_delivery is not None:
            self.on_delivery(delivery)
        return web.json_response({"status": "ok"})

    async def start(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post("/hooks/{agency}", self._hook)
        app.router.add_post("/cap/{partner}", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        if server is not None and self.port == 0:
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
