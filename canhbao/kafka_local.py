"""A local Apache Kafka (single KRaft node from ``infra/kafka``) for a benchmark or a
test: on free ports, state in a given folder, stopped on exit."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

from canhbao.broker import free_port
from canhbao.kafka_probe import wait_for_broker
from canhbao.settings import REPO_ROOT


class KafkaStartError(RuntimeError):
    """The broker did not start; the message carries the script's output."""


@contextlib.contextmanager
def apache_kafka(
    state_dir: Path, heap: str | None = None, more_env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """Start the broker, yield its (plaintext) bootstrap address, stop it cleanly at
    the end. The jars are fetched once (Maven Central) into ``.kafka/lib`` and shared.
    ``more_env`` adds to or overrides ``infra/kafka/start.sh``'s variables (ports,
    ``KAFKA_EXTRA_PROPERTIES``, ``KAFKA_FORMAT_ARGS``: a secured listener)."""
    env = {
        **os.environ,
        "KAFKA_PORT": str(free_port()),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "KAFKA_STATE_DIR": str(state_dir),
        "KAFKA_LIB_DIR": os.environ.get("KAFKA_LIB_DIR", str(REPO_ROOT / ".kafka" / "lib")),
        **(more_env or {}),
    }
    if heap:
        env["KAFKA_HEAP_OPTS"] = heap
    start = subprocess.run(
        [str(REPO_ROOT / "infra/kafka/start.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if start.returncode != 0:
        raise KafkaStartError(f"Apache Kafka did not start:\n{start.stdout}\n{start.stderr}")
    try:
        bootstrap = f"127.0.0.1:{env['KAFKA_PORT']}"
        wait_for_broker(bootstrap, 30)
        yield bootstrap
    finally:
        subprocess.run(
            [str(REPO_ROOT / "infra/kafka/stop.sh")], env=env, capture_output=True, timeout=60
        )
