"""How canhbao reaches its Kafka cluster: the bootstrap servers and, on a secured
cluster, TLS and SASL (SCRAM). Every Kafka client canhbao makes (aiokafka consumers,
producers and admin clients, and the Faust worker through ``broker_credentials``)
takes its connection arguments from :func:`client_kwargs`, so a setting given once
reaches them all.

The password never appears in a ``repr``, ``str`` or log line of a connection: it is
a ``SecretStr`` until the moment it is handed to the client."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import SecretStr

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]

SECURITY_PROTOCOLS: tuple[str, ...] = get_args(SecurityProtocol)
SASL_MECHANISMS: tuple[str, ...] = get_args(SaslMechanism)


class KafkaSettingsError(ValueError):
    """The Kafka connection settings do not fit together (named in the message)."""


@dataclass(frozen=True)
class KafkaConnection:
    """Where the cluster is and how to authenticate to it. ``str()`` is the bootstrap
    address (what logs and messages show); the password is never shown."""

    bootstrap: str
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    username: str | None = None
    password: SecretStr | None = field(default=None, repr=False)
    #: CA bundle that signed the brokers' certificates; None: the system's CAs.
    ca_file: Path | None = None
    #: Client certificate and key, for clusters that authenticate clients by TLS.
    cert_file: Path | None = None
    key_file: Path | None = None
    key_password: SecretStr | None = field(default=None, repr=False)
    #: Check that the broker's certificate names the host connected to (keep it on).
    check_hostname: bool = True

    def __post_init__(self) -> None:
        problems = connection_problems(self)
        if problems:
            raise KafkaSettingsError("; ".join(problems))

    def __str__(self) -> str:
        return self.bootstrap

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for this cluster (None without TLS): the CA file or the
        system's CAs, and the client certificate when one is configured."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file) if self.ca_file else None
        )
        context.check_hostname = self.check_hostname
        if self.cert_file is not None:
            password = self.key_password.get_secret_value() if self.key_password else None
            context.load_cert_chain(
                str(self.cert_file),
                str(self.key_file) if self.key_file else None,
                password=password,
            )
        return context


def connection_problems(conn: KafkaConnection) -> list[str]:
    """What does not fit together in ``conn``, one sentence each naming the setting."""
    problems: list[str] = []
    if not conn.bootstrap.strip():
        problems.append("kafka_bootstrap: empty")
    if conn.security_protocol not in SECURITY_PROTOCOLS:
        problems.append(
            f"kafka_security_protocol: {conn.security_protocol!r} is not one of "
            + ", ".join(SECURITY_PROTOCOLS)
        )
    if conn.uses_sasl:
        if conn.sasl_mechanism is None:
            problems.append(
                f"kafka_sasl_mechanism: required with {conn.security_protocol} "
                f"({', '.join(SASL_MECHANISMS)})"
            )
        elif conn.sasl_mechanism not in SASL_MECHANISMS:
            problems.append(
                f"kafka_sasl_mechanism: {conn.sasl_mechanism!r} is not one of "
                + ", ".join(SASL_MECHANISMS)
            )
        if not conn.username:
            problems.append(f"kafka_sasl_username: required with {conn.security_protocol}")
        if conn.password is None:
            problems.append(f"kafka_sasl_password: required with {conn.security_protocol}")
    # SASL and TLS settings without a protocol that uses them are left unused, as
    # Kafka's own clients do: the embedded broker's children inherit them.
    if conn.uses_tls:
        tls_files = {
            "kafka_ssl_ca_file": conn.ca_file,
            "kafka_ssl_cert_file": conn.cert_file,
            "kafka_ssl_key_file": conn.key_file,
        }
        for name, value in tls_files.items():
            if value is not None and not value.is_file():
                problems.append(f"{name}: no file at {value}")
        if conn.key_file is not None and conn.cert_file is None:
            problems.append("kafka_ssl_key_file: set without kafka_ssl_cert_file")
    return problems


#: What a Kafka-connecting function takes: a connection, or a bare ``host:port[,…]``
#: address for a cluster without security (the embedded broker, tests).
Kafka = KafkaConnection | str


def connection(kafka: Kafka) -> KafkaConnection:
    """``kafka`` as a connection (a bare address is a plaintext one)."""
    return kafka if isinstance(kafka, KafkaConnection) else KafkaConnection(kafka)


def client_kwargs(kafka: Kafka) -> dict[str, Any]:
    """The keyword arguments that point an aiokafka client (consumer, producer or
    admin) at the cluster, with its TLS context and SASL credentials: the one place
    these are made, for every client canhbao starts."""
    conn = connection(kafka)
    kwargs: dict[str, Any] = {
        "bootstrap_servers": conn.bootstrap,
        "security_protocol": conn.security_protocol,
    }
    if conn.uses_tls:
        kwargs["ssl_context"] = conn.ssl_context()
    if conn.uses_sasl:
        assert conn.password is not None  # checked when the connection was made
        kwargs["sasl_mechanism"] = conn.sasl_mechanism
        kwargs["sasl_plain_username"] = conn.username
        kwargs["sasl_plain_password"] = conn.password.get_secret_value()
    return kwargs
