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
from dataclasses import dataclass

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
    return {row.topic: row.lag for row in summarise({"": committed}, ends)}


@dataclass(frozen=True)
class LagRow:
    """One group's position on one topic, summed over the partitions it committed."""

    group: str
    topic: str
    lag: int  # records written and not yet committed by the group
    committed: int
    end: int
    partitions: int


def summarise(
    committed: Mapping[str, Mapping[TopicPartition, int]], ends: Mapping[TopicPartition, int]
) -> list[LagRow]:
    """Per group and topic, largest lag first. Partitions without a commit (offset < 0)
    or without a known end are left out (see :func:`lag_by_topic`)."""
    sums: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for group, offsets in committed.items():
        for tp, offset in offsets.items():
            end = ends.get(tp)
            if end is None or offset < 0:
                continue
            row = sums[(group, tp.topic)]
            row[0] += max(0, end - offset)
            row[1] += offset
            row[2] += end
            row[3] += 1
    rows = [LagRow(g, t, *v) for (g, t), v in sums.items()]
    return sorted(rows, key=lambda r: (-r.lag, r.group, r.topic))


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
        #: The last measurement (every reader of lag shares it: the gauge, the
        #: console's health page, the soak), when it was taken, and whether it was.
        self.rows: list[LagRow] = []
        self.measured_at: float | None = None
        self.measured = asyncio.Event()
        self._lock = asyncio.Lock()  # one measurement at a time: the loop's or a reader's

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

    async def latest(self, max_age: float) -> list[LagRow]:
        """The last measurement, measured again first when it is older than ``max_age``
        seconds (a page viewed just after something was written shows it, and any
        number of viewers cost at most one measurement per ``max_age``)."""
        async with self._lock:
            if self._admin is None:
                await self.start()
            if self.measured_at is None or time.time() - self.measured_at > max_age:
                await self._measure()
        return self.rows

    async def measure(self) -> dict[tuple[str, str], int]:
        """One measurement, set on the gauge and kept in :attr:`rows`;
        (group, topic) → records left."""
        async with self._lock:
            return await self._measure()

    async def _measure(self) -> dict[tuple[str, str], int]:
        assert self._admin is not None and self._consumer is not None
        # Asked for every partition by name: Tansu cannot answer "all of the group's"
        # (a null list), and a partition the group never committed comes back as -1.
        described = await self._admin.describe_topics()
        every = [
            TopicPartition(t["topic"], p["partition"])
            for t in described
            if not t["error_code"] and not t["topic"].startswith("__")
            for p in t["partitions"]
        ]
        committed: dict[str, dict[TopicPartition, int]] = {}
        for group in await self._groups() if every else []:
            offsets = await self._admin.list_consumer_group_offsets(group, partitions=every)
            mine = {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
            if mine:
                committed[group] = mine
        wanted = sorted({tp for offsets in committed.values() for tp in offsets})
        ends = await self._consumer.end_offsets(wanted) if wanted else {}
        self.rows = summarise(committed, ends)
        found = {(r.group, r.topic): r.lag for r in self.rows}
        gauge = self.metrics.consumer_lag
        for key, lag in found.items():
            gauge.labels(*key).set(lag)
        for gone in self._shown - found.keys():  # a group deleted, a topic no longer read
            gauge.remove(*gone)
        self._shown = set(found)
        self.metrics.consumer_lag_updated.set(time.time())
        self.measured_at = time.time()
        self.measured.set()
        return found

    def by_group(self, prefixes: tuple[str, ...] = ("",)) -> dict[str, int]:
        """Records left per group whose id starts with one of ``prefixes``, as last
        measured."""
        out: dict[str, int] = defaultdict(int)
        for row in self.rows:
            if row.group.startswith(prefixes):
                out[row.group] += row.lag
        return dict(out)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Measure until ``stop`` is set (or cancelled); a failed measurement is logged
        and tried again, the last values kept (their timestamp tells they are old)."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                async with self._lock:
                    if self._admin is None:
                        await self.start()
                    await self._measure()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker away for a while: measure again later
                log.warning("consumer lag: could not measure (%s); trying again", exc)
                await self.stop()
                self._admin = self._consumer = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
        await self.stop()
