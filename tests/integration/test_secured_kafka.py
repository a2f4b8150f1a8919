"""canhbao on a secured Apache Kafka: a SASL_SSL listener (SCRAM-SHA-512, a
certificate from a CA the test makes), the pipeline configured only through the
``CANHBAO_KAFKA_*`` settings a user sets. A reading becomes a warning, is delivered
by the webhook dispatcher and written to the record; a client without the
credentials, or with a wrong password, is refused; no log shows the password.

Apache Kafka only (``--broker kafka``): Tansu has no TLS or SASL listener."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError
from pydantic import SecretStr

from canhbao.broker import free_port
from canhbao.kafka_local import KafkaStartError, apache_kafka
from canhbao.receiver import WebhookReceiver
from feeds.sink import KafkaSink
from tests.integration.helpers import run_canhbao, running, running_worker, wait_for
from tests.kafka_tls import make_tls
from topics.catalogue import INGEST_READINGS, RECEIPTS
from topics.connection import KafkaConnection, client_kwargs
from topics.kafka import TopicReader
from topics.models import DeliveryReceipt, Domain, Reading

pytestmark = pytest.mark.integration

USER = "canhbao"
PASSWORD = "scram-Pw-7Jd2-kept-secret"
SECRET = b"secured-webhook-secret"


@dataclass(frozen=True)
class SecuredKafka:
    connection: KafkaConnection
    env: dict[str, str]  # the CANHBAO_KAFKA_* settings a user would set


@pytest.fixture
def secured_kafka(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SecuredKafka]:
    kinds = str(request.config.getoption("broker")).split(",")
    if "kafka" not in [k.strip() for k in kinds]:
        pytest.skip("runs on Apache Kafka only (--broker kafka): Tansu has no SASL_SSL")
    tls = make_tls(tmp_path / "tls")
    plain, controller, secured = free_port(), free_port(), free_port()
    jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    # The broker's own PLAINTEXT listener stays (start.sh's readiness probe, and
    # the broker's inter-broker name); canhbao is given only the SASL_SSL one.
    properties = "\n".join(
        [
            f"listeners=PLAINTEXT://127.0.0.1:{plain},CONTROLLER://127.0.0.1:{controller},"
            f"SASL_SSL://127.0.0.1:{secured}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{plain},SASL_SSL://127.0.0.1:{secured}",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,"
            "SASL_SSL:SASL_SSL",
            "listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512",
            f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={jaas}",
            "listener.name.sasl_ssl.ssl.keystore.type=PEM",
            f"listener.name.sasl_ssl.ssl.keystore.location={tls.keystore}",
        ]
    )
    more = {
        "KAFKA_PORT": str(plain),
        "KAFKA_CONTROLLER_PORT": str(controller),
        "KAFKA_EXTRA_PROPERTIES": properties,
        "KAFKA_FORMAT_ARGS": f"--add-scram SCRAM-SHA-512=[name={USER},password={PASSWORD}]",
    }
    password_file = tmp_path / "kafka-password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    bootstrap = f"127.0.0.1:{secured}"
    try:
        with apache_kafka(tmp_path / "kafka", heap="-Xms128m -Xmx512m", more_env=more):
            yield SecuredKafka(
                KafkaConnection(
                    bootstrap,
                    security_protocol="SASL_SSL",
                    sasl_mechanism="SCRAM-SHA-512",
                    username=USER,
                    password=SecretStr(PASSWORD),
                    ca_file=tls.ca_cert,
                ),
                {
                    "CANHBAO_KAFKA_BOOTSTRAP": bootstrap,
                    "CANHBAO_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                    "CANHBAO_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                    "CANHBAO_KAFKA_SASL_USERNAME": USER,
                    "CANHBAO_KAFKA_SASL_PASSWORD_FILE": str(password_file),
                    "CANHBAO_KAFKA_SSL_CA_FILE": str(tls.ca_cert),
                },
            )
    except KafkaStartError as exc:
        pytest.fail(str(exc))


async def refused(conn: KafkaConnection) -> bool:
    """True when the cluster will not talk to a client connecting as ``conn``."""
    admin = AIOKafkaAdminClient(**client_kwargs(conn), request_timeout_ms=5000)
    try:
        await admin.start()
        await admin.list_topics()
    except KafkaConnectionError:
        return True
    finally:
        await admin.close()
    return False


def reading(value: float, at: datetime) -> bytes:
    return Reading(
        station_id="dap-cau", domain=Domain.WATER, metric="water_level_m",
        value=value, observed_at=at,
    ).to_bytes()  # fmt: skip


async def test_the_pipeline_runs_on_sasl_ssl_and_clients_without_credentials_are_refused(
    secured_kafka: SecuredKafka, tmp_path: Path
) -> None:
    conn = secured_kafka.connection
    # Nothing but the settings: no code path of canhbao is told it is in a test.
    env = {
        **os.environ,
        **secured_kafka.env,
        "CANHBAO_DATA_DIR": str(tmp_path / "data"),
        "CANHBAO_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'record.db'}",
        "CANHBAO_WEBHOOK_SECRET": SECRET.decode(),
        "CANHBAO_LOG_LEVEL": "info",
    }
    for setup in (["topics", "create"], ["db", "upgrade"]):
        done = run_canhbao(*setup, env=env, timeout=120)
        assert done.returncode == 0, done.stderr

    receiver = await WebhookReceiver(secret=SECRET).start()
    env["CANHBAO_AGENCY_WEBHOOK_BASE"] = receiver.base_url
    logs = {name: tmp_path / f"{name}.log" for name in ("worker", "dispatch", "record")}
    try:
        with (
            running_worker(env, logs["worker"]) as worker,
            running(["dispatch", "webhook"], env, logs["dispatch"]) as dispatcher,
            running(["record"], env, logs["record"]) as recorder,
        ):
            t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
            async with KafkaSink(conn, linger_ms=1) as sink:
                for hour, level in enumerate([3.9, 4.1, 4.45]):
                    await sink.send(
                        INGEST_READINGS, b"dap-cau", reading(level, t0 + timedelta(hours=hour))
                    )
            await wait_for(
                lambda: any(d.path == "/hooks/snnmt" for d in receiver.deliveries),
                75,
                "the department's webhook delivery over SASL_SSL",
            )
            receipts: list[DeliveryReceipt] = []
            async with TopicReader(
                conn,
                RECEIPTS,
                lambda r: receipts.append(DeliveryReceipt.model_validate_json(r.value)),
            ) as reader:
                await wait_for_async(
                    reader, lambda: any(r.outcome == "delivered" for r in receipts)
                )

            # The recorder writes what it reads (its database may not exist yet).
            for _ in range(15):
                done = run_canhbao("history", "warnings", "--json", env=env)
                assert done.returncode == 0, done.stderr
                if "dap-cau" in done.stdout:
                    break
                await asyncio.sleep(2)
            else:
                raise AssertionError("the recorder wrote no warning from the secured cluster")
            for name, proc in (("worker", worker), ("dispatch", dispatcher),
                               ("record", recorder)):  # fmt: skip
                assert proc.poll() is None, f"canhbao {name} died:\n{logs[name].read_text()}"
    finally:
        await receiver.stop()

    delivered = [d for d in receiver.deliveries if d.path == "/hooks/snnmt"]
    assert "Đáp Cầu" in json.dumps(delivered[0].body, ensure_ascii=False)

    # The cluster refuses a client without TLS and SASL, and a wrong password.
    assert await refused(KafkaConnection(conn.bootstrap))
    assert await refused(
        KafkaConnection(
            conn.bootstrap, security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
            username=USER, password=SecretStr("not-the-password"), ca_file=conn.ca_file,
        )
    )  # fmt: skip
    assert not await refused(conn)

    # The password reached the cluster, never a log line.
    for name, log in logs.items():
        assert PASSWORD not in log.read_text(errors="replace"), f"{name} logged the password"


async def wait_for_async(reader: TopicReader, done: object, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    assert callable(done)
    while not done():
        if loop.time() > deadline:
            raise AssertionError("no delivered receipt on canhbao.receipts")
        await reader.poll(0.5)
