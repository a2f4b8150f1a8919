"""End-to-end latency: a probe reading's produce time → its warning's webhook delivery
at a local receiver, while calm readings are offered at a fixed rate around it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from canhbao.bench.load import PROBE_METRIC, PROBE_STATION, reading
from canhbao.receiver import Delivery
from topics.catalogue import INGEST_READINGS
from topics.connection import Kafka, client_kwargs

TICK = 0.01  # seconds between sends of calm readings
PROBES_PER_SECOND = 5
DRAIN_SECONDS = 10.0
# The worker kept up with an offered load when it evaluated at least this share of
# it while it was offered: below, a backlog grows and latency with it.
KEPT_UP = 0.95


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


@dataclass
class Probes:
    """Probe values are unique, so a delivery names the probe that caused it."""

    sent_at: dict[float, float] = field(default_factory=dict)
    latencies: dict[float, list[float]] = field(default_factory=dict)
    counter: itertools.count[int] = field(default_factory=itertools.count)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def next_value(self) -> float:
        n = next(self.counter)
        # Alternate above the raise level (1.0) and below the clear level (0.5).
        return (2.0 if n % 2 == 0 else 0.0) + n * 1e-6

    def on_delivery(self, d: Delivery) -> None:
        value = _evidence_value(d.body)
        if value is None or value not in self.sent_at:
            return
        self.latencies.setdefault(value, []).append(time.time() - self.sent_at[value])
        self.changed.set()


def _evidence_value(body: dict[str, Any]) -> float | None:
    warning = body.get("warning") or {}
    for ev in warning.get("evidence") or []:
        if ev.get("metric") == PROBE_METRIC:
            return float(ev["value"])
    return None


@dataclass
class LoadResult:
    offered_per_second: int
    achieved_per_second: float
    probes: int
    delivered: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    # readings the worker evaluated per second while the load was offered (its own
    # counter), and whether that kept pace with what was sent
    evaluated_per_second: float | None = None
    kept_up: bool | None = None


async def run_load(
    bootstrap: Kafka,
    stations: list[str],
    rate: int,
    seconds: float,
    probes: Probes,
    evaluated: Callable[[], Awaitable[float | None]] | None = None,
) -> LoadResult:
    producer = AIOKafkaProducer(**client_kwargs(bootstrap), linger_ms=1, acks=1)
    await producer.start()
    before = await evaluated() if evaluated is not None else None
    first_probe = len(probes.sent_at)
    sent = 0
    cycle = itertools.cycle(stations)
    k = 0
    try:
        t0 = time.perf_counter()
        next_probe = t0
        pending: list[asyncio.Future[Any]] = []
        while (elapsed := time.perf_counter() - t0) < seconds:
            due = int(elapsed * rate) - sent
            now = datetime.now(UTC)
            for _ in range(max(0, due)):
                station = next(cycle)
                value = 2.0 + 0.001 * (k % 3)
                k += 1
                pending.append(
                    await producer.send(
                        INGEST_READINGS, reading(station, value, now), key=station.encode()
                    )
                )
            sent += max(0, due)
            if time.perf_counter() >= next_probe:
                value = probes.next_value()
                at = datetime.now(UTC)
                probes.sent_at[value] = at.timestamp()
                await producer.send(
                    INGEST_READINGS,
                    reading(PROBE_STATION, value, at, metric=PROBE_METRIC),
                    key=PROBE_STATION.encode(),
                )
                next_probe += 1 / PROBES_PER_SECOND
            if len(pending) > 5000:
                for fut in pending:
                    await fut
                pending.clear()
            await asyncio.sleep(TICK)
        for fut in pending:
            await fut
        window = time.perf_counter() - t0
        achieved = sent / window
        after = await evaluated() if evaluated is not None else None
    finally:
        await producer.stop()
    evaluated_rate = kept_up = None
    if before is not None and after is not None:
        evaluated_rate = round((after - before) / window, 1)
        kept_up = evaluated_rate >= KEPT_UP * achieved
    wanted = set(list(probes.sent_at)[first_probe:])
    # Late deliveries still count (they are the tail); lost ones show as undelivered.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_SECONDS):
            while not wanted <= probes.latencies.keys():
                probes.changed.clear()
                await probes.changed.wait()
    # Only this load's probes: a late delivery from the previous load is not ours.
    ms = [x * 1000 for v in wanted for x in probes.latencies.get(v, [])]
    return LoadResult(
        offered_per_second=rate,
        achieved_per_second=round(achieved, 1),
        probes=len(wanted),
        delivered=len(wanted & probes.latencies.keys()),
        p50_ms=round(percentile(ms, 50), 1),
        p95_ms=round(percentile(ms, 95), 1),
        p99_ms=round(percentile(ms, 99), 1),
        max_ms=round(max(ms, default=float("nan")), 1),
        evaluated_per_second=evaluated_rate,
        kept_up=kept_up,
    )
