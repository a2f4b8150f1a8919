"""The two control topics, ``canhbao.control.rules`` and ``canhbao.control.silences``.

Hot reload: every worker follows ``canhbao.control.rules`` and swaps its rule set
atomically. A set that does not compile is refused and the running one stays in
force. Warnings of rules that are gone are cleared on the next tick. (Silences are
followed by the route stage's :class:`~pipeline.worker.stages.route.Views`.)

Every worker reads both topics whole, without a consumer group: each one needs the
rule set and the silences. So a refused control record cannot be dead-lettered by
the workers that refuse it (there would be one dead letter per worker and restart).
:class:`ControlCheckStage` is its one owner: an agent of the worker app's consumer
group, so the topics' single partition is read by exactly one worker at a time,
judges each record with the same functions the followers apply (:func:`read_rule_set`,
:func:`compile_rule_set`, :func:`read_silence`) and dead-letters the refused ones
with the reason."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import ConsumerRecord
from pydantic import ValidationError

from alerting.routes import Silence
from pipeline.rules.control import compile_rule_set, last_in_force, not_a, read_rule_set
from pipeline.rules.loader import RuleSet
from pipeline.validate import Code, Refused
from pipeline.worker.stages.evaluate import EngineHolder
from topics.catalogue import CONTROL_RULES, CONTROL_SILENCES
from topics.connection import Kafka
from topics.kafka import DeadLetters, Record, TopicReader, values
from topics.metrics import Metrics
from topics.models import RuleSetDoc, ServiceStatus

log = logging.getLogger(__name__)

#: The dead letters' ``stage`` for refused control records.
STAGE = "control"


def read_silence(key: bytes | None, raw: bytes | None) -> Silence | Refused | None:
    """The silence a ``canhbao.control.silences`` record sets, None for a tombstone (the
    silence of that key lifted), or why not. The key must be the silence's id: the
    lift is a tombstone of that key, and compaction keeps one record per key."""
    if raw is None:
        return None
    try:
        silence = Silence.model_validate_json(raw)
    except ValidationError as exc:
        return not_a("a silence", exc)
    if key is not None and key != silence.id.encode():
        shown = key.decode(errors="replace")[:80]
        return Refused(
            Code.KEY_MISMATCH,
            f"keyed {shown!r}, not by its id {silence.id!r}: its lift (a tombstone of the "
            "id) would not remove it",
            [f"id: not the record's key {shown!r}"],
        )
    return silence


async def rules_on_topic(bootstrap: Kafka) -> tuple[RuleSetDoc, RuleSet] | None:
    """:func:`last_in_force` of ``canhbao.control.rules`` as it is now (None when no
    set there compiles): a starting worker's rules. A refused record last on the topic
    must not keep every worker from starting."""
    return last_in_force(await values(bootstrap, CONTROL_RULES))


def check_control(topic: str, key: bytes | None, raw: bytes | None) -> Refused | None:
    """Why the followers refuse this control record; None when they apply it."""
    if topic == CONTROL_RULES:
        doc = read_rule_set(raw)
        if isinstance(doc, Refused):
            return doc
        rules = compile_rule_set(doc)
        return rules if isinstance(rules, Refused) else None
    if topic == CONTROL_SILENCES:
        silence = read_silence(key, raw)
        return silence if isinstance(silence, Refused) else None
    return Refused(Code.INVALID, f"{topic} is not a control topic")


# --- the stages -------------------------------------------------------------------------


class ControlCheckStage:
    """The one owner of refused control records: each record of both control topics in
    (one partition each, read in the worker app's consumer group), the refused ones out
    to ``canhbao.deadletter`` with the reason, counted in
    ``canhbao_messages_rejected_total{source_topic,stage="control"}``. The followers keep
    the rule set and silences in force; this stage only keeps the refusal."""

    def __init__(self, dead: DeadLetters) -> None:
        self.dead = dead

    async def handle(self, msg: Record, raw: bytes | None) -> None:
        refused = check_control(msg.topic, msg.key, raw)
        if refused is None:
            return
        log.warning(
            "control: %s at offset %d dead-lettered (%s): %s",
            msg.topic,
            msg.offset,
            refused.code,
            refused.reason[:500],
        )
        await self.dead.reject(msg, raw, STAGE, refused.reason, refused.errors)


class RulesControl:
    """The rule set in force: ``holder``'s engine, swapped by :meth:`apply_doc`."""

    def __init__(self, holder: EngineHolder, metrics: Metrics) -> None:
        self.holder = holder
        self.metrics = metrics
        metrics.set_active_rules(holder.engine.rules.version)

    def apply_doc(self, raw: bytes | None) -> bool:
        """Swap to the rule set in ``raw``; False (old set kept) when it is not valid.
        A refused record is logged and counted here, in every worker; the control
        check stage dead-letters it, once."""
        holder = self.holder
        reloads = self.metrics.rules_reloads
        doc = read_rule_set(raw)
        if isinstance(doc, Refused):
            reloads.labels("invalid").inc()
            log.error(
                "rules: unreadable control record, keeping %s: %s",
                holder.engine.rules.version,
                doc.reason[:500],
            )
            return False
        if doc.version == holder.engine.rules.version:
            return False
        rules = compile_rule_set(doc)
        if isinstance(rules, Refused):
            reloads.labels("invalid").inc()
            log.error(
                "rules: version %s refused, keeping %s:\n%s",
                doc.version,
                holder.engine.rules.version,
                "\n".join(rules.errors),
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
            self.apply_doc(record.value)

        async with TopicReader(bootstrap, CONTROL_RULES, apply) as reader:
            await reader.follow(asyncio.Event())
