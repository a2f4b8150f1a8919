"""E-mail channel: SMTP with STARTTLS and authentication, text and HTML parts."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid

import aiosmtplib

from consumers.dispatcher import DeliveryError
from topics.models import Channel, Notification


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int = 587
    username: str | None = None
    password: str | None = None
    starttls: bool = True
    sender: str = "canhbao@localhost"
    ssl_context: ssl.SSLContext | None = None  # None: the system's CA bundle


class EmailSender:
    channel = Channel.EMAIL
    # Each message opens its own SMTP session: a few at once, since mail servers limit
    # (and may refuse with 421) the connections one client has open.
    max_in_flight = 4

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def message(self, note: Notification) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.config.sender
        msg["To"] = note.address
        msg["Subject"] = note.subject or note.body[:80]
        # A stable Message-ID: a mail system that sees it twice can drop the copy.
        safe = "".join(c if c.isalnum() or c in "-._" else "-" for c in note.notification_id)
        msg["Message-ID"] = make_msgid(idstring=safe, domain="canhbao")
        msg["X-Canhbao-Notification-Id"] = note.notification_id
        if note.exercise:
            msg["X-Canhbao-Exercise"] = "true"
        msg.set_content(note.body)
        if note.html:
            msg.add_alternative(note.html, subtype="html")
        return msg

    async def send(self, note: Notification) -> int | None:
        cfg = self.config
        try:
            errors, _response = await aiosmtplib.send(
                self.message(note),
                hostname=cfg.host,
                port=cfg.port,
                username=cfg.username,
                password=cfg.password,
                start_tls=cfg.starttls,
                tls_context=cfg.ssl_context,
                timeout=10,
            )
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"SMTP {exc.code}: {exc.message}", exc.code, retryable=exc.code < 500
            ) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
        if errors:
            raise DeliveryError(f"refused recipients: {sorted(errors)}", retryable=False)
        return 250
