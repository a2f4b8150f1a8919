"""The Kafka connection settings: one typed connection turned into the arguments of
every client canhbao starts (aiokafka and Faust), clear errors naming the setting at
fault, and a password that never shows."""

from __future__ import annotations

import ast
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import SecretStr

from canhbao.settings import Settings
from pipeline.worker.faust_fixes import broker_credentials
from tests.kafka_tls import TlsFiles, make_tls
from topics.connection import KafkaConnection, KafkaSettingsError, client_kwargs

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "pw-Zq8-never-shown"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


def scram(tls: TlsFiles, **more: object) -> KafkaConnection:
    return KafkaConnection(
        "broker-a:9094,broker-b:9094",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        username="canhbao",
        password=SecretStr(PASSWORD),
        ca_file=tls.ca_cert,
        **more,  # type: ignore[arg-type]
    )


def test_a_bare_address_is_a_plaintext_cluster() -> None:
    assert client_kwargs("127.0.0.1:9092") == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "PLAINTEXT",
    }


def test_sasl_ssl_gives_every_client_its_login_and_a_verifying_tls_context(
    tls: TlsFiles,
) -> None:
    kwargs = client_kwargs(scram(tls))
    context = kwargs.pop("ssl_context")
    assert kwargs == {
        "bootstrap_servers": "broker-a:9094,broker-b:9094",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "canhbao",
        "sasl_plain_password": PASSWORD,
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    # The configured CA, not only the system's, is trusted.
    assert any("canhbao test CA" in str(c.get("subject")) for c in context.get_ca_certs())


def test_a_client_certificate_is_loaded_for_mutual_tls(tls: TlsFiles) -> None:
    conn = KafkaConnection(
        "broker-a:9093",
        security_protocol="SSL",
        ca_file=tls.ca_cert,
        cert_file=tls.cert,
        key_file=tls.key,
    )
    kwargs = client_kwargs(conn)
    assert kwargs["security_protocol"] == "SSL"
    assert "sasl_mechanism" not in kwargs
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    with pytest.raises(ssl.SSLError):  # the key must match the certificate
        client_kwargs(
            KafkaConnection(
                "b:9093", security_protocol="SSL", cert_file=tls.cert, key_file=tls.ca_cert
            )
        )


def test_what_does_not_fit_is_refused_naming_each_setting(tmp_path: Path) -> None:
    with pytest.raises(KafkaSettingsError) as refused:
        KafkaConnection("b:9094", security_protocol="SASL_SSL")
    message = str(refused.value)
    for setting in ("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password"):
        assert setting in message
    with pytest.raises(KafkaSettingsError, match=r"kafka_ssl_ca_file: no file at .*missing"):
        KafkaConnection("b:9093", security_protocol="SSL", ca_file=tmp_path / "missing")
    with pytest.raises(KafkaSettingsError, match="kafka_security_protocol: 'TLS'"):
        KafkaConnection("b:9093", security_protocol="TLS")  # type: ignore[arg-type]


def test_the_password_never_shows(tls: TlsFiles, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = scram(tls, key_password=SecretStr(PASSWORD))
    assert str(conn) == "broker-a:9094,broker-b:9094"  # what log lines show
    assert PASSWORD not in repr(conn) and PASSWORD not in f"{conn}"
    monkeypatch.setenv("CANHBAO_KAFKA_SASL_PASSWORD", PASSWORD)
    assert PASSWORD not in repr(Settings())
    # Faust shows its credentials by username only.
    assert PASSWORD not in repr(broker_credentials(conn))


def test_settings_make_the_connection_and_read_the_password_from_a_file(
    tls: TlsFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "kafka-password"
    secret.write_text(PASSWORD + "\n")
    for name, value in {
        "BOOTSTRAP": "kafka-1:9094",
        "SECURITY_PROTOCOL": "SASL_SSL",
        "SASL_MECHANISM": "SCRAM-SHA-256",
        "SASL_USERNAME": "canhbao",
        "SASL_PASSWORD_FILE": str(secret),
        "SSL_CA_FILE": str(tls.ca_cert),
    }.items():
        monkeypatch.setenv(f"CANHBAO_KAFKA_{name}", value)
    conn = Settings().kafka_connection()
    assert conn.bootstrap == "kafka-1:9094" and conn.sasl_mechanism == "SCRAM-SHA-256"
    assert conn.password is not None and conn.password.get_secret_value() == PASSWORD
    # An embedded broker a command started is reached in plain text.
    assert Settings().kafka_connection("127.0.0.1:40000") == KafkaConnection("127.0.0.1:40000")
    secret.unlink()
    with pytest.raises(KafkaSettingsError, match="kafka_sasl_password_file: cannot read"):
        Settings().kafka_connection()


def test_faust_gets_the_same_credentials_as_every_client(tls: TlsFiles) -> None:
    for conn in (
        scram(tls),
        KafkaConnection("b:9093", security_protocol="SSL", ca_file=tls.ca_cert),
        KafkaConnection(
            "b:9092",
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-256",
            username="u",
            password=SecretStr(PASSWORD),
        ),
    ):
        faust_auth = credentials_to_aiokafka_auth(broker_credentials(conn))
        ours = client_kwargs(conn)
        ours.pop("bootstrap_servers")
        assert set(faust_auth) >= set(ours) - {"ssl_context"}
        for key in ours:
            if key == "ssl_context":
                assert (faust_auth.get(key) is None) == (ours[key] is None)
            else:
                assert faust_auth[key] == ours[key], key
    assert broker_credentials("127.0.0.1:9092") is None


KAFKA_CLIENTS = {"AIOKafkaConsumer", "AIOKafkaProducer", "AIOKafkaAdminClient"}


def _clients_without_the_connection() -> list[str]:
    found: list[str] = []
    for folder in ("topics", "pipeline", "feeds", "consumers", "recorder", "console", "canhbao"):
        for path in sorted((REPO / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                where = f"{path.relative_to(REPO)}:{node.lineno}"
                keywords = {k.arg for k in node.keywords}
                if name in KAFKA_CLIENTS:
                    spread = [
                        k.value
                        for k in node.keywords
                        if k.arg is None
                        and isinstance(k.value, ast.Call)
                        and getattr(k.value.func, "id", "") == "client_kwargs"
                    ]
                    if not spread or "bootstrap_servers" in keywords:
                        found.append(f"{where}: {name} without **client_kwargs(...)")
                elif (
                    name == "App"
                    and "broker" in keywords
                    and ("broker_credentials" not in keywords)
                ):
                    found.append(f"{where}: a Faust App without broker_credentials")
    return found


def test_every_kafka_client_of_canhbao_takes_the_connection_settings() -> None:
    # A client made without them would reach a secured cluster unauthenticated (and
    # be refused) or, worse, reach a plaintext listener the operator meant to close.
    assert _clients_without_the_connection() == []


def test_a_command_with_settings_that_do_not_fit_says_which_and_shows_no_secret(
    tmp_path: Path,
) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "CANHBAO_KAFKA_BOOTSTRAP": "127.0.0.1:9",
        "CANHBAO_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CANHBAO_KAFKA_SASL_PASSWORD": PASSWORD,
    }
    done = subprocess.run(
        [sys.executable, "-m", "canhbao", "topics", "create"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "kafka_sasl_mechanism: required with SASL_SSL" in done.stderr
    assert "kafka_sasl_username: required with SASL_SSL" in done.stderr
    assert PASSWORD not in done.stdout + done.stderr
