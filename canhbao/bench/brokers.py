"""The broker a benchmark runs on: embedded Tansu, a local Apache Kafka started from
``infra/kafka`` (as CI does), or an existing cluster from CANHBAO_KAFKA_BOOTSTRAP."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from canhbao.broker import EmbeddedBroker, free_port
from canhbao.kafka_probe import wait_for_broker
from canhbao.settings import REPO_ROOT


@dataclass(frozen=True)
class BenchBroker:
    kind: str  # tansu | kafka | existing
    bootstrap: str


@contextlib.contextmanager
def apache_kafka(workdir: Path) -> Iterator[str]:
    """A single-node KRaft broker with on-disk logs in ``workdir``, stopped on exit."""
    env = {
        **os.environ,
        "KAFKA_PORT": str(free_port()),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "KAFKA_STATE_DIR": str(workdir / "kafka"),
        "KAFKA_LIB_DIR": os.environ.get("KAFKA_LIB_DIR", str(REPO_ROOT / ".kafka" / "lib")),
    }
    start = subprocess.run(
        [str(REPO_ROOT / "infra/kafka/start.sh")], env=env, capture_output=True, text=True
    )
    if start.returncode != 0:
        raise RuntimeError(f"Apache Kafka did not start:\n{start.stdout}\n{start.stderr}")
    try:
        bootstrap = f"127.0.0.1:{env['KAFKA_PORT']}"
        wait_for_broker(bootstrap, 60)
        yield bootstrap
    finally:
        subprocess.run(
            [str(REPO_ROOT / "infra/kafka/stop.sh"), "--wipe"], env=env, capture_output=True
        )


@contextlib.contextmanager
def bench_broker(kind: str, existing: str | None) -> Iterator[BenchBroker]:
    if existing:
        yield BenchBroker("existing", existing)
    elif kind == "tansu":
        with EmbeddedBroker() as tansu:
            yield BenchBroker("tansu", tansu.bootstrap)
    elif kind == "kafka":
        with (
            tempfile.TemporaryDirectory(prefix="canhbao-bench-") as tmp,
            apache_kafka(Path(tmp)) as bootstrap,
        ):
            yield BenchBroker("kafka", bootstrap)
    else:
        raise ValueError(f"unknown broker {kind!r}: choose tansu or kafka")
