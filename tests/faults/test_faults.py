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

from canhbao.metrics import scrape
from canhbao.receiver import Delivery, WebhookReceiver
from tests import servers
from tests.faults import pipeline as pl
from tests.faults.conftest import RESULTS, Row
from tests.integration.edges import Gateway, MqttBroker, MqttSubscriber, smtp_server
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
from topics.models import Audience, Channel, Notification, RuleSetDoc

pytestmark = pytest.mark.integration

FAULTS = {"warmup": 1, "worker": 3, "dispatch": 5, "broker": 2, "edges": 2, "fresh": 1}
CALM = pl.stations("calm", 30)  # calm readings around the triggers: the batch a kill cuts
#: Every topic that takes messages from outside canhbao's own stages.
INPUT_TOPICS = [INGEST_READINGS, INGEST_REPORTS, COMMANDS, CONTROL_RULES, CONTROL_SILENCES,
                APPROVALS, notifications_topic(Channel.WEBHOOK)]  # fmt: skip


def all_stations() -> list[str]:
    return [s for f, n in FAULTS.items() for s in pl.stations(f, n)] + CALM


class Suite:
    def __init__(self, pipe: pl.Pipeline, mqtt: MqttBroker | None, mqtt_missing: str) -> None:
        self.pipe = pipe
        self.per_warning = 0  # notifications the router makes for one drill warning
        self.mqtt = mqtt  # None when mosquitto is not installed (``mqtt_missing`` says so)
        self.mqtt_missing = mqtt_missing

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
    # The MQTT row needs Debian's mosquitto: without it (on a workstation) that row
    # says why it was skipped, and the other faults run.
    mqtt_missing = servers.skip_reason("mosquitto") or ""
    mqtt = None if mqtt_missing else MqttBroker(tmp_path / "mqtt").start()
    with pl.kafka_on_disk(tmp_path / "kafka") as kafka, smtp_server(tmp_path) as smtp:
        await create_topics(kafka.bootstrap, default_partitions=3)
        webhook = await WebhookReceiver().start()
        gateway = await Gateway().start()
        receivers = pl.Receivers(webhook, smtp, gateway)
        pipe = pl.Pipeline(kafka, tmp_path, receivers)
        suite = Suite(pipe, mqtt, mqtt_missing)
        try:
            env = {**os.environ, **pipe.env()}
            upgrade = await asyncio.to_thread(run_canhbao, "db", "upgrade", env=env)
            assert upgrade.returncode == 0, upgrade.stderr
            for name in ("worker-a", "worker-b"):
                pipe.add(name, ["worker"], **config)
            for channel in ("webhook", "email", "sms"):
                pipe.add(f"dispatch-{channel}", ["dispatch", channel], **config)
            if mqtt is not None:
                # Paced (2 a second to each loudspeaker) so that the broker's restart
                # falls in the middle of the broadcast, not after it.
                pipe.add("dispatch-loudspeaker", ["dispatch", "loudspeaker"],
                         CANHBAO_MQTT_HOST="127.0.0.1", CANHBAO_MQTT_PORT=str(mqtt.port),
                         CANHBAO_DISPATCH_RATE_PER_RECEIVER="2",
                         CANHBAO_DISPATCH_BURST_PER_RECEIVER="1", **config)  # fmt: skip
            pipe.add("record", ["record"], **config)
            await run_faults(suite, tmp_path)
        finally:
            for p in pipe.procs.values():
                p.stop()
            await webhook.stop()
            await gateway.stop()
            if mqtt is not None:
                mqtt.stop()
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

    # The broker SIGKILLed just after the triggers, while the stages work on them (a
    # power cut: no clean shutdown, nothing flushed by the broker itself), started
    # again 5 s later on the same logs, which it recovers first; every client must
    # reconnect by itself. It replaces the clean stop the suite had: a SIGKILL is the
    # harder case of the same fault, and the CI time of both is not worth it.
    t = time.monotonic()
    await suite.trigger("broker")
    await asyncio.to_thread(pipe.kafka.kill)
    await asyncio.sleep(5)
    await asyncio.to_thread(pipe.kafka.start)
    await suite.check("broker", "broker SIGKILLed mid-run, restarted on its logs", t, 240)

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

    await mqtt_fault(suite)

    # Poison on every input topic: bad bytes, a wrong schema version, a huge value.
    t = time.monotonic()
    poison = poison_messages()
    for topic, items in poison.items():
        await pl.send(pipe.bootstrap, topic, [(b"poison", v) for _, v in items])
    await poison_check(suite, poison, t)

    # A worker restarted after the poison, whose last record on canhbao.control.rules
    # is refused, starts with the rule set in force (it used to stop at its start).
    worker = pipe.procs["worker-b"]
    worker.stop()
    worker.start()
    port = int(worker.env["CANHBAO_METRICS_PORT"])
    await pl.wait(lambda: not worker.alive() or scrape(port) is not None, 120, "worker-b")

    # After all of it, a fresh reading still raises its warning, delivered and recorded.
    t = time.monotonic()
    await suite.trigger("fresh")
    await suite.check("fresh", "after every fault and a worker restarted after the poison: "
                      "a fresh reading", t)  # fmt: skip


