"""The rule-set control topic: publish a checked rule set, read the active one."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaProducer

from pipeline.rules.loader import RuleSet
from topics.catalogue import CONTROL_RULES
from topics.connection import Kafka, client_kwargs
from topics.kafka import rules_in_force
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


async def latest(bootstrap: Kafka, timeout_ms: int = 3000) -> RuleSetDoc | None:
    """The last rule set published, or None when the topic is empty."""
    return await rules_in_force(bootstrap, timeout_ms)
