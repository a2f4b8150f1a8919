"""Play a scenario into the pipeline, time-compressed.

Scenario time is shifted so the scenario starts at the given instant (now, for a
live run) and runs ``speed`` scenario-seconds per real second. Readings go to
``canhbao.ingest.readings`` keyed by station, reports to ``canhbao.ingest.reports``
keyed by their first commune: the same topics and keys real adapters use.

The pipeline's clock (``canhbao.clock``) normally ticks on the wall clock, which a
compressed scenario outruns at once: a silent station would never look silent and a
brute-force window would never age out. So the player also ticks in scenario time,
a little behind the messages it has sent (``tick_lag`` real seconds), so that a tick
does not overtake a reading still on its way through validation. Everything the
clock drives then runs in scenario time: data gaps, windows ageing out, report
expiry, and the 30-minute approval window of citizen broadcasts. Those ticks (and
the future-dated readings) are for a drill or demo cluster, never a production one.

Every reading and report carries the drill's clock (``drill``: scenario time
``start`` at wall time ``origin``, ``speed`` times as fast). The validate stage judges
their time against that clock rather than the wall clock, so a drill is not refused
as future-dated; and the quality gate and the rules take state left by an earlier
drill, dated beyond this drill's present, for an abandoned timeline: a second run of
the same scenario on the same cluster raises its warnings again.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from aiokafka import AIOKafkaProducer

from feeds.scenarios.base import Scenario, align
from feeds.sink import Sink
from topics.catalogue import CLOCK, INGEST_READINGS, INGEST_REPORTS
from topics.connection import Kafka, client_kwargs
from topics.models import DrillClock, Reading, Tick

# A scenario played with the default speed lasts about this long.
TARGET_SECONDS = 45.0
TICK_EVERY = 1.0  # real seconds between scenario-time ticks
TICK_LAG = 2.0  # real seconds the scenario clock runs behind the messages

Kind = Literal["reading", "report", "tick", "raw"]


@dataclass(frozen=True)
class Outgoing:
    """One message to send ``at`` real seconds after the run starts."""

    at: float
    topic: str
    key: bytes | None
    value: bytes
    kind: Kind
    # Scenario time the message stands for (observed_at, or the tick's instant).
    scenario_at: datetime | None = None

    @property
    def broadcast(self) -> bool:
        """A clock tick goes to every partition: each worker ticks the keys it owns."""
        return self.kind == "tick"


def default_speed(scenario: Scenario, seconds: float = TARGET_SECONDS) -> float:
    return scenario.duration.total_seconds() / seconds


def schedule(
    scenario: Scenario,
    start: datetime,
    speed: float,
    *,
    origin: datetime | None = None,
    clock: bool = True,
    tick_every: float = TICK_EVERY,
    tick_lag: float = TICK_LAG,
) -> list[Outgoing]:
    """Everything the run sends, in sending order. ``origin`` is the wall-clock time
    the run starts at (default ``start``: a scenario dated from now); the run must not
    start before it, or its messages would be ahead of the clock they carry."""
    if speed <= 0:
        raise ValueError("speed must be positive")
    out: list[Outgoing] = []
    t0 = align(start)
    drill = DrillClock(origin=origin or start, start=t0, speed=speed)
    for item in scenario.timeline(t0):
        m = item.message.model_copy(update={"drill": drill})
        at = (item.at - t0).total_seconds() / speed
        kind: Kind
        if isinstance(m, Reading):
            key, topic, kind = m.station_id, INGEST_READINGS, "reading"
        else:
            key, topic, kind = m.areas[0], INGEST_REPORTS, "report"
        out.append(Outgoing(at, topic, key.encode(), m.to_bytes(), kind, item.at))
    if clock:
        out += list(ticks(t0, scenario.duration, speed, tick_every, tick_lag))
    # Stable: at equal times, the messages before the tick that follows them.
    return sorted(out, key=lambda o: o.at)


def ticks(
    t0: datetime, duration: timedelta, speed: float, every: float, lag: float
) -> Iterator[Outgoing]:
    end = duration.total_seconds() / speed + lag
    n = 1
    while True:
        real = min(n * every, end)
        scenario_at = t0 + timedelta(seconds=max(0.0, real - lag) * speed)
        if real - lag > 0:
            yield Outgoing(real, CLOCK, None, Tick(at=scenario_at).to_bytes(), "tick", scenario_at)
        if real >= end:
            return
        n += 1


def jsonl(items: list[Outgoing]) -> Iterator[str]:
    """The dry run: one JSON object per message, with its send offset in seconds."""
    for o in items:
        row: dict[str, Any] = {
            "send_at": round(o.at, 3),
            "topic": o.topic,
            "key": o.key.decode() if o.key is not None else None,
        }
        if o.broadcast:
            row["partitions"] = "all"
        row["value"] = json.loads(o.value)
        yield json.dumps(row, ensure_ascii=False)


class Broadcaster(Protocol):
    async def broadcast(self, topic: str, value: bytes) -> None:
        """Send ``value`` to every partition of ``topic``."""


class KafkaBroadcaster:
    """Clock ticks, one per partition (``KafkaSink`` sends by key only)."""

    def __init__(self, bootstrap: Kafka) -> None:
        self._producer = AIOKafkaProducer(**client_kwargs(bootstrap), linger_ms=1)

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def broadcast(self, topic: str, value: bytes) -> None:
        partitions = sorted(await self._producer.partitions_for(topic))
        futures = [await self._producer.send(topic, value=value, partition=p) for p in partitions]
        for fut in futures:
            await fut


@dataclass
class MemoryBroadcaster:
    sent: list[tuple[str, bytes]]

    async def broadcast(self, topic: str, value: bytes) -> None:
        self.sent.append((topic, value))


@dataclass
class Played:
    readings: int = 0
    reports: int = 0
    ticks: int = 0
    raw: int = 0
    seconds: float = 0.0
    last: Outgoing | None = None

    def count(self, o: Outgoing) -> None:
        if o.kind == "reading":
            self.readings += 1
        elif o.kind == "report":
            self.reports += 1
        elif o.kind == "tick":
            self.ticks += 1
        else:
            self.raw += 1
        self.last = o


async def play(
    items: list[Outgoing],
    sink: Sink,
    broadcaster: Broadcaster | None = None,
    *,
    on_sent: Callable[[Played], None] | None = None,
    stop: asyncio.Event | None = None,
) -> Played:
    """Send each message at its time; messages that are due together go as one batch."""
    played = Played()
    started = time.monotonic()
    i = 0
    while i < len(items):
        if stop is not None and stop.is_set():
            break
        delay = items[i].at - (time.monotonic() - started)
        if delay > 0:
            await asyncio.sleep(delay)
        now = time.monotonic() - started
        batch: list[Outgoing] = []
        while i < len(items) and items[i].at <= now:
            batch.append(items[i])
            i += 1
        await _send(batch, sink, broadcaster)
        for o in batch:
            played.count(o)
        if on_sent is not None:
            on_sent(played)
    played.seconds = time.monotonic() - started
    return played


async def _send(batch: list[Outgoing], sink: Sink, broadcaster: Broadcaster | None) -> None:
    # Keep the order: a tick goes only after the messages sent before it are acknowledged.
    pending: list[tuple[str, bytes | None, bytes]] = []
    for o in batch:
        if o.broadcast:
            if pending:
                await sink.send_many(pending)
                pending = []
            if broadcaster is not None:
                await broadcaster.broadcast(o.topic, o.value)
        else:
            pending.append((o.topic, o.key, o.value))
    if pending:
        await sink.send_many(pending)