MQTT_FAULT = "MQTT broker (mosquitto) stopped mid-dispatch, restarted 10 s later"
#: A citizen broadcast's loudspeaker messages: 5 warnings, the loudspeakers of 8 communes.
MQTT_WARNINGS, MQTT_COMMUNES = 5, 8


def loudspeaker_notes() -> list[Notification]:
    """The loudspeaker messages of approved broadcasts, as the approval stage puts them
    on ``canhbao.notifications.loudspeaker`` (the route and approval stages are proven
    by the rows above; this row is about the channel)."""
    return [
        Notification(
            notification_id=f"faults.fault-mqtt-{w}:v1:loa-c{c}:loudspeaker",
            warning_id=f"faults.fault-mqtt-{w}:fault-mqtt-{w}",
            warning_version=1,
            receiver_id=f"loa-c{c}",
            channel=Channel.LOUDSPEAKER,
            audience=Audience.CITIZEN,
            address=f"canhbao/loa/fault-mqtt/c{c}",
            exercise=True,
            body="Diễn tập: nước sông dâng cao, người dân ven sông di chuyển lên chỗ cao.",
            payload={"siren": w == 0},
        )
        for w in range(MQTT_WARNINGS)
        for c in range(MQTT_COMMUNES)
    ]


async def mqtt_fault(suite: Suite) -> None:
    """The MQTT broker stopped while a broadcast's loudspeaker messages go out (after
    the 8th arrived), started again 10 s later: every message reaches the loudspeakers
    exactly once by its id (a repeat the MQTT broker sends, QoS 1 being at least once,
    is dropped by the loudspeaker by its id: counted apart) and is in the record."""
    pipe, mqtt = suite.pipe, suite.mqtt
    row = Row(MQTT_FAULT)
    notes = loudspeaker_notes()
    row.expected = f"{len(notes)} loudspeaker notifications"
    if mqtt is None:
        row.skipped = suite.mqtt_missing
        RESULTS.append(row)
        return
    speakers = await MqttSubscriber(mqtt.port, "canhbao/loa/fault-mqtt/#").start()
    stopping = asyncio.Event()

    def on_message(_: str) -> None:
        if len(speakers.received) >= 8:
            stopping.set()

    speakers.on_message = on_message
    ids = {n.notification_id for n in notes}
    t = time.monotonic()
    try:
        await pl.send(pipe.bootstrap, notifications_topic(Channel.LOUDSPEAKER),
                      [(n.receiver_id.encode(), n.to_bytes()) for n in notes])  # fmt: skip
        await pl.wait(stopping.is_set, 120, "the first loudspeaker messages")
        await asyncio.to_thread(mqtt.stop)
        before = len(speakers.received)
        await asyncio.sleep(10)
        await asyncio.to_thread(mqtt.start)
        deadline = time.monotonic() + 150
        while True:
            if ids <= set(speakers.received) and ids <= pipe.recorded_notifications("mqtt"):
                row.recovery_s = round(time.monotonic() - t, 1)
                break
            if time.monotonic() > deadline:
                row.problems.append("not complete after 150 s")
                break
            await asyncio.sleep(1)
        await asyncio.sleep(3)  # late repeats
    finally:
        await speakers.stop()
    got = speakers.received
    row.delivered = len(ids & set(got))
    row.dropped = sum(got[i] - 1 for i in ids if got[i] > 1)
    if before >= len(ids):
        row.problems.append("every message was out before the broker stopped: no fault")
    lost = sorted(ids - set(got))
    if lost:
        row.problems.append(f"not delivered: {lost}")
    strangers = sorted(set(got) - ids)
    if strangers:
        row.problems.append(f"messages nobody sent: {strangers}")
    unrecorded = ids - pipe.recorded_notifications("mqtt")
    if unrecorded:
        row.problems.append(f"notifications missing from the record: {sorted(unrecorded)}")
    dead = pipe.dead()
    if dead:
        row.problems.append("processes exited: " + " ".join(dead))
    RESULTS.append(row)


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
    # A well-formed rule set that does not compile: every worker refuses it and keeps
    # the drill rules (the fresh reading afterwards proves it); it is dead-lettered once.
    broken = RuleSetDoc(
        version="faults-broken", sources={"faults.yaml": "rules:\n  - id: faults.broken\n"},
        applied_by="fault suite", comment="a rule set that does not compile",
    )  # fmt: skip
    # First: the last record on the rules topic stays one that is not a rule set at all.
    out[CONTROL_RULES].insert(0, ("rule set that does not compile", broken.to_bytes()))
    return out


