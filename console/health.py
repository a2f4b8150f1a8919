"""The console's Kafka reads for the health and rules pages: consumer lag per group and
topic (the groups' committed offsets against the partitions' end offsets, as the
console's lag monitor last measured them) and the rule set in force on
``canhbao.control.rules``."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from pipeline.rules.control import last_in_force
from topics.catalogue import CONTROL_RULES
from topics.connection import Kafka
from topics.kafka import values
from topics.lag import LagMonitor
from topics.models import RuleSetDoc

log = logging.getLogger(__name__)


class MonitoredLag:
    """The lag the console's own :class:`~topics.lag.LagMonitor` measures for its gauge,
    measured again only when older than ``max_age`` seconds: the page shows what was
    just written, and many viewers do not multiply the questions put to Kafka."""

    def __init__(self, monitor: LagMonitor, max_age: float = 2.0) -> None:
        self.monitor = monitor
        self.max_age = max_age

    async def lag(self) -> list[dict[str, Any]]:
        return [asdict(row) for row in await self.monitor.latest(self.max_age)]


class KafkaRules:
    def __init__(self, bootstrap: Kafka) -> None:
        self.bootstrap = bootstrap

    async def in_force(self) -> RuleSetDoc | None:
        # The last set that compiles, as the workers apply it: a refused record last
        # on the topic (poison, a set that does not compile) is not in force.
        found = last_in_force(await values(self.bootstrap, CONTROL_RULES))
        return found[0] if found else None
