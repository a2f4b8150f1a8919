"""Real servers at the edges, on 127.0.0.1: Debian's mosquitto (started by
:mod:`tests.servers`, which skips a test when it is not installed), an SMTP server with
STARTTLS and authentication (aiosmtpd), and an HTTP SMS gateway that records."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from pathlib import Path
from typing import Any

import aiomqtt
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from canhbao.broker import free_port
from canhbao.kafka_probe import wait_for_broker  # noqa: F401 - re-exported for tests
from tests.servers import mosquitto  # noqa: F401 - re-exported for tests


def self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "smtp.crt", tmp / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class SmtpServer:
    host: str
    port: int
    cafile: Path
    username: str
    password: str
    messages: list[Message] = field(default_factory=list)
    #: While set, every message is refused with a temporary error (451): a mail server
    #: that is overloaded or restarting; its senders must try again later.
    refusing: bool = False
    refused: int = 0

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cafile))

    def to(self, address: str) -> list[Message]:
        return [m for m in self.messages if address in str(m["To"])]


@contextlib.contextmanager
def smtp_server(
    tmp: Path, username: str = "canhbao", password: str = "mật-khẩu"
) -> Iterator[SmtpServer]:
    cert, key = self_signed(tmp)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    box = SmtpServer("127.0.0.1", free_port(), cert, username, password)

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            if box.refusing:
                box.refused += 1
                return "451 4.3.0 try again later"
            box.messages.append(message_from_bytes(envelope.content, policy=policy.default))
            return "250 OK"

    def authenticator(
        server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login == username.encode()
            and data.password == password.encode()
        )
        return AuthResult(success=ok)

    controller = Controller(
        Handler(), hostname=box.host, port=box.port, tls_context=server_ctx,
        require_starttls=True, authenticator=authenticator, auth_required=True,
    )  # fmt: skip
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@dataclass
class Gateway:
    """An HTTP SMS gateway: records every request body it accepts. ``failures`` is
    what it does instead of accepting, one per request, until it runs out: "500" (an
    internal error) or "hang" (no answer for ``hang_seconds``: a client times out)."""

    port: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    failed: int = 0
    hang_seconds: float = 8.0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/sms"

    def recipients(self) -> list[str]:
        return [to for r in self.requests for to in r["to"]]

    def texts(self) -> list[str]:
        return [r["message"] for r in self.requests]

    async def start(self) -> Gateway:
        async def sms(request: web.Request) -> web.Response:
            body = await request.json()
            if self.failures:
                self.failed += 1
                if self.failures.pop(0) == "hang":
                    await asyncio.sleep(self.hang_seconds)
                return web.json_response({"error": "gateway error"}, status=500)
            self.requests.append(body)
            return web.json_response({"status": "queued"})

        app = web.Application()
        app.router.add_post("/sms", sms)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@contextlib.asynccontextmanager
async def mqtt_listener(port: int, topic: str) -> AsyncIterator[list[tuple[str, dict[str, Any]]]]:
    """Collects (topic, JSON payload) of every message on ``topic`` (wildcards allowed)."""
    import json

    got: list[tuple[str, dict[str, Any]]] = []
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe(topic, qos=1)

        async def pump() -> None:
            async for message in client.messages:
                got.append((str(message.topic), json.loads(bytes(message.payload))))

        task = asyncio.create_task(pump())
        try:
            yield got
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
