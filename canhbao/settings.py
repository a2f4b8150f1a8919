"""Runtime configuration from the environment (prefix ``CANHBAO_``) or a ``.env`` file.

Secrets are ``SecretStr``: they print as ``**********`` and are never logged.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from topics.connection import (
    KafkaConnection,
    KafkaSettingsError,
    SaslMechanism,
    SecurityProtocol,
)

if TYPE_CHECKING:
    from pipeline.validate import TimePolicy

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CANHBAO_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    kafka_bootstrap: str | None = Field(
        default=None,
        description="host:port[,host:port] of an existing cluster; unset starts embedded Tansu",
    )
    partitions: int = Field(default=3, ge=1, description="Default partitions per topic")
    replication_factor: int = Field(default=1, ge=1)
    # A cluster of three or more brokers (issue 11): how many copies must hold a write
    # before it counts as written, so that losing one broker loses no write.
    min_insync_replicas: int | None = Field(
        default=None,
        ge=1,
        description="min.insync.replicas of the topics canhbao creates (unset: the "
        "broker's default); with CANHBAO_REPLICATION_FACTOR=3, 2 survives one broker lost",
    )
    app_id: str = Field(default="canhbao", description="Faust app id (= consumer group)")
    group_instance_id: str | None = Field(
        default=None,
        description="Static group membership (Kafka KIP-345): a worker restarted with the "
        "same id takes its partitions back at once, without a rebalance. One stable, "
        "distinct value per worker (e.g. the host name); unset on the embedded broker",
    )
    rebalance_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds the group coordinator waits for members to rejoin",
    )
    fetch_max_wait_ms: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description="Longest a consumer's fetch waits at the broker for data. Kafka answers "
        "as soon as data arrives; Tansu waits it out, so embedded runs use 10 ms",
    )
    rules_path: Path = REPO_ROOT / "rules"
    geography_path: Path = REPO_ROOT / "config" / "geography.yaml"
    directory_path: Path = REPO_ROOT / "config" / "directory.yaml"
    routes_path: Path = REPO_ROOT / "config" / "routes.yaml"
    audiences_path: Path = REPO_ROOT / "config" / "audiences.yaml"
    webhook_secret: SecretStr | None = Field(
        default=None, description="HMAC-SHA256 key for signing webhook deliveries"
    )
    webhook_timeout: float = Field(default=5.0, gt=0)
    webhook_max_attempts: int = Field(
        default=10, ge=1, description="attempts before dead-lettering (one to two minutes)"
    )
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    smtp_ca_file: Path | None = Field(
        default=None, description="CA bundle for the SMTP server's certificate (default: system)"
    )
    smtp_from: str = "canhbao@bacninh.gov.vn"
    sms_gateway_url: str = "http://127.0.0.1:8788/sms"
    sms_token: SecretStr | None = None
    sms_body_template: str | None = Field(
        default=None, description="JSON request body with $to/$recipients/$text/$sender/$id"
    )
    sms_sender: str = "CANHBAO"
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_bridge_config: Path = Field(
        default=REPO_ROOT / "config" / "mqtt_bridge.yaml",
        description="Topic-to-reading mappings of `canhbao feed mqtt`",
    )
    cap_ingest_config: Path = Field(
        default=REPO_ROOT / "config" / "cap_ingest.yaml",
        description="How `canhbao feed cap` maps CAP alerts to reports, and its live bound",
    )
    cap_signing_key: Path | None = Field(
        default=None,
        description="PEM private key (RSA or EC) that signs every CAP message of "
        "`canhbao cap-feed` (XML-DSig, enveloped); unset: the feed is unsigned",
    )
    cap_signing_cert: Path | None = Field(
        default=None,
        description="PEM certificate of CANHBAO_CAP_SIGNING_KEY, sent in each signature "
        "and given to partners to verify with",
    )
    cap_signing_key_passphrase: SecretStr | None = Field(
        default=None, description="Passphrase of an encrypted CANHBAO_CAP_SIGNING_KEY"
    )
    data_dir: Path = Field(
        default=REPO_ROOT / "canhbao-data",
        description="The worker's local files (Faust's data directory, one per app id); "
        "the tables themselves live in Kafka changelogs, so nothing here needs a backup",
    )
    feeds_state_dir: Path = Field(
        default=REPO_ROOT / "canhbao-data" / "feeds",
        description="Where feeds keep their place (Suricata offsets, CAP alerts already seen)",
    )
    batch_size: int = Field(
        default=500, ge=1, description="Most events a stream processor takes at once"
    )
    batch_wait: float = Field(
        default=0.005,
        gt=0,
        description="Seconds a stream processor waits to fill a batch (adds to latency)",
    )
    tick_interval: float = Field(
        default=30.0, gt=0, description="Seconds between clock ticks (silent stations, expiry)"
    )
    api_keys_path: Path = Field(
        default=REPO_ROOT / "config" / "api_keys.yaml",
        description="Per-source API keys of the HTTP ingest API (SHA-256 hashes only)",
    )
    feed_http_max_body: int = Field(
        default=1024 * 1024, ge=1, description="Largest request body the HTTP ingest API reads"
    )
    feed_http_max_items: int = Field(
        default=5000, ge=1, description="Most readings or reports in one HTTP ingest batch"
    )
    max_clock_skew: float = Field(
        default=300.0,
        gt=0,
        description="Seconds a reading or report may be dated ahead of the pipeline's clock "
        "(sender clocks drift a little); further ahead, it is refused with the reason",
    )
    max_lateness: float = Field(
        default=6 * 3600.0,
        gt=0,
        description="The live lateness bound, in seconds: a reading or report older than "
        "this is history, refused by the live pipeline (never notified; backtest it)",
    )
    earliest_observed_at: AwareDatetime = Field(
        default=datetime(2000, 1, 1, tzinfo=UTC),
        description="Readings and reports dated before this are refused as implausible "
        "(a sensor clock reset to its epoch)",
    )
    console_db: Path | None = Field(
        default=None,
        description="The console's accounts, sessions and failed logins (SQLite); "
        "default: console.db in the data directory",
    )
    console_session_secret: SecretStr | None = Field(
        default=None,
        description="Key of the console's session tokens; consoles sharing a console_db "
        "must share it. Unset: a random one per start (a restart logs everyone out)",
    )
    console_behind_https: bool = Field(
        default=False,
        description="The console is reached over https through a TLS proxy: its cookies "
        "are marked Secure (served over https itself, they always are)",
    )
    console_session_hours: float = Field(
        default=8.0, gt=0, le=24 * 7, description="A console session ends this long after login"
    )
    database_url: SecretStr | None = Field(
        default=None,
        description="The threat record's database (SQLAlchemy URL, e.g. "
        "postgresql+asyncpg://user:password@host/canhbao); unset: SQLite in the data "
        "directory (record.db). A secret: it may hold a password",
    )
    record_readings_days: int = Field(
        default=30, ge=1, description="Days the record keeps the readings rules selected"
    )
    record_group_id: str = Field(
        default="canhbao.record", description="The recorder's consumer group"
    )
    record_api_tokens_path: Path = Field(
        default=REPO_ROOT / "config" / "record_api_tokens.yaml",
        description="Departments' tokens of the record's read-only API (SHA-256 hashes only)",
    )
    record_api_port: int = Field(
        default=8791, ge=1, le=65535, description="Port of `canhbao record --api`"
    )
    # --- how the threat record shows times to people (history, indicators, report) ---
    display_timezone: str = Field(
        default="Asia/Ho_Chi_Minh",
        description="IANA time zone of the times `canhbao history`, `indicators` and "
        "`report` print for people, and of times given without an offset on their "
        "command line (--json and --csv keep ISO 8601 with the offset)",
    )
    # A secured Kafka cluster (TLS and SASL): every client canhbao starts uses these
    # (topics.connection.client_kwargs); the embedded broker is plaintext only.
    kafka_security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT",
        description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (a secured cluster: SASL_SSL)",
    )
    kafka_sasl_mechanism: SaslMechanism | None = Field(
        default=None, description="SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN (with SASL_*)"
    )
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = Field(
        default=None, description="SASL password (a secret); or CANHBAO_KAFKA_SASL_PASSWORD_FILE"
    )
    kafka_sasl_password_file: Path | None = Field(
        default=None,
        description="A file holding the SASL password (a mounted secret); its text, "
        "without the final newline, is the password",
    )
    kafka_ssl_ca_file: Path | None = Field(
        default=None, description="PEM CA bundle of the brokers' certificates (default: system)"
    )
    kafka_ssl_cert_file: Path | None = Field(
        default=None, description="PEM client certificate, for clusters that ask for one"
    )
    kafka_ssl_key_file: Path | None = Field(
        default=None, description="PEM private key of CANHBAO_KAFKA_SSL_CERT_FILE"
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        default=None, description="Passphrase of an encrypted CANHBAO_KAFKA_SSL_KEY_FILE"
    )
    kafka_ssl_check_hostname: bool = Field(
        default=True,
        description="Check that a broker's certificate names the host connected to",
    )
    metrics_port: int = Field(default=0, ge=0, le=65535, description="0 disables /metrics")
    # Citizen broadcasts: the two-person rule by account (issue 10).
    allow_cli_approvals: bool = Field(
        default=False,
        description="Let `canhbao alerts approve --actor NAME` approve citizen broadcasts. "
        "Off: the name is anyone's to type, so approvals go through the console's accounts",
    )
    exercise: bool = Field(default=False, description="Mark every warning as an exercise")
    # Delivery pacing per receiver (issue 12): a token bucket per agency endpoint, so a
    # burst of warnings does not overwhelm an agency's system.
    dispatch_rate_per_receiver: float = Field(
        default=20.0, gt=0, description="deliveries per second to one receiver, sustained"
    )
    dispatch_burst_per_receiver: float = Field(
        default=40.0, ge=1, description="deliveries to one receiver at once before pacing"
    )
    # Deliveries in flight at once per receiver (issue 12, goal 4): one at a time leaves
    # a dispatcher waiting on round trips; versions of one warning still go in order.
    dispatch_window_per_receiver: int = Field(
        default=32, ge=1, le=1000,
        description="notifications a dispatcher has in flight at once to one receiver",
    )  # fmt: skip
    log_level: str = "info"

    @field_validator("display_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value!r} is not an IANA time zone (e.g. Asia/Ho_Chi_Minh, UTC)"
            ) from None
        return value

    def display_tz(self) -> tzinfo:
        """The time zone people read the record's times in."""
        return ZoneInfo(self.display_timezone)

    @property
    def console_db_path(self) -> Path:
        return self.console_db or self.data_dir / "console.db"

    def kafka_connection(self, bootstrap: str | None = None) -> KafkaConnection:
        """How to reach ``bootstrap`` (default: the configured cluster). The security
        settings are the configured cluster's; another address (the embedded broker a
        command started) is reached in plain text. Raises ``KafkaSettingsError``
        naming the settings that do not fit together."""
        address = bootstrap or self.kafka_bootstrap
        if not address:
            raise ValueError("no Kafka cluster: CANHBAO_KAFKA_BOOTSTRAP is not set")
        if address != self.kafka_bootstrap:
            return KafkaConnection(address)
        password = self.kafka_sasl_password
        if password is None and self.kafka_sasl_password_file is not None:
            try:
                text = self.kafka_sasl_password_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise KafkaSettingsError(
                    f"kafka_sasl_password_file: cannot read {self.kafka_sasl_password_file}: "
                    f"{exc.strerror}"
                ) from None
            password = SecretStr(text.rstrip("\r\n"))
        return KafkaConnection(
            address,
            security_protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            username=self.kafka_sasl_username,
            password=password,
            ca_file=self.kafka_ssl_ca_file,
            cert_file=self.kafka_ssl_cert_file,
            key_file=self.kafka_ssl_key_file,
            key_password=self.kafka_ssl_key_password,
            check_hostname=self.kafka_ssl_check_hostname,
        )

    def record_url(self) -> str:
        """The threat record's database URL: the configured one, else SQLite in the
        data directory."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite+aiosqlite:///{(self.data_dir / 'record.db').resolve()}"

    def time_policy(self) -> TimePolicy:
        """The validate stage's bounds on a message's time, from these settings."""
        from pipeline.validate import TimePolicy

        return TimePolicy(
            max_skew=timedelta(seconds=self.max_clock_skew),
            max_lateness=timedelta(seconds=self.max_lateness),
            earliest=self.earliest_observed_at,
        )


def get_settings() -> Settings:
    """The settings as the environment and ``.env`` give them now. Each command reads
    them once, at its start, and passes them down: nothing below ``canhbao/`` reads
    the environment, and no cache can go stale."""
    return Settings()
