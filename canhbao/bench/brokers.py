"""The broker a benchmark runs on: embedded Tansu, a local Apache Kafka started from
``infra/kafka`` (as CI does), or an existing cluster from CANHBAO_KAFKA_BOOTSTRAP."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from canhbao.broker import EmbeddedBroker
from canhbao.kafka_local import apache_kafka
from topics.connection import Kafka, KafkaConnection


@dataclass(frozen=True)
class BenchBroker:
    kind: str  # tansu | kafka | existing
    bootstrap: Kafka


@contextlib.contextmanager
def bench_broker(kind: str, existing: KafkaConnection | None) -> Iterator[BenchBroker]:
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
