"""What the stage tests share: records as Kafka hands them over, a memory writer per
topic, the dead letters, and metrics of their own (no broker anywhere)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from pipeline.worker.writers import MemoryWriter
from topics.catalogue import DEADLETTER, notifications_topic
from topics.kafka import DeadLetters
from topics.metrics import Metrics
from topics.models import Channel, DeadLetter


@dataclass
class Msg:
    """A record's coordinates, as Faust's message or aiokafka's record carries them."""

    topic: str
    partition: int = 0
    offset: int = 0
    key: bytes | None = None
    value: bytes | None = None


class Outputs:
    """Every topic a stage writes to, in memory, and its metrics."""

    def __init__(self) -> None:
        self.metrics = Metrics(CollectorRegistry())
        self.topics: dict[str, MemoryWriter] = {}
        self.dead = DeadLetters(self.to(DEADLETTER).send, self.metrics)

    def to(self, topic: str) -> MemoryWriter:
        return self.topics.setdefault(topic, MemoryWriter(topic))

    def notifications(self) -> dict[Channel, MemoryWriter]:
        return {c: self.to(notifications_topic(c)) for c in Channel}

    def values(self, topic: str) -> list[bytes]:
        return self.to(topic).values() if topic in self.topics else []

    def letters(self) -> list[DeadLetter]:
        return [DeadLetter.model_validate_json(v) for v in self.values(DEADLETTER)]

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def sent(self) -> dict[str, int]:
        """How many records each topic received."""
        return {t: len(w.records) for t, w in self.topics.items() if w.records}


def any_of(values: list[bytes], model: Any) -> list[Any]:
    return [model.model_validate_json(v) for v in values]
