"""``canhbao demo``: one river rises at Đáp Cầu, and the whole path runs for real.

Embedded broker (unless CANHBAO_KAFKA_BOOTSTRAP is set) → topics → Faust worker
(subprocess) → webhook dispatcher → a local receiver standing in for the Dept.
of Agriculture and Environment. What happens is read back from the topics
themselves and printed as it happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from canhbao.broker import EmbeddedBroker, rebalance_timeout
from canhbao.receiver import Delivery, WebhookReceiver
from canhbao.settings import Settings
from consumers.webhook import WebhookConfig, WebhookDispatcher
from topics.admin import create_topics
from topics.catalogue import (
    DEADLETTER,
    INGEST_READINGS,
    RECEIPTS,
    WARNINGS,
    notifications_topic,
    readings_topic,
)
from topics.models import (
    Channel,
    DeadLetter,
    DeliveryOutcome,
    DeliveryReceipt,
    Domain,
    Notification,
    Reading,
    Warning,
)

STATION = "dap-cau"
# A flood wave at Đáp Cầu, hourly (metres). Alarm levels I/II/III: 4.30/5.30/6.30.
RIVER_SERIES = [
    3.60,
    3.85,
    4.10,
    4.35,
    4.70,
    5.05,
    5.38,
    5.80,
    6.20,
    6.42,
    6.61,
    6.55,
    6.35,
    6.15,
    5.70,
    5.25,
    5.10,
    4.60,
    4.15,
    3.90,
]
# Malformed input the pipeline must reject with a reason and survive.
BAD_INPUT = {
    5: b'{"station_id": "dap-cau", "metric": "water_level_m", "value": 5.0',
    12: b'{"station_id": "dap-cau", "domain": "water", "metric": "water_level_m", '
    b'"value": "high", "observed_at": "2025-10-07T08:00:00+07:00"}',
}


@dataclass
class Tally:
    sent: int = 0
    ingested: int = 0
    rejected: int = 0
    warnings: Counter[str] = field(default_factory=Counter)
    notifications: int = 0
    delivered: int = 0
    failed: int = 0
    received: int = 0
    last_event: float = field(default_factory=time.monotonic)

    def summary(self, broker: str, elapsed: float) -> dict[str, Any]:
        return {
            "broker": broker,
            "readings": {"sent": self.sent, "ingested": self.ingested, "rejected": self.rejected},
            "warnings": {"total": sum(self.warnings.values()), "by_level": dict(self.warnings)},
            "notifications": {"sent": self.notifications},
            "deliveries": {"ok": self.delivered, "failed": self.failed},
            "received_by_agency": self.received,
            "elapsed_seconds": round(elapsed, 1),
        }


class Printer:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.t0 = time.monotonic()

    def __call__(self, tag: str, text: str) -> None:
        print(f"{time.monotonic() - self.t0:6.1f}s  {tag:<9} {text}", file=self.out, flush=True)


def _reading_bytes(value: float, at: datetime) -> bytes:
    return Reading(
        station_id=STATION,
        domain=Domain.WATER,
        metric="water_level_m",
        value=value,
        unit="m",
        observed_at=at,
        source="demo",
    ).to_bytes()


async def _observe(bootstrap: str, tally: Tally, show: Printer, ready: asyncio.Event) -> None:
    topics = [
        readings_topic(Domain.WATER),
        DEADLETTER,
        WARNINGS,
        notifications_topic(Channel.WEBHOOK),
        RECEIPTS,
    ]
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="latest"
    )
    await consumer.start()
    try:
        # Pin positions at the current end before anything is fed, so the demo
        # shows its own events only (it may run against a shared cluster).
        await consumer.seek_to_end()
        for tp in consumer.assignment():
            await consumer.position(tp)
        ready.set()
        async for rec in consumer:
            tally.last_event = time.monotonic()
            value = rec.value or b""
            if rec.topic == readings_topic(Domain.WATER):
                r = Reading.model_validate_json(value)
                if r.station_id == STATION:
                    tally.ingested += 1
                    show("reading", f"{r.station_id} {r.metric} = {r.value:.2f} m")
            elif rec.topic == DEADLETTER:
                d = DeadLetter.model_validate_json(value)
                tally.rejected += 1
                show("REJECTED", f"{d.source_topic} → {DEADLETTER}: {d.reason}")
            elif rec.topic == WARNINGS:
                w = Warning.model_validate_json(value)
                label = f"level {w.level_name}" if w.level else "all-clear"
                tally.warnings[w.level_name or "all-clear"] += 1
                ev = w.evidence[0] if w.evidence else None
                why = f" ({ev.value:.2f} m vs {ev.threshold:.2f} m)" if ev and ev.threshold else ""
                show(
                    "WARNING",
                    f"{w.warning_id} {w.transition.value} → {label} [{w.severity.value}]{why}; "
                    f"scope {w.scope_tier.value}, lead: {w.lead_agency.name_en}",
                )
            elif rec.topic == notifications_topic(Channel.WEBHOOK):
                n = Notification.model_validate_json(value)
                tally.notifications += 1
                show("NOTIFY", f"{n.channel.value} → {n.receiver_id} ({n.address})")
            elif rec.topic == RECEIPTS:
                rc = DeliveryReceipt.model_validate_json(value)
                if rc.outcome is DeliveryOutcome.DELIVERED:
                    tally.delivered += 1
                    show(
                        "DELIVERED",
                        f"{rc.receiver_id} HTTP {rc.status_code} in "
                        f"{rc.latency_seconds * 1000:.0f} ms (attempt {rc.attempt})",
                    )
                elif rc.outcome is DeliveryOutcome.FAILED:
                    tally.failed += 1
                    show("FAILED", f"{rc.receiver_id}: {rc.error}")
                else:
                    show("RETRY", f"{rc.receiver_id}: {rc.error}")
    finally:
        await consumer.stop()


def _start_worker(bootstrap: str, env_extra: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **env_extra, "CANHBAO_KAFKA_BOOTSTRAP": bootstrap}
    out = open(log, "wb")  # noqa: SIM115 - handed to the child
    return subprocess.Popen(
        [sys.executable, "-m", "canhbao", "worker"],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def _stop_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def _demo(
    settings: Settings,
    bootstrap: str,
    broker_kind: str,
    duration: float,
    out: TextIO,
    workdir: Path,
) -> dict[str, Any]:
    show = Printer(out)
    tally = Tally()
    started = time.monotonic()
    deadline = started + duration
    report = await create_topics(
        bootstrap,
        default_partitions=settings.partitions,
        replication_factor=settings.replication_factor,
    )
    show("topics", f"{len(report.created)} created, {len(report.existing)} already there")

    secret = secrets.token_bytes(32)

    def received(d: Delivery) -> None:
        tally.received += 1
        show("RECEIVED", f"{d.path}: {d.body.get('body', '')}")

    receiver = await WebhookReceiver(secret=secret, on_delivery=received).start()
    show("receiver", f"Dept. of Agriculture and Environment listens on {receiver.base_url}")

    run_id = secrets.token_hex(3)
    embedded = broker_kind == "tansu"
    rebalance = rebalance_timeout(embedded, settings.rebalance_timeout)
    worker_log = workdir / "worker.log"
    worker = _start_worker(
        bootstrap,
        {
            "CANHBAO_AGENCY_WEBHOOK_BASE": receiver.base_url,
            "CANHBAO_APP_ID": settings.app_id if embedded else f"canhbao-demo-{run_id}",
            "CANHBAO_REBALANCE_TIMEOUT": str(rebalance),
            "CANHBAO_LOG_LEVEL": "warning",
        },
        worker_log,
    )
    show("worker", f"Faust worker started (pid {worker.pid}, log {worker_log})")
    dispatcher = WebhookDispatcher(
        WebhookConfig(
            bootstrap=bootstrap,
            group_id="canhbao.dispatch.webhook" if embedded else f"canhbao-demo-{run_id}",
            secret=secret,
            rebalance_timeout_ms=int(rebalance * 1000),
        )
    )
    dispatch_task = asyncio.create_task(dispatcher.run())
    observed = asyncio.Event()
    observe_task = asyncio.create_task(_observe(bootstrap, tally, show, observed))
    await asyncio.wait_for(observed.wait(), 30)

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
    await producer.start()
    try:
        # Play the series across most of the run, leaving time to drain.
        feed_window = max(2.0, (deadline - time.monotonic()) * 0.6)
        gap = feed_window / (len(RIVER_SERIES) + len(BAD_INPUT))
        t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=len(RIVER_SERIES))
        show("feed", f"{len(RIVER_SERIES)} hourly readings at {STATION}, one every {gap:.1f} s")
        for i, level in enumerate(RIVER_SERIES):
            if i in BAD_INPUT:
                await producer.send_and_wait(INGEST_READINGS, BAD_INPUT[i], key=STATION.encode())
                tally.sent += 1
                await asyncio.sleep(gap)
            at = t0 + timedelta(hours=i)
            await producer.send_and_wait(
                INGEST_READINGS, _reading_bytes(level, at), key=STATION.encode()
            )
            tally.sent += 1
            await asyncio.sleep(gap)
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with {worker.returncode}; see {worker_log}")
        # Drain: wait until every reading is accounted for and every notification
        # has a final receipt, or the time is up.
        hard_stop = max(deadline, time.monotonic() + 5.0) + 15.0
        while time.monotonic() < hard_stop:
            settled = (
                tally.ingested + tally.rejected >= tally.sent
                and tally.notifications > 0
                and tally.delivered + tally.failed >= tally.notifications
                and time.monotonic() - tally.last_event > 1.0
            )
            if settled and time.monotonic() >= min(deadline, hard_stop):
                break
            if settled and time.monotonic() - tally.last_event > 3.0:
                break
            await asyncio.sleep(0.2)
    finally:
        await producer.stop()
        dispatcher.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(dispatch_task, 15)
        observe_task.cancel()
        with contextlib.suppress(BaseException):
            await observe_task
        await asyncio.get_running_loop().run_in_executor(None, _stop_process, worker)
        await receiver.stop()
    return tally.summary(broker_kind, time.monotonic() - started)


def run_demo(settings: Settings, duration: float = 30.0, as_json: bool = False) -> int:
    out = sys.stderr if as_json else sys.stdout
    workdir = Path(tempfile.mkdtemp(prefix="canhbao-demo-"))
    broker: EmbeddedBroker | None = None
    if settings.kafka_bootstrap:
        bootstrap, kind = settings.kafka_bootstrap, "kafka"
        print(f"Using the Kafka cluster at {bootstrap}", file=out)
    else:
        broker = EmbeddedBroker(log_path=workdir / "tansu.log").start()
        bootstrap, kind = broker.bootstrap, "tansu"
        print(f"Embedded Tansu broker on {bootstrap} (memory only: nothing kept on disk)", file=out)
    try:
        summary = asyncio.run(_demo(settings, bootstrap, kind, duration, out, workdir))
    finally:
        if broker is not None:
            broker.stop()
    ok = sum(summary["warnings"]["by_level"].values()) > 0 and summary["deliveries"]["ok"] > 0
    if as_json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        w = summary["warnings"]
        print(
            f"\nSummary: {summary['readings']['ingested']} readings ingested, "
            f"{summary['readings']['rejected']} rejected; {w['total']} warning states "
            f"({', '.join(f'{k}: {v}' for k, v in w['by_level'].items())}); "
            f"{summary['notifications']['sent']} notifications, "
            f"{summary['deliveries']['ok']} delivered, {summary['deliveries']['failed']} failed.",
            file=out,
        )
    if not ok:
        print(f"The demo did not deliver a warning; logs are in {workdir}", file=sys.stderr)
    return 0 if ok else 1
