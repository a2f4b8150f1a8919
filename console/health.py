"""The console's Kafka reads for the health and rules pages: consumer lag per group and
topic (the groups' committed offsets against the partitions' end offsets) and the rule
set in force on ``canhbao.control.rules``."""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from topics.connection import Kafka, client_kwargs
from topics.kafka import rules_in_force
from topics.models import RuleSetDoc

log = logging.getLogger(__name__)


def summarise_lag(
    committed: dict[str, dict[TopicPartition, int]], ends: dict[TopicPartition, int]
) -> list[dict[str, Any]]:
    """Per group and topic: the records written but not yet committed by the group
    (summed over partitions), largest first. Pure, for the tests."""
    out: list[dict[str, Any]] = []
    for group, offsets in committed.items():
        by_topic: dict[str, dict[str, int]] = defaultdict(
            lambda: {"lag": 0, "committed": 0, "end": 0, "partitions": 0}
        )
        for tp, offset in offsets.items():
            end = ends.get(tp)
            if end is None or offset < 0:
                continue
            row = by_topic[tp.topic]
            row["lag"] += max(0, end - offset)
            row["committed"] += offset
            row["end"] += end
            row["partitions"] += 1
        out.extend({"group": group, "topic": t, **v} for t, v in by_topic.items())
    return sorted(out, key=lambda r: (-r["lag"], r["group"], r["topic"]))


class KafkaLag:
    def __init__(self, bootstrap: Kafka) -> None:
        self.bootstrap = bootstrap

    async def lag(self) -> list[dict[str, Any]]:
        admin = AIOKafkaAdminClient(**client_kwargs(self.bootstrap))
        await admin.start()
        try:
            groups = [g[0] for g in await admin.list_consumer_groups()]
            # Every partition named: asking a group's offsets without naming them is
            # not answered by every broker (the embedded Tansu closes the connection).
            tps = [
                TopicPartition(t["topic"], p["partition"])
                for t in await admin.describe_topics()
                if not t["error_code"]
                for p in t["partitions"]
            ]
            committed: dict[str, dict[TopicPartition, int]] = {}
            for group in sorted(groups):
                found = await admin.list_consumer_group_offsets(group, partitions=tps)
                committed[group] = {tp: m.offset for tp, m in found.items() if m.offset >= 0}
        finally:
            await admin.close()
        if not groups or not tps:
            return []
        consumer = AIOKafkaConsumer(**client_kwargs(self.bootstrap), group_id=None)
        await consumer.start()
        try:
            ends = await consumer.end_offsets(sorted(tps))
        finally:
            await consumer.stop()
        return summarise_lag(committed, ends)


class KafkaRules:
    def __init__(self, bootstrap: Kafka) -> None:
        self.bootstrap = bootstrap

    async def in_force(self) -> RuleSetDoc | None:
        return await rules_in_force(self.bootstrap)
