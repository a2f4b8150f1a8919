"""One broker of three lost: the pipeline on a local three-node Apache Kafka cluster
(``infra/kafka/cluster.sh``), its topics with replication factor 3 and
``min.insync.replicas`` 2, and the broker leading the readings' first partition
SIGKILLed while a batch with warnings in it is being processed. Counted at the webhook
receiver and in the record, as the rest of the fault suite counts: every expected
warning once, every webhook notification once, and a fresh reading afterwards still
raises its warning. Apache Kafka only (the embedded Tansu is one process)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from canhbao.broker import free_port
from canhbao.receiver import WebhookReceiver
from canhbao.settings import REPO_ROOT
from tests.faults import pipeline as pl
from tests.faults.conftest import RESULTS, Row
from tests.integration.edges import Gateway, smtp_server
from tests.integration.helpers import run_canhbao
from topics.admin import create_topics
from topics.catalogue import INGEST_READINGS, notifications_topic
from topics.models import Channel, Notification

pytestmark = pytest.mark.integration

SCENARIO = {"cwarm": 1, "cluster": 3, "cfresh": 1}  # stations per step
CALM = pl.stations("ccalm", 12)  # calm readings around the triggers
NODES = (1, 2, 3)


class LocalCluster:
    """The three nodes of ``infra/kafka/cluster.sh`` on free ports, state in a folder."""

    def __init__(self, state: Path) -> None:
        ports = [free_port() for _ in range(6)]
        self.env = {
            **os.environ,
            "KAFKA_CLUSTER_DIR": str(state),
            "KAFKA_CLUSTER_PORTS": ",".join(map(str, ports[:3])),
            "KAFKA_CLUSTER_CONTROLLER_PORTS": ",".join(map(str, ports[3:])),
            # Three JVMs on a small machine: small heaps.
            "KAFKA_HEAP_OPTS": "-Xms128m -Xmx512m",
            "KAFKA_LIB_DIR": os.environ.get("KAFKA_LIB_DIR", str(REPO_ROOT / ".kafka" / "lib")),
            "KAFKA_START_TIMEOUT": "240",
            # Their data is thrown away after the test: no need for a clean shutdown.
            "KAFKA_STOP_TIMEOUT": "5",
        }
        self.ports = ports[:3]
        self.bootstrap = ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [str(REPO_ROOT / "infra/kafka/cluster.sh"), *args],
            env=self.env, capture_output=True, text=True, timeout=400,
        )  # fmt: skip
        if done.returncode != 0:
            pytest.fail(f"cluster.sh {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def node_of(self, port: int) -> int:
        return self.ports.index(port) + 1


@contextlib.contextmanager
def three_brokers(state: Path) -> Iterator[LocalCluster]:
    cluster = LocalCluster(state)
    try:
        cluster.run("start")
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            cluster.run("stop")


async def leader_of(bootstrap: str, topic: str, partition: int) -> int:
    """The broker id (= node) leading ``topic``'s ``partition``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        for p in described["partitions"]:
            if p["partition"] == partition:
                assert len(p["replicas"]) == 3, p  # three copies, as created
                return int(p["leader"])
    finally:
        await admin.close()
    raise AssertionError(f"{topic}[{partition}] not described")


async def webhook_notifications(bootstrap: str, prefix: str) -> set[str]:
    out: set[str] = set()
    for _, v in await pl.read_all(bootstrap, [notifications_topic(Channel.WEBHOOK)]):
        n = Notification.model_validate_json(v)
        if n.warning_id.startswith(f"faults.fault-{prefix}-"):
            out.add(n.notification_id)
    return out


async def trigger(bootstrap: str, step: str, calm: int = 0) -> None:
    batch = [(s.encode(), pl.reading(s, 0.2)) for _ in range(calm) for s in CALM]
    triggers = [(s.encode(), pl.reading(s, 2.0)) for s in pl.stations(step, SCENARIO[step])]
    half = len(batch) // 2
    await pl.send(bootstrap, INGEST_READINGS, batch[:half] + triggers + batch[half:])