async def poison_check(
    suite: Suite, poison: dict[str, list[tuple[str, bytes]]], started: float
) -> None:
    sent = {v: (topic, kind) for topic, items in poison.items() for kind, v in items}
    row = Row("poison: bad bytes, schema version 99, 600 kB value on each of "
              f"{len(poison)} input topics; a rule set that does not compile")  # fmt: skip
    row.expected = f"{len(sent)} dead letters"

    async def letters() -> dict[bytes, list[str]]:
        """The reasons of each poison message's dead letters."""
        found: dict[bytes, list[str]] = {}
        for d in await pl.dead_letters(suite.pipe.bootstrap):
            if d.original in sent:
                found.setdefault(d.original, []).append(d.reason)
        return found

    deadline = time.monotonic() + 90
    while True:
        if set(sent) <= set(await letters()):
            row.recovery_s = round(time.monotonic() - started, 1)
            break
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    await asyncio.sleep(3)  # a second dead letter of the same message would come late
    found = await letters()
    row.dead_lettered = f"{len(found)} of {len(sent)}"
    missing = sorted(f"{t} ({kind})" for v, (t, kind) in sent.items() if v not in found)
    if missing:
        row.problems.append(f"not dead-lettered: {missing}")
    # One dead letter per refused message, however many workers refused it.
    twice = sorted(f"{sent[v][0]} ({sent[v][1]}) ×{len(r)}" for v, r in found.items() if len(r) > 1)
    if twice:
        row.problems.append(f"dead-lettered more than once: {twice}")
    unexplained = [sent[v] for v, reasons in found.items() if not all(r.strip() for r in reasons)]
    if unexplained:
        row.problems.append(f"dead letters without a reason: {unexplained}")
    dead = suite.pipe.dead()
    if dead:
        row.problems.append("processes exited: " + " ".join(dead))
    RESULTS.append(row)
