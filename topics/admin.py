"""Create the catalogue's topics on any Kafka-compatible broker, idempotently."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from topics.catalogue import CATALOGUE, TopicSpec
from topics.connection import Kafka, client_kwargs

log = logging.getLogger(__name__)


@dataclass
class CreateReport:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)


async def create_topics(
    bootstrap: Kafka,
    *,
    default_partitions: int,
    replication_factor: int = 1,
    min_insync_replicas: int | None = None,
    specs: tuple[TopicSpec, ...] = CATALOGUE,
    settle: float = 30.0,
) -> CreateReport:
    """Create every missing topic; topics that exist are left as they are. Returns once
    the cluster describes every topic it created with all its partitions (up to
    ``settle`` seconds): Kafka answers a creation before its metadata has spread, and
    a client started at once could find a topic without partitions.

    ``min_insync_replicas`` (None: the broker's default) is how many replicas must
    hold a write before a producer with ``acks=all`` is told it is written: with
    replication factor 3 and 2, one broker may be lost without losing or refusing a
    write. It cannot exceed the replication factor (every write would be refused)."""
    if min_insync_replicas is not None and not 1 <= min_insync_replicas <= replication_factor:
        raise ValueError(
            f"min.insync.replicas {min_insync_replicas} must be between 1 and the "
            f"replication factor {replication_factor}: every write would be refused"
        )
    replicas = (
        {} if min_insync_replicas is None else {"min.insync.replicas": str(min_insync_replicas)}
    )
    admin = AIOKafkaAdminClient(**client_kwargs(bootstrap), client_id="canhbao-admin")
    await admin.start()
    report = CreateReport()
    try:
        existing = set(await admin.list_topics())
        missing = []
        for s in specs:
            if s.name in existing:
                report.existing.append(s.name)
                continue
            missing.append(
                NewTopic(
                    name=s.name,
                    num_partitions=s.partitions or default_partitions,
                    replication_factor=replication_factor,
                    topic_configs={**s.config(), **replicas},
                )
            )
        for topic in missing:
            # One at a time so that a topic created concurrently by another
            # worker is a skip, not a failure of the whole batch.
            try:
                response = await admin.create_topics([topic])
                error = _topic_error(response, topic.name)
            except TopicAlreadyExistsError:
                error = TopicAlreadyExistsError
            if error is None:
                report.created.append(topic.name)
            elif error is TopicAlreadyExistsError:
                # Listed as missing, yet there: the broker that answered the listing had
                # not yet heard of a topic created a moment before (or concurrently).
                report.existing.append(topic.name)
            else:
                raise TopicCreationError(f"topic {topic.name}: {error.__name__}")
        await _until_described(admin, {t.name: t.num_partitions for t in missing}, settle)
    finally:
        await admin.close()
    log.info("topics: %d created, %d already there", len(report.created), len(report.existing))
    return report


class TopicCreationError(RuntimeError):
    """The broker refused to create a topic (not because it exists)."""


def _topic_error(response: object, name: str) -> type[KafkaError] | None:
    """The error the broker answered for topic ``name``, None if it was created. The
    admin client returns per-topic errors in the response; it does not raise them."""
    for entry in getattr(response, "topic_errors", ()):
        topic, code = entry[0], entry[1]
        if topic == name and code:
            error: type[KafkaError] = for_code(code)
            return error
    return None


async def _until_described(
    admin: AIOKafkaAdminClient, wanted: dict[str, int], settle: float
) -> None:
    deadline = time.monotonic() + settle
    while wanted:
        described = await admin.describe_topics(list(wanted))
        for t in described:
            if t.get("error_code", 0) == 0 and len(t.get("partitions", [])) >= wanted.get(
                t["topic"], 1
            ):
                wanted.pop(t["topic"], None)
        if not wanted:
            return
        if time.monotonic() >= deadline:
            log.warning("topics: not yet described with all partitions: %s", ", ".join(wanted))
            return
        await asyncio.sleep(0.2)
