"""The rule-set control topic: publish a checked rule set, read the active one."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaProducer

from pipeline.rules.control import last_in_force
from pipeline.rules.loader import RuleSet
from topics.catalogue import CONTROL_RULES
from topics.connection import Kafka, client_kwargs
from topics.kafka import values
from topics.models import RuleSetDoc

log = logging.getLogger(__name__)
ACTIVE_KEY = b"active"


async def publish(bootstrap: Kafka, rules: RuleSet, actor: str, comment: str = "") -> RuleSetDoc:
    doc = RuleSetDoc(
        version=rules.version, sources=rules.sources, applied_by=actor, comment=comment
    )
    producer = AIOKafkaProducer(
        **client_kwargs(bootstrap), max_request_size=16 * 1024 * 1024, acks="all"
    )
    await producer.start()
    try:
        await producer.send_and_wait(CONTROL_RULES, doc.to_bytes(), key=ACTIVE_KEY)
    finally:
        await producer.stop()
    return doc


async def latest(bootstrap: Kafka) -> RuleSetDoc | None:
    """The rule set in force: the last one published that reads and compiles (as the
    workers apply it), or None when there is none."""
    found = last_in_force(await values(bootstrap, CONTROL_RULES))
    return found[0] if found else None
