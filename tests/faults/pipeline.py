"""The whole pipeline the fault suite injects faults into, on a local Apache Kafka with
on-disk logs: two workers, the webhook, e-mail and SMS dispatchers and the recorder as
real subprocesses (each can be SIGKILLed and started again), and the receivers at the
edges in this process (an HTTP receiver, an SMTP server, an SMS gateway), which count
every request they get by the notification's id.

Each fault gets stations of its own (``fault-<name>-<n>``), with one drill rule each:
a reading of 2 raises a level-I warning, so a fault's expected warnings are known
before it is injected; its expected notifications are the router's output for those
warnings, read back from the notification topics."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import ValidationError

from canhbao.broker import free_port
from canhbao.kafka_local import LocalKafka
from canhbao.metrics import scrape_counter
from canhbao.processes import spawn, stop
from canhbao.receiver import WebhookReceiver
from tests.integration.edges import Gateway, SmtpServer
from tests.integration.helpers import REPO
from topics.catalogue import DEADLETTER, WARNINGS, notifications_topic
from topics.models import Channel, DeadLetter, Domain, Notification, Reading, Warning

METRIC = "fault_drill"
CHANNELS = (Channel.WEBHOOK, Channel.EMAIL, Channel.SMS)
RULE = """\
  - id: faults.{station}
    domain: water
    hazard: fault_drill
    selector: {{station: {station}, metric: {metric}}}
    condition: {{kind: threshold, direction: rising, hysteresis: 0.5}}
    levels:
      - {{level: 1, name: "diễn tập sự cố", value: 1.0, severity: Moderate}}
    annotations:
      summary_vi: "Diễn tập sự cố {station}"
      summary_en: "Fault drill {station}"
