"""Consumer lag, measured as Kafka's own tools measure it: each partition's end offset
minus the group's committed offset, summed per topic, into
``canhbao_consumer_lag_records{group,topic}``.

Committed offsets, not a member's position: they are what a restarted member resumes
from, they exist for every canhbao group (the Faust worker's, the aiokafka services',
the recorder's, which commits to Kafka after its database only so that lag shows), and
any process can read them, so the console can show every group's lag."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from topics.connection import Kafka, client_kwargs
from topics.metrics import Metrics

log = logging.getLogger(__name__)


def lag_by_topic(
    committed: Mapping[TopicPartition, int], ends: Mapping[TopicPartition, int]
) -> dict[str, int]:
    """Records left to read per topic. A partition with no commit yet (offset < 0) has
    not been read by the group at all: its lag is unknown to Kafka, and counting its
    whole log would page someone for a group that simply starts at the end."""
    lag: dict[str, int] = defaultdict(int)
    for tp, offset in committed.items():
        if offset < 0 or tp not in ends:
            continue
        lag[tp.topic] += max(0, ends[tp] - offset)
    return dict(lag)


class LagMonitor:
    """Measures the lag of ``groups`` (every group of the cluster when None) every
    ``interval`` seconds while running."""

    def __init__(
        self,
        bootstrap: Kafka,
        metrics: Metrics,
        groups: Sequence[str] | None = None,
        interval: float = 5.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.metrics = metrics
        self.groups = list(groups) if groups is not None else None
        self.interval = interval
        self._shown: set[tuple[str, str]] = set()
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self._admin = AIOKafkaAdminClient(**client_kwargs(self.bootstrap))
        await self._admin.start()
        self._consumer = AIOKafkaConsumer(**client_kwargs(self.bootstrap), group_id=None)
        await self._consumer.start()

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._admin is not None:
            await self._admin.close()

    async def _groups(self) -> list[str]:
        assert self._admin is not None
        if self.groups is not None:
            return self.groups
        listed = await self._admin.list_consumer_groups()
        return sorted(str(g[0]) for g in listed)

    async def measure(self) -> dict[tuple[str, str], int]:
        """One measurement, set on the gauge; (group, topic) → records left."""
        assert self._admin is not None and self._consumer is not None
        found: dict[tuple[str, str], int] = {}
        # Asked for every partition by name: Tansu cannot answer "all of the group's"
        # (a null list), and a partition the group never committed comes back as -1.
        described = await self._admin.describe_topics()
        every = [
            TopicPartition(t["topic"], p["partition"])
            for t in described
            if not t["error_code"] and not t["topic"].startswith("__")
            for p in t["partitions"]
        ]
        if not every:
            return found
        for group in await self._groups():
            offsets = await self._admin.list_consumer_group_offsets(group, partitions=every)
            committed = {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
            if not committed:
                continue
            ends = await self._consumer.end_offsets(list(committed))
            for topic, lag in lag_by_topic(committed, ends).items():
                found[(group, topic)] = lag
        gauge = self.metrics.consumer_lag
        for key, lag in found.items():
            gauge.labels(*key).set(lag)
        for gone in self._shown - found.keys():  # a group deleted, a topic no longer read
            gauge.remove(*gone)
        self._shown = set(found)
        self.metrics.consumer_lag_updated.set(time.time())
        return found

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Measure until ``stop`` is set (or cancelled); a failed measurement is logged
        and tried again, the last values kept (their timestamp tells they are old)."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                if self._admin is None:
                    await self.start()
                await self.measure()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker away for a while: measure again later
                log.warning("consumer lag: could not measure (%s); trying again", exc)
                await self.stop()
                self._admin = self._consumer = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
        await self.stop()
