"""Scale-out: two workers in one consumer group split the partitions between them,
and when one exits the other takes its partitions over, state included: a warning
raised while both ran is escalated, not raised again, by the survivor."""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from canhbao.bench.rules import bench_geography
from canhbao.broker import free_port
from canhbao.metrics import scrape_counter
from tests.conftest import Broker
from tests.integration.helpers import (
    REPO,
    collect,
    ensure_topics,
    producer,
    running_worker,
    wait_caught_up,
    worker_env,
)
from topics.catalogue import INGEST_READINGS, WARNINGS, readings_topic
from topics.models import Domain, Reading, Transition, Warning

pytestmark = pytest.mark.integration

#: The worker's two consumer groups and what each consumes (default app id).
PIPELINE = {"canhbao.validate": INGEST_READINGS, "canhbao": readings_topic(Domain.WATER)}
STATIONS = [f"scale-{i:03d}" for i in range(24)]  # keys spread over all 3 partitions
# Within the live lateness bound (6 h): older readings are history, which is refused.
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=4)


def calm(station: str, minute: int) -> bytes:
    return Reading(
        station_id=station,
        domain=Domain.WATER,
        metric="water_level_m",
        value=2.0 + 0.01 * (minute % 3),
        observed_at=T0 + timedelta(minutes=minute),
    ).to_bytes()


def river(value: float, minute: int) -> bytes:
    return Reading(
        station_id="dap-cau",
        domain=Domain.WATER,
        metric="water_level_m",
        value=value,
        observed_at=T0 + timedelta(minutes=minute),
    ).to_bytes()


def evaluated(port: int) -> float:
    """This worker's ``canhbao_readings_evaluated_total`` (0 until it serves /metrics)."""
    return scrape_counter(port, "canhbao_readings_evaluated_total") or 0.0


async def counts(*ports: int) -> list[float]:
    return [await asyncio.to_thread(evaluated, p) for p in ports]


async def test_two_workers_split_the_work_and_survive_one_exit(
    broker: Broker, tmp_path: Path
) -> None:
    if broker.kind != "kafka":
        pytest.skip("the scale-out test runs on Apache Kafka (issue: two workers on Kafka)")
    await ensure_topics(broker.bootstrap)
    port_a, port_b = free_port(), free_port()
    # The test's stations must be in the geography, or the validate stage refuses them.
    geography = str(bench_geography(REPO / "config" / "geography.yaml", tmp_path, STATIONS))
    env_a = worker_env(
        broker.bootstrap,
        broker.kind,
        CANHBAO_METRICS_PORT=str(port_a),
        CANHBAO_GEOGRAPHY_PATH=geography,
    )
    env_b = worker_env(
        broker.bootstrap,
        broker.kind,
        CANHBAO_METRICS_PORT=str(port_b),
        CANHBAO_GEOGRAPHY_PATH=geography,
    )
    minute = 0
    with running_worker(env_a, tmp_path / "worker-a.log"):
        with running_worker(env_b, tmp_path / "worker-b.log") as b:
            # Feed calm readings until both workers have evaluated some: the group
            # has rebalanced and each owns part of the stations.
            sent = 0
            deadline = time.monotonic() + 120
            async with producer(broker.bootstrap) as p:
                while min(await counts(port_a, port_b)) == 0:
                    assert time.monotonic() < deadline, "the two workers never shared the work"
                    for s in STATIONS:
                        await p.send(INGEST_READINGS, calm(s, minute), key=s.encode())
                    sent += len(STATIONS)
                    minute += 1
                    await p.flush()
                    await asyncio.sleep(0.5)
                await p.send_and_wait(INGEST_READINGS, river(4.5, minute), key=b"dap-cau")
                sent += 1
            await collect(broker.bootstrap, WARNINGS, lambda vs: len(vs) >= 1, timeout=60)
            # Every reading handled and committed, by one worker or the other. (The
            # counters alone cannot say so: a reading read again after a rebalance
            # counts twice, which could hide one never read.)
            await wait_caught_up(broker.bootstrap, PIPELINE, 60, "two workers")
            split = await counts(port_a, port_b)
            assert sum(split) >= sent, f"{split} of {sent}"
            b.send_signal(signal.SIGTERM)  # one worker leaves (a clean exit)
            b.wait(30)
        assert b.returncode is not None
        a_before = split[0]
        # The survivor takes over every partition: all new readings are its own,
        # and it remembers dap-cau's level I wherever that state lived.
        later = 0
        async with producer(broker.bootstrap) as p:
            for s in STATIONS:
                for k in range(5):
                    await p.send(INGEST_READINGS, calm(s, minute + k), key=s.encode())
                    later += 1
            # An hour later: a 1 m rise within minutes would be set aside as a spike.
            await p.send_and_wait(INGEST_READINGS, river(5.5, minute + 65), key=b"dap-cau")
            later += 1
        values = await collect(broker.bootstrap, WARNINGS, lambda vs: len(vs) >= 2, timeout=120)
        await wait_caught_up(broker.bootstrap, PIPELINE, 60, "the surviving worker")
        taken = (await counts(port_a))[0] - a_before
        assert taken >= later, (
            f"the surviving worker did not take over: it evaluated {taken:.0f} "
            f"of the {later} new readings"
        )
    assert split[0] > 0 and split[1] > 0, f"work split between the workers: {split}"
    states = [Warning.model_validate_json(v) for v in values]
    assert [(w.version, w.transition, w.level) for w in states[:2]] == [
        (1, Transition.RAISED, 1),
        (2, Transition.ESCALATED, 2),
    ]
