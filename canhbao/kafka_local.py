"""A local Apache Kafka (single KRaft node from ``infra/kafka``) for a benchmark or a
test: on free ports, state in a given folder, stopped on exit."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from canhbao.broker import free_port
from canhbao.kafka_probe import wait_for_broker
from canhbao.settings import REPO_ROOT


class KafkaStartError(RuntimeError):
    """The broker did not start; the message carries the script's output."""


class LocalKafka:
    """The broker of ``infra/kafka`` on ports chosen once, so that it can be stopped
    and started again on the same address and the same on-disk logs (the fault suite
    restarts it under a running pipeline)."""

    def __init__(
        self, state_dir: Path, heap: str | None = None, more_env: Mapping[str, str] | None = None
    ) -> None:
        self.env = {
            **os.environ,
            "KAFKA_PORT": str(free_port()),
            "KAFKA_CONTROLLER_PORT": str(free_port()),
            "KAFKA_STATE_DIR": str(state_dir),
            "KAFKA_LIB_DIR": os.environ.get("KAFKA_LIB_DIR", str(REPO_ROOT / ".kafka" / "lib")),
            **(more_env or {}),
        }
        if heap:
            self.env["KAFKA_HEAP_OPTS"] = heap
        self.bootstrap = f"127.0.0.1:{self.env['KAFKA_PORT']}"

    def start(self) -> None:
        start = subprocess.run(
            [str(REPO_ROOT / "infra/kafka/start.sh")],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if start.returncode != 0:
            raise KafkaStartError(f"Apache Kafka did not start:\n{start.stdout}\n{start.stderr}")
        wait_for_broker(self.bootstrap, 30)

    def kill(self) -> None:
        """SIGKILL the broker's JVM, as a power cut would: no clean shutdown, the logs
        on disk are recovered at the next start."""
        pid_file = Path(self.env["KAFKA_STATE_DIR"]) / "kafka.pid"
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGKILL)
        for _ in range(100):  # until the JVM is gone and its ports are free
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)

    def stop(self) -> None:
        subprocess.run(
            [str(REPO_ROOT / "infra/kafka/stop.sh")], env=self.env, capture_output=True, timeout=60
        )


@contextlib.contextmanager
def apache_kafka(
    state_dir: Path, heap: str | None = None, more_env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """Start the broker, yield its (plaintext) bootstrap address, stop it cleanly at
    the end. The jars are fetched once (Maven Central) into ``.kafka/lib`` and shared.
    ``more_env`` adds to or overrides ``infra/kafka/start.sh``'s variables (ports,
    ``KAFKA_EXTRA_PROPERTIES``, ``KAFKA_FORMAT_ARGS``: a secured listener)."""
    kafka = LocalKafka(state_dir, heap, more_env)
    kafka.start()
    try:
        yield kafka.bootstrap
    finally:
        kafka.stop()
