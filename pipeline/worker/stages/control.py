"""Hot reload: every worker follows ``canhbao.control.rules`` and swaps its rule
set atomically. A set that does not compile is refused and the running one
stays in force. Warnings of rules that are gone are cleared on the next tick."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import ConsumerRecord
from pydantic import ValidationError

from pipeline.rules.loader import RuleError, compile_rules
from pipeline.worker.stages.evaluate import EngineHolder
from topics.catalogue import CONTROL_RULES
from topics.connection import Kafka
from topics.kafka import TopicReader
from topics.metrics import Metrics
from topics.models import RuleSetDoc, ServiceStatus

log = logging.getLogger(__name__)


class RulesControl:
    """The rule set in force: ``holder``'s engine, swapped by :meth:`apply_doc`."""

    def __init__(self, holder: EngineHolder, metrics: Metrics) -> None:
        self.holder = holder
        self.metrics = metrics
        metrics.set_active_rules(holder.engine.rules.version)

    def apply_doc(self, raw: bytes) -> bool:
        """Swap to the rule set in ``raw``; False (old set kept) when it is not valid."""
        holder = self.holder
        reloads = self.metrics.rules_reloads
        try:
            doc = RuleSetDoc.model_validate_json(raw)
        except ValidationError as exc:
            reloads.labels("invalid").inc()
            log.error(
                "rules: unreadable control record, keeping %s: %s",
                holder.engine.rules.version,
                exc,
            )
            return False
        if doc.version == holder.engine.rules.version:
            return False
        try:
            rules = compile_rules(doc.sources)
        except RuleError as exc:
            reloads.labels("invalid").inc()
            log.error(
                "rules: version %s refused, keeping %s:\n%s",
                doc.version,
                holder.engine.rules.version,
                exc,
            )
            return False
        # One assignment: an event sees either the old engine or the new one, never a mix.
        holder.engine = holder.engine.with_rules(rules)
        reloads.labels("applied").inc()
        self.metrics.set_active_rules(rules.version)
        log.warning(
            "rules: active version %s (%d rules, applied by %s)",
            rules.version,
            len(rules.rules),
            doc.applied_by,
        )
        return True

    def status(self, instance: str) -> ServiceStatus:
        """The rule set in force, for ``canhbao.state.services`` (the console's health page)."""
        return ServiceStatus(
            service="worker", instance=instance, rules_version=self.holder.engine.rules.version
        )

    async def follow(self, bootstrap: Kafka) -> None:
        """Apply every record of the control topic, from its start, until cancelled.
        Every worker reads every record (no consumer group): each one needs the set."""

        def apply(record: ConsumerRecord[bytes, bytes]) -> None:
            self.apply_doc(record.value or b"")

        async with TopicReader(bootstrap, CONTROL_RULES, apply) as reader:
            await reader.follow(asyncio.Event())