async def check(
    pipe: pl.Pipeline, step: str, label: str, started: float, per: int, settle: float = 3.0
) -> Row:
    """Wait until the step's warnings are recorded and its webhook notifications
    delivered, then count (``settle`` s more for late repeats)."""
    n = SCENARIO[step]
    want = {(pl.warning_id(s), 1) for s in pl.stations(step, n)}
    row = Row(label)
    deadline = time.monotonic() + 120
    while True:
        notes = await webhook_notifications(pipe.bootstrap, step)
        delivered = pipe.receivers.delivered()
        if (
            want <= set(pipe.recorded_warnings(step))
            and notes
            and (not per or len(notes) >= per * n)
            and all(delivered[x] >= 1 for x in notes)
        ):
            row.recovery_s = round(time.monotonic() - started, 1)
            break
        if time.monotonic() > deadline:
            row.problems.append("not complete after 120 s")
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(settle)
    notes = await webhook_notifications(pipe.bootstrap, step)
    delivered = pipe.receivers.delivered()
    recorded = pipe.recorded_warnings(step)
    on_topic = await pl.warning_states(pipe.bootstrap, step)
    per = per or len(notes)
    row.expected = f"{n} warnings, {per * n} webhook notifications"
    row.delivered = sum(1 for x in notes if delivered[x] >= 1)
    row.duplicates = sum(delivered[x] - 1 for x in notes if delivered[x] > 1)
    row.dropped = sum(1 for k in pipe.receivers.webhook_repeats if k in notes)
    if set(recorded) != want or any(c > 1 for c in recorded.values()):
        row.problems.append(f"record holds {dict(recorded)}, expected {sorted(want)} once each")
    if set(on_topic) != want or any(c > 1 for c in on_topic.values()):
        row.problems.append(f"canhbao.warnings holds {dict(on_topic)}, expected {want} once each")
    if len(notes) != per * n:
        row.problems.append(f"{len(notes)} webhook notifications routed, expected {per * n}")
    lost = sorted(x for x in notes if delivered[x] == 0)
    if lost:
        row.problems.append(f"not delivered: {lost}")
    twice = {x: delivered[x] for x in notes if delivered[x] > 1}
    if twice:
        row.problems.append(f"accepted more than once at the receiver: {twice}")
    dead = pipe.dead()
    if dead:
        row.problems.append("processes exited: " + " ".join(dead))
    return row


async def test_one_broker_of_three_lost(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if "kafka" not in str(request.config.getoption("broker")).split(","):
        pytest.skip("three Apache Kafka brokers (--broker kafka): Tansu is one process")
    stations = [s for step, n in SCENARIO.items() for s in pl.stations(step, n)] + CALM
    config = pl.drill_config(tmp_path, stations)
    with three_brokers(tmp_path / "cluster") as cluster, smtp_server(tmp_path) as smtp:
        webhook = await WebhookReceiver().start()
        gateway = await Gateway().start()
        pipe = pl.Pipeline(cast(Any, cluster), tmp_path, pl.Receivers(webhook, smtp, gateway))
        replicated = {"CANHBAO_REPLICATION_FACTOR": "3", "CANHBAO_MIN_INSYNC_REPLICAS": "2"}
        rows: list[Row] = []
        try:
            # The record's schema while the topics are made (one does not need the other).
            env = {**os.environ, **pipe.env()}
            upgrading = asyncio.create_task(
                asyncio.to_thread(run_canhbao, "db", "upgrade", env=env)
            )
            report = await create_topics(
                cluster.bootstrap, default_partitions=3, replication_factor=3,
                min_insync_replicas=2,
            )  # fmt: skip
            assert report.created  # a fresh cluster: every topic made here, with 3 copies
            upgrade = await upgrading
            assert upgrade.returncode == 0, upgrade.stderr
            pipe.add("worker", ["worker"], **config, **replicated)
            pipe.add("dispatch-webhook", ["dispatch", "webhook"], **config, **replicated)
            pipe.add("record", ["record"], **config, **replicated)

            t = time.monotonic()
            await trigger(cluster.bootstrap, "cwarm")
            warm = await check(pipe, "cwarm", "none (three brokers, warm-up)", t, 0, settle=0)
            assert not warm.problems, warm.problems
            per = warm.delivered  # webhook notifications one drill warning makes

            # The leader of the readings' first partition SIGKILLed while the batch
            # with the triggers is being produced and processed.
            victim = await leader_of(cluster.bootstrap, INGEST_READINGS, 0)
            t = time.monotonic()
            sending = asyncio.create_task(trigger(cluster.bootstrap, "cluster", calm=40))
            await asyncio.sleep(0.3)
            await asyncio.to_thread(cluster.run, "kill", str(victim))
            await sending
            row = await check(
                pipe, "cluster",
                f"one broker of three SIGKILLed mid-batch (RF 3, min.insync.replicas 2; "
                f"node {victim}, leader of {INGEST_READINGS}[0]), not restarted",
                t, per,
            )  # fmt: skip
            rows.append(row)

            # On the two brokers left: a fresh reading still raises its warning.
            t = time.monotonic()
            await trigger(cluster.bootstrap, "cfresh")
            rows.append(
                await check(pipe, "cfresh", "one broker of three lost: a fresh reading", t, per)
            )
        finally:
            for p in pipe.procs.values():
                p.stop()
            await webhook.stop()
            await gateway.stop()
            RESULTS.extend(rows)
    bad = [r for r in rows if r.problems]
    assert not bad, "\n".join(f"{r.fault}: {r.problems}" for r in bad)
