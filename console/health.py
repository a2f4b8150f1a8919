"""The console's Kafka reads for the health and rules pages: consumer lag per group and
topic (the groups' committed offsets against the partitions' end offsets, as the
console's lag monitor last measured them) and the rule set in force on
``canhbao.control.rules``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import asdict
from typing import Any

from topics.connection import Kafka
from topics.kafka import rules_in_force
from topics.lag import LagMonitor
from topics.models import RuleSetDoc

log = logging.getLogger(__name__)


class MonitoredLag:
    """The lag the console's own :class:`~topics.lag.LagMonitor` measured last (every
    few seconds, for its gauge too): the page does not ask Kafka again on each view."""

    def __init__(self, monitor: LagMonitor, wait: float = 10.0) -> None:
        self.monitor = monitor
        self.wait = wait

    async def lag(self) -> list[dict[str, Any]]:
        if not self.monitor.measured.is_set():  # the console just started: one moment
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.monitor.measured.wait(), self.wait)
        if self.monitor.measured_at is None:
            raise RuntimeError("consumer lag not measured yet: is the broker reachable?")
        return [asdict(row) for row in self.monitor.rows]


class KafkaRules:
    def __init__(self, bootstrap: Kafka) -> None:
        self.bootstrap = bootstrap

    async def in_force(self) -> RuleSetDoc | None:
        return await rules_in_force(self.bootstrap)
