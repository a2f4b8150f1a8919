"""The embedded default broker: starts, answers Kafka requests, and leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys

from canhbao.broker import EmbeddedBroker, kafka_bootstrap
from canhbao.kafka_probe import api_versions_ok
from tests.conftest import REPO, port_is_open


def test_embedded_broker_answers_and_stops_cleanly() -> None:
    broker = EmbeddedBroker().start()
    try:
        assert api_versions_ok("127.0.0.1", broker.port)
    finally:
        broker.stop()
    assert not port_is_open(broker.port)


def test_kafka_bootstrap_starts_tansu_only_when_no_cluster_is_configured() -> None:
    with kafka_bootstrap("broker-a:9092") as configured:
        assert configured == "broker-a:9092"
    with kafka_bootstrap(None) as embedded:
        port = int(embedded.rsplit(":", 1)[1])
        assert api_versions_ok("127.0.0.1", port)
        # Child processes (worker, dispatchers) find the same broker.
        assert os.environ["CANHBAO_KAFKA_BOOTSTRAP"] == embedded
    assert "CANHBAO_KAFKA_BOOTSTRAP" not in os.environ
    assert not port_is_open(port)


def test_topics_create_on_the_embedded_broker_from_the_cli() -> None:
    env = {k: v for k, v in os.environ.items() if k != "CANHBAO_KAFKA_BOOTSTRAP"}
    out = subprocess.run(
        [sys.executable, "-m", "canhbao", "topics", "create"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "created  canhbao.ingest.readings" in out
    assert "created  canhbao.deadletter" in out