"""


def stations(fault: str, n: int) -> list[str]:
    return [f"fault-{fault}-{i}" for i in range(n)]


def warning_id(station: str) -> str:
    return f"faults.{station}:{station}"


def drill_config(into: Path, names: list[str]) -> dict[str, str]:
    """A geography with the drill stations (river gauges of Vũ Ninh, owned by the
    Dept. of Agriculture and Environment) and a rule set of one rule per station."""
    geography = yaml.safe_load((REPO / "config" / "geography.yaml").read_text("utf-8"))
    geography["stations"] += [
        {"id": s, "name": s, "commune": "bn-vu-ninh", "warns": ["bn-vu-ninh"], "owner": "snnmt",
         "domain": "water", "metrics": [METRIC]}
        for s in names
    ]  # fmt: skip
    (into / "geography.yaml").write_text(yaml.safe_dump(geography, allow_unicode=True), "utf-8")
    rules = into / "rules"
    rules.mkdir()
    (rules / "quality.yaml").write_text((REPO / "rules" / "quality.yaml").read_text("utf-8"))
    (rules / "faults.yaml").write_text(
        "rules:\n" + "".join(RULE.format(station=s, metric=METRIC) for s in names), "utf-8"
    )
    return {
        "CANHBAO_GEOGRAPHY_PATH": str(into / "geography.yaml"),
        "CANHBAO_RULES_PATH": str(rules),
    }


def reading(station: str, value: float, at: datetime | None = None) -> bytes:
    return Reading(
        station_id=station, domain=Domain.WATER, metric=METRIC, value=value,
        observed_at=at or datetime.now(UTC) - timedelta(seconds=1),
    ).to_bytes()  # fmt: skip


@dataclass
class Proc:
    """One canhbao command as a subprocess that a fault can kill and start again."""

    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        self.proc = spawn(self.args, self.env, self.log, append=self.starts > 1)

    def kill(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, f"{self.name} is not running"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 25) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} ({self.log}):\n" + "\n".join(text.splitlines()[-lines:])


@dataclass
class Receivers:
    webhook: WebhookReceiver
    smtp: SmtpServer
    gateway: Gateway

    def delivered(self) -> Counter[str]:
        """Notification id → deliveries accepted by the receivers (the webhook receiver
        drops a repeated Idempotency-Key and counts it apart, see ``duplicates``)."""
        got: Counter[str] = Counter(d.key for d in self.webhook.deliveries)
        # Stripped: an id too long for one header line is folded onto the next, and
        # Python's parser keeps the fold's space (" faults.fault-…").
        got.update(str(m["X-Canhbao-Notification-Id"]).strip() for m in self.smtp.messages)
        got.update(str(r["ref"]) for r in self.gateway.requests)
        return got

    @property
    def webhook_repeats(self) -> list[str]:
        return self.webhook.repeated

    def duplicates(self) -> int:
        """Requests that repeated a delivered notification: dropped by its key at the
        webhook receiver, or accepted twice by the SMTP server or the SMS gateway."""
        again = sum(n - 1 for n in self.delivered().values() if n > 1)
        return self.webhook.duplicates + again


@dataclass
class Pipeline:
    kafka: LocalKafka
    work: Path
    receivers: Receivers
    procs: dict[str, Proc] = field(default_factory=dict)
    database: Path = field(init=False)

    def __post_init__(self) -> None:
        self.database = self.work / "record.db"

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "CANHBAO_KAFKA_BOOTSTRAP": self.bootstrap,
            "CANHBAO_LOG_LEVEL": "info",
            "CANHBAO_REBALANCE_TIMEOUT": "6",
            "CANHBAO_AGENCY_WEBHOOK_BASE": self.receivers.webhook.base_url,
            "CANHBAO_WEBHOOK_TIMEOUT": "2",
            "CANHBAO_SMTP_HOST": self.receivers.smtp.host,
            "CANHBAO_SMTP_PORT": str(self.receivers.smtp.port),
            "CANHBAO_SMTP_USERNAME": self.receivers.smtp.username,
            "CANHBAO_SMTP_PASSWORD": self.receivers.smtp.password,
            "CANHBAO_SMTP_CA_FILE": str(self.receivers.smtp.cafile),
            "CANHBAO_SMS_GATEWAY_URL": self.receivers.gateway.url,
            "CANHBAO_DATABASE_URL": f"sqlite+aiosqlite:///{self.database}",
            **extra,
        }

    def add(self, name: str, args: list[str], **extra: str) -> Proc:
        env = self.env(CANHBAO_METRICS_PORT=str(free_port()),
                       CANHBAO_DATA_DIR=str(self.work / f"data-{name}"), **extra)  # fmt: skip
        p = Proc(name, args, env, self.work / f"{name}.log")
        self.procs[name] = p
        p.start()
        return p

    def evaluated(self, name: str) -> float:
        port = int(self.procs[name].env["CANHBAO_METRICS_PORT"])
        return scrape_counter(port, "canhbao_readings_evaluated_total") or 0.0

    def dead(self) -> list[str]:
        return [p.tail() for p in self.procs.values() if not p.alive()]

    # --- what the record holds --------------------------------------------------------

    def recorded_warnings(self, prefix: str) -> Counter[tuple[str, int]]:
        with contextlib.closing(sqlite3.connect(self.database)) as db:
            rows = db.execute(
                "SELECT warning_id, version FROM warning_versions WHERE warning_id LIKE ?",
                (f"faults.fault-{prefix}-%",),
            ).fetchall()
        return Counter((w, v) for w, v in rows)

    def recorded_notifications(self, prefix: str) -> set[str]:
        with contextlib.closing(sqlite3.connect(self.database)) as db:
            rows = db.execute(
                "SELECT notification_id FROM notifications WHERE warning_id LIKE ?",
                (f"faults.fault-{prefix}-%",),
            ).fetchall()
        return {r[0] for r in rows}


@contextlib.contextmanager
def kafka_on_disk(state: Path) -> Iterator[LocalKafka]:
    kafka = LocalKafka(state, heap="-Xms128m -Xmx512m")
    # After a SIGKILL the broker recovers every partition's log before it serves:
    # on a busy 2-core machine that can take longer than a clean start's 90 s.
    kafka.env["KAFKA_START_TIMEOUT"] = "240"
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.stop()


async def send(bootstrap: str, topic: str, messages: Sequence[tuple[bytes | None, bytes]]) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all",
                         max_request_size=2_000_000)  # fmt: skip
    await p.start()
    try:
        for key, value in messages:
            await p.send(topic, value, key=key)
        await p.flush()
    finally:
        await p.stop()


async def read_all(bootstrap: str, topics: list[str]) -> list[tuple[str, bytes]]:
    """Every record now on ``topics`` (read up to their end offsets of this moment)."""
    c = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", fetch_max_bytes=4_000_000,
        max_partition_fetch_bytes=2_000_000,
    )  # fmt: skip
    await c.start()
    try:
        meta = await c._client.fetch_all_metadata()
        parts = [TopicPartition(t, p) for t in topics for p in meta.partitions_for_topic(t) or ()]
        c.assign(parts)
        ends = await c.end_offsets(parts)
        out: list[tuple[str, bytes]] = []
        left = {tp for tp, end in ends.items() if end > 0}
        while left:
            batch = await c.getmany(*left, timeout_ms=500)
            for tp, records in batch.items():
                out.extend((tp.topic, r.value or b"") for r in records if r.offset < ends[tp])
            left = {tp for tp in left if await c.position(tp) < ends[tp]}
        return out
    finally:
        await c.stop()


async def warning_states(bootstrap: str, prefix: str) -> Counter[tuple[str, int]]:
    """(warning id, version) → how many times on ``canhbao.warnings``."""
    got: Counter[tuple[str, int]] = Counter()
    for _, v in await read_all(bootstrap, [WARNINGS]):
        try:
            w = Warning.model_validate_json(v)
        except ValidationError:
            continue  # not canhbao's (the poison the suite sends, say)
        if w.warning_id.startswith(f"faults.fault-{prefix}-"):
            got[(w.warning_id, w.version)] += 1
    return got


async def notifications(bootstrap: str, prefix: str) -> set[str]:
    """The notification ids the router made for a fault's warnings."""
    out: set[str] = set()
    for _, v in await read_all(bootstrap, [notifications_topic(c) for c in CHANNELS]):
        try:
            n = Notification.model_validate_json(v)
        except ValidationError:
            continue  # the poison the suite sends to the webhook dispatcher's topic
        if n.warning_id.startswith(f"faults.fault-{prefix}-"):
            out.add(n.notification_id)
    return out


async def dead_letters(bootstrap: str) -> list[DeadLetter]:
    return [DeadLetter.model_validate_json(v) for _, v in await read_all(bootstrap, [DEADLETTER])]


async def wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)
