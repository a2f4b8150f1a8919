"""Build the dispatcher of a channel from settings (secrets stay in SecretStr)."""

from __future__ import annotations

import ssl

from canhbao.settings import Settings
from consumers.delivery import RetryPolicy
from consumers.dispatcher import DispatchConfig, Dispatcher, Sender
from consumers.email import EmailSender, SmtpConfig
from consumers.mqtt import MqttSender
from consumers.sms import DEFAULT_TEMPLATE, SmsSender
from consumers.webhook import CapSender, WebhookSender
from topics.connection import Kafka


def _secret(value: object) -> str | None:
    get = getattr(value, "get_secret_value", None)
    return get() if get is not None else None


def sender_for(channel: str, settings: Settings) -> Sender:
    webhook_secret = _secret(settings.webhook_secret)
    secret = webhook_secret.encode() if webhook_secret else None
    if channel == "webhook":
        return WebhookSender(secret, settings.webhook_timeout)
    if channel == "cap":
        return CapSender(secret, settings.webhook_timeout)
    if channel == "email":
        context = None
        if settings.smtp_ca_file is not None:
            context = ssl.create_default_context(cafile=str(settings.smtp_ca_file))
        return EmailSender(
            SmtpConfig(
                host=settings.smtp_host,
                port=settings.smtp_port,
                username=settings.smtp_username,
                password=_secret(settings.smtp_password),
                starttls=settings.smtp_starttls,
                sender=settings.smtp_from,
                ssl_context=context,
            )
        )
    if channel == "sms":
        return SmsSender(
            settings.sms_gateway_url,
            _secret(settings.sms_token),
            settings.sms_body_template or DEFAULT_TEMPLATE,
            settings.sms_sender,
        )
    if channel == "loudspeaker":
        return MqttSender(
            settings.mqtt_host,
            settings.mqtt_port,
            settings.mqtt_username,
            _secret(settings.mqtt_password),
        )
    raise ValueError(f"unknown channel {channel!r}")


def dispatcher_for(channel: str, settings: Settings, bootstrap: Kafka) -> Dispatcher:
    return Dispatcher(
        sender_for(channel, settings),
        DispatchConfig(
            bootstrap=bootstrap,
            policy=RetryPolicy(
                max_attempts=settings.webhook_max_attempts, timeout=settings.webhook_timeout
            ),
            rate_per_receiver=settings.dispatch_rate_per_receiver,
            burst_per_receiver=settings.dispatch_burst_per_receiver,
            window_per_receiver=settings.dispatch_window_per_receiver,
            rebalance_timeout_ms=int(settings.rebalance_timeout * 1000),
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
        ),
    )
