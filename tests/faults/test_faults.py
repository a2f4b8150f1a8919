"""Faults injected into a running pipeline on Apache Kafka (on-disk logs), each into a
scenario whose warnings and notifications are known, then counted at the receivers and
in the record: every expected warning state recorded once (by id and version), every
notification delivered once to its receiver, every refused message dead-lettered with
its reason, and the pipeline still processing afterwards. The results table is printed
at the end of the run (see conftest.py) and kept in RELIABILITY.md.

One pipeline session serves every fault, one after the other, each on stations of its
own: faults on different components (a dispatcher and the recorder) share a scenario."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from canhbao.receiver import Delivery, WebhookReceiver
from tests.faults import pipeline as pl
from tests.faults.conftest import RESULTS, Row
from tests.integration.edges import Gateway, smtp_server
from tests.integration.helpers import run_canhbao
from topics.admin import create_topics
from topics.catalogue import (
    APPROVALS,
    COMMANDS,
    CONTROL_RULES,
    CONTROL_SILENCES,
    INGEST_READINGS,
    INGEST_REPORTS,
    notifications_topic,
)
from topics.models import Channel

pytestmark = pytest.mark.integration

FAULTS = {"warmup": 1, "worker": 3, "dispatch": 5, "broker": 2, "edges": 2, "fresh": 1}
CALM = pl.stations("calm", 30)  # calm readings around the triggers: the batch a kill cuts
#: Known defect, reported and not yet fixed: every worker reads the two control topics
#: whole, without a consumer group, and skips (logs, counts) an unreadable record there
#: instead of dead-lettering it. The row says so; it does not fail the suite.
NOT_DEAD_LETTERED_YET = {CONTROL_RULES, CONTROL_SILENCES}
#: Every topic that takes messages from outside canhbao's own stages.
INPUT_TOPICS = [INGEST_READINGS, INGEST_REPORTS, COMMANDS, CONTROL_RULES, CONTROL_SILENCES,
                APPROVALS, notifications_topic(Channel.WEBHOOK)]  # fmt: skip


def all_stations() -> list[str]:
    return [s for f, n in FAULTS.items() for s in pl.stations(f, n)] + CALM


class Suite:
    def __init__(self, pipe: pl.Pipeline) -> None:
        self.pipe = pipe
        self.per_warning = 0  # notifications the router makes for one drill warning

    async def trigger(self, fault: str, calm_batch: int = 0) -> None:
        """A batch of calm readings with the fault's triggers in the middle of it."""
        batch = [(s.encode(), pl.reading(s, 0.2)) for s in CALM for _ in range(calm_batch // 30)]
        triggers = [(s.encode(), pl.reading(s, 2.0)) for s in pl.stations(fault, FAULTS[fault])]
        half = len(batch) // 2
        await pl.send(self.pipe.bootstrap, INGEST_READINGS, batch[:half] + triggers + batch[half:])

    async def check(self, fault: str, label: str, started: float, timeout: float = 150) -> Row:
        """Wait until the fault's warnings are recorded and its notifications delivered
        (or ``timeout``), then count, allowing 3 s more for late duplicates."""
        pipe, rx = self.pipe, self.pipe.receivers
        n = FAULTS[fault]
        want = {(pl.warning_id(s), 1) for s in pl.stations(fault, n)}
        row = Row(label)
        deadline = time.monotonic() + timeout
        notes: set[str] = set()
        while True:
            notes = await pl.notifications(pipe.bootstrap, fault)
            recorded = pipe.recorded_warnings(fault)
            delivered = rx.delivered()
            complete = (
                want <= set(recorded)
                and (not self.per_warning or len(notes) >= self.per_warning * n)
                and notes
                and all(delivered[x] >= 1 for x in notes)
                and notes <= pipe.recorded_notifications(fault)
            )
            if complete:
                row.recovery_s = round(time.monotonic() - started, 1)
                break
            if time.monotonic() > deadline:
                row.problems.append(f"not complete after {timeout:.0f} s")
                break
            await asyncio.sleep(1)
        await asyncio.sleep(3)
        notes = await pl.notifications(pipe.bootstrap, fault)
        delivered = rx.delivered()
        recorded = pipe.recorded_warnings(fault)
        on_topic = await pl.warning_states(pipe.bootstrap, fault)
        if fault == "warmup":
            self.per_warning = len(notes)
        row.expected = f"{n} warnings, {self.per_warning * n} notifications"
        row.delivered = sum(1 for x in notes if delivered[x] >= 1)
        keys = set(notes)
        row.duplicates = sum(delivered[x] - 1 for x in keys if delivered[x] > 1)
        # Repeats the webhook receiver recognised by their Idempotency-Key and dropped
        # (the request in flight at a dispatcher's kill: README, "Delivery guarantee").
        row.dropped = sum(1 for k in rx.webhook_repeats if k in keys)
        if set(recorded) != want:
            row.problems.append(f"record holds {sorted(recorded)}, expected {sorted(want)}")
        if set(on_topic) != want:
            row.problems.append(f"canhbao.warnings holds {dict(on_topic)}, expected {want}")
        copies = {k: c for k, c in on_topic.items() if c > 1}
        if copies:
            row.problems.append(f"warning states published more than once: {copies}")
        if len(notes) != self.per_warning * n:
            row.problems.append(
                f"{len(notes)} notifications routed, expected {self.per_warning * n}"
            )
        lost = sorted(x for x in notes if delivered[x] == 0)
        if lost:
            row.problems.append(f"not delivered: {lost}")
        twice = {x: delivered[x] for x in notes if delivered[x] > 1}
        if twice:
            row.problems.append(f"accepted more than once at a receiver: {twice}")
        missing = notes - pipe.recorded_notifications(fault)
        if missing:
            row.problems.append(f"notifications missing from the record: {sorted(missing)}")
        dead = pipe.dead()
        if dead:
            row.problems.append("processes exited: " + " ".join(dead))
        RESULTS.append(row)
        return row


async def test_faults_on_apache_kafka(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    kinds = str(request.config.getoption("broker")).split(",")
    if "kafka" not in kinds:
        pytest.skip(
            "the fault suite runs on Apache Kafka (--broker kafka): it restarts the broker "
            "and counts on its on-disk logs, and the embedded Tansu keeps memory only"
        )
    config = pl.drill_config(tmp_path, all_stations())
    with pl.kafka_on_disk(tmp_path / "kafka") as kafka, smtp_server(tmp_path) as smtp:
        await create_topics(kafka.bootstrap, default_partitions=3)
        webhook = await WebhookReceiver().start()
        gateway = await Gateway().start()
        receivers = pl.Receivers(webhook, smtp, gateway)
        pipe = pl.Pipeline(kafka, tmp_path, receivers)
        suite = Suite(pipe)
        try:
            env = {**os.environ, **pipe.env()}
            upgrade = await asyncio.to_thread(run_canhbao, "db", "upgrade", env=env)
            assert upgrade.returncode == 0, upgrade.stderr
            for name in ("worker-a", "worker-b"):
                pipe.add(name, ["worker"], **config)
            for channel in ("webhook", "email", "sms"):
                pipe.add(f"dispatch-{channel}", ["dispatch", channel], **config)
            pipe.add("record", ["record"], **config)
            await run_faults(suite, tmp_path)
        finally:
            for p in pipe.procs.values():
                p.stop()
            await webhook.stop()
            await gateway.stop()
    bad = [r for r in RESULTS if r.problems]
    assert not bad, "\n".join(f"{r.fault}: {r.problems}" for r in bad)


async def run_faults(suite: Suite, tmp: Path) -> None:
    pipe, rx = suite.pipe, suite.pipe.receivers

    # No fault: how many notifications one drill warning makes, and the pipeline is up.
    t = time.monotonic()
    await suite.trigger("warmup")
    row = await suite.check("warmup", "none (warm-up)", t, timeout=180)
    assert suite.per_warning > 0, row.problems

    # A worker SIGKILLed in the middle of a batch; the other takes its partitions over
    # until it is started again.
    t = time.monotonic()
    sending = asyncio.create_task(suite.trigger("worker", calm_batch=600))
    await asyncio.sleep(0.3)
    pipe.procs["worker-a"].kill()
    await sending
    await asyncio.sleep(2)
    pipe.procs["worker-a"].start()
    await suite.check("worker", "worker SIGKILLed mid-batch (1 of 2), restarted", t)

    # The webhook dispatcher SIGKILLed just after a delivery (mid-batch), and the
    # recorder SIGKILLed while it writes the same warnings: both started again.
    killed: list[str] = []
    base = len(rx.webhook.deliveries)

    def on_delivery(d: Delivery) -> None:
        n = len(rx.webhook.deliveries) - base
        if n == 3 and "record" not in killed:
            killed.append("record")
            pipe.procs["record"].kill()
        if n == 6 and "dispatch" not in killed:
            killed.append("dispatch")
            asyncio.get_running_loop().call_later(0.003, pipe.procs["dispatch-webhook"].kill)

    rx.webhook.on_delivery = on_delivery
    rx.webhook.delay = 0.05
    t = time.monotonic()
    await suite.trigger("dispatch")
    await pl.wait(lambda: len(killed) == 2, 120, "the dispatcher and recorder kills")
    rx.webhook.on_delivery = None
    rx.webhook.delay = 0
    await asyncio.sleep(1)
    pipe.procs["record"].start()
    pipe.procs["dispatch-webhook"].start()
    row = await suite.check("dispatch", "dispatcher SIGKILLed mid-batch + recorder "
                            "SIGKILLed mid-transaction, both restarted", t)  # fmt: skip

    # The broker stopped just after the triggers, started again 5 s later on the same
    # logs; every client must reconnect by itself. (A clean stop: after a SIGKILL the
    # broker recovers every log first, which on a busy CI machine takes minutes.)
    t = time.monotonic()
    await suite.trigger("broker")
    await asyncio.to_thread(pipe.kafka.stop)
    await asyncio.sleep(5)
    await asyncio.to_thread(pipe.kafka.start)
    await suite.check("broker", "broker stopped mid-run, restarted on its logs", t, 240)

    # The edges fail together (different dispatchers): the agencies' webhook receiver
    # down for 30 s, the SMTP server refusing (451) for 30 s, the SMS gateway answering
    # 500 and then not answering at all (the client times out) before it recovers.
    port = rx.webhook.port
    await rx.webhook.stop()
    rx.smtp.refusing = True
    rx.gateway.failures = ["500", "500", "hang", "hang"]
    t = time.monotonic()
    await suite.trigger("edges")
    await asyncio.sleep(30)
    rx.webhook = await WebhookReceiver(port=port).start()
    rx.smtp.refusing = False
    await suite.check("edges", "webhook receiver down 30 s; SMTP 451 for 30 s; SMS "
                      "gateway 500 ×2 then timing out ×2", t, 200)  # fmt: skip

    # Poison on every input topic: bad bytes, a wrong schema version, a huge value.
    t = time.monotonic()
    poison = poison_messages()
    for topic, items in poison.items():
        await pl.send(pipe.bootstrap, topic, [(b"poison", v) for _, v in items])
    await poison_check(suite, poison, t)

    # After all of it, a fresh reading still raises its warning, delivered and recorded.
    t = time.monotonic()
    await suite.trigger("fresh")
    await suite.check("fresh", "after every fault: a fresh reading", t)


def poison_messages() -> dict[str, list[tuple[str, bytes]]]:
    good = json.loads(pl.reading("fault-fresh-0", 0.2))
    out: dict[str, list[tuple[str, bytes]]] = {}
    for topic in INPUT_TOPICS:
        wrong = {**good, "schema_version": 99, "poison_topic": topic}
        huge = {**good, "poison_topic": topic, "station_id": "x" * 600_000}
        out[topic] = [
            ("bad bytes", b"\xff\xfe\x00not json " + topic.encode()),
            ("wrong schema version", json.dumps(wrong).encode()),
            ("huge value (600 kB)", json.dumps(huge).encode()),
        ]
    return out


async def poison_check(
    suite: Suite, poison: dict[str, list[tuple[str, bytes]]], started: float
) -> None:
    sent = {v: (topic, kind) for topic, items in poison.items() for kind, v in items}
    row = Row("poison: bad bytes, schema version 99, 600 kB value on each of "
              f"{len(poison)} input topics")  # fmt: skip
    row.expected = f"{len(sent)} dead letters"
    deadline = time.monotonic() + 90
    found: dict[bytes, list[str]] = {}
    while True:
        found = {}
        for d in await pl.dead_letters(suite.pipe.bootstrap):
            if d.original in sent:
                found.setdefault(d.original, []).append(d.reason)
        # (Not waiting for the control topics' poison, which is never dead-lettered yet.)
        if all(v in found for v, (t, _) in sent.items() if t not in NOT_DEAD_LETTERED_YET):
            row.recovery_s = round(time.monotonic() - started, 1)
            break
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    row.dead_lettered = f"{len(found)} of {len(sent)}"
    missing = [sent[v] for v in sent if v not in found]
    known = sorted({t for t, _ in missing if t in NOT_DEAD_LETTERED_YET})
    if known:
        row.dead_lettered += f" (known defect: {', '.join(known)} only logged and skipped)"
    other = sorted(f"{t} ({kind})" for t, kind in missing if t not in NOT_DEAD_LETTERED_YET)
    if other:
        row.problems.append(f"not dead-lettered: {other}")
    unexplained = [sent[v] for v, reasons in found.items() if not all(r.strip() for r in reasons)]
    if unexplained:
        row.problems.append(f"dead letters without a reason: {unexplained}")
    dead = suite.pipe.dead()
    if dead:
        row.problems.append("processes exited: " + " ".join(dead))
    RESULTS.append(row)
