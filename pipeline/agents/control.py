"""Hot reload: every worker follows ``canhbao.control.rules`` and swaps its rule
set atomically. A set that does not compile is refused and the running one
stays in force. Warnings of rules that are gone are cleared on the next tick."""

from __future__ import annotations

import asyncio
import logging
from typing import cast

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from canhbao.metrics import RULES_RELOADS, set_active_rules
from pipeline.agents.evaluate import EngineHolder
from pipeline.engine import Engine
from pipeline.rules.loader import RuleError, compile_rules
from topics.catalogue import CONTROL_RULES
from topics.models import RuleSetDoc

log = logging.getLogger(__name__)


def apply_doc(holder: EngineHolder, raw: bytes) -> bool:
    """Swap to the rule set in ``raw``; False (old set kept) when it is not valid."""
    try:
        doc = RuleSetDoc.model_validate_json(raw)
    except ValidationError as exc:
        RULES_RELOADS.labels("invalid").inc()
        log.error(
            "rules: unreadable control record, keeping %s: %s", holder.engine.rules.version, exc
        )
        return False
    if doc.version == holder.engine.rules.version:
        return False
    try:
        rules = compile_rules(doc.sources)
    except RuleError as exc:
        RULES_RELOADS.labels("invalid").inc()
        log.error(
            "rules: version %s refused, keeping %s:\n%s",
            doc.version,
            holder.engine.rules.version,
            exc,
        )
        return False
    old = holder.engine
    # One assignment: an event sees either the old engine or the new one, never a mix.
    holder.engine = Engine(rules, old.directory, exercise=old.ctx.exercise, watch=old.watch)
    RULES_RELOADS.labels("applied").inc()
    set_active_rules(rules.version)
    log.warning(
        "rules: active version %s (%d rules, applied by %s)",
        rules.version,
        len(rules.rules),
        doc.applied_by,
    )
    return True


def register(app: faust.App, bootstrap: str, holder: EngineHolder) -> None:
    from pipeline.app import App

    set_active_rules(holder.engine.rules.version)

    async def follow_rules() -> None:
        # Every worker reads every record (no consumer group): each one needs the set.
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
        await consumer.start()
        try:
            tp = TopicPartition(CONTROL_RULES, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            while True:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for record in batch.get(tp, []):
                    apply_doc(holder, record.value or b"")
        except asyncio.CancelledError:
            raise
        finally:
            await consumer.stop()

    cast(App, app).edge_task(follow_rules)
