"""Real servers at the edges, on 127.0.0.1: Debian's mosquitto (started by
:mod:`tests.servers`, which skips a test when it is not installed), an SMTP server with
STARTTLS and authentication (aiosmtpd), and an HTTP SMS gateway that records."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import os
import ssl
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
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


@dataclass
class MqttBroker:
    """Debian's mosquitto on a port of its own that a test can stop and start again (a
    broker restarted under a running dispatcher). It keeps persistent sessions on disk
    across a clean stop, as a production broker does: a subscriber's QoS 1 messages
    published while it was reconnecting wait for it."""

    state: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> MqttBroker:
        from tests.servers import require, wait_for_port

        self.state.mkdir(parents=True, exist_ok=True)
        conf = self.state / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {self.state}/\n"
            # As root (CI), mosquitto would drop to its own user, which may not write
            # the test's directory: its sessions would not survive the restart.
            + ("user root\n" if os.geteuid() == 0 else "")
        )
        self.starts += 1
        log = (self.state / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen(
            [require("mosquitto"), "-c", str(conf), "-v"], stdout=log, stderr=log
        )
        wait_for_port(self.port, self.proc, "mosquitto")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its sessions and exits
            self.proc.wait(10)


@dataclass
class MqttSubscriber:
    """A loudspeaker controller's view of the MQTT broker: subscribed to ``topic`` at
    QoS 1 in a persistent session (``clean_session`` off, a fixed client id), so it
    gets every message published while it was reconnecting after a broker restart.
    ``received`` counts each message by its payload's ``id``; ``on_message`` is called
    after each one."""

    port: int
    topic: str
    identifier: str = "canhbao-test-speakers"
    received: Counter[str] = field(default_factory=Counter)
    on_message: Callable[[str], None] | None = None
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    connections: int = 0  # times it connected and subscribed
    _task: asyncio.Task[None] | None = None
    _got: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for(self, n: int, timeout: float = 30, connections: int = 1) -> None:
        """Until ``n`` different messages arrived and it subscribed ``connections``
        times (TimeoutError after ``timeout``)."""
        async with asyncio.timeout(timeout):
            while len(self.received) < n or self.connections < connections:
                self._got.clear()
                await self._got.wait()

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", self.port, identifier=self.identifier, clean_session=False
                ) as client:
                    await client.subscribe(self.topic, qos=1)
                    self.connections += 1
                    self.subscribed.set()
                    self._got.set()
                    async for message in client.messages:
                        key = str(json.loads(bytes(message.payload))["id"])
                        self.received[key] += 1
                        self._got.set()
                        if self.on_message is not None:
                            self.on_message(key)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)  # the broker is restarting: connect again

    async def start(self) -> MqttSubscriber:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.subscribed.wait(), 30)
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
