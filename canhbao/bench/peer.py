"""Alertmanager side by side: the same burst of distinct warnings through Debian's
``prometheus-alertmanager`` and through canhbao's routing and webhook delivery, to one
receiver, in one run.

Fairness, as configured here and stated in the README:

- *Grouping off on both sides.* Alertmanager's route has ``group_by: ['...']`` (every
  alert its own group) and ``group_wait: 0s``, so each alert goes out at once, as a
  canhbao route with no grouping sends every warning state at once. ``group_interval``
  (1m) and ``repeat_interval`` (4h) only pace later notifications of a group, which
  a burst of new alerts never has.
- *No clustering.* Alertmanager runs alone (``--cluster.listen-address=``): a
  cluster member would wait its peer timeout before notifying.
- *Entry points as users feed them.* Alertmanager gets its v2 API
  (``POST /api/v2/alerts``, batches of 500, as Prometheus posts them); canhbao gets
  the warnings on ``canhbao.warnings`` (as its evaluate stage writes them), routed by
  the running worker's route stage to ``canhbao.notifications.webhook`` and delivered
  by ``canhbao dispatch webhook`` (signed, with its delivery ledger), as in production.
- *One receiver.* One aiohttp server in the bench process (keep-alive, as both
  clients use it) counts the first arrival of each alert; the two bursts run one after
  the other, never at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from canhbao.bench.latency import percentile
from canhbao.broker import free_port
from canhbao.processes import spawn, stop
from canhbao.receiver import Delivery
from canhbao.settings import REPO_ROOT
from topics import yamlio
from topics.catalogue import WARNINGS, notifications_topic
from topics.connection import Kafka, client_kwargs
from topics.models import Channel, Warning

BINARY = "prometheus-alertmanager"
APT = ["apt-get", "install", "-y", "-q", "prometheus-alertmanager"]
BATCH = 500
WARNING_FILE = REPO_ROOT / "examples" / "warnings" / "dap-cau-level3.json"
AGENCY = "snnmt"  # the lead agency of the example warning; its webhook is the receiver

ALERTMANAGER_CONFIG = """\
route:
  receiver: bench
  group_by: ['...']
  group_wait: 0s
  group_interval: 1m
  repeat_interval: 4h
receivers:
  - name: bench
    webhook_configs:
      - url: {url}
        send_resolved: false
"""

PEER_RULE = "bench.peer"


def bench_routes(shipped: Path, into: Path) -> Path:
    """The shipped routes, with one first route sending the burst's warnings (rule
    ``bench.peer``) to the agency's webhook alone, ungrouped, and nowhere else: the
    other warnings of the run (the latency probes) keep the shipped routing."""
    config = yamlio.safe_load(shipped.read_text(encoding="utf-8"))
    config["route"].setdefault("routes", []).insert(
        0, {"matchers": [f'rule="{PEER_RULE}"'], "receivers": ["bench-peer"]}
    )
    config["receivers"].append(
        {"name": "bench-peer", "to": {"agencies": [AGENCY]}, "channels": ["webhook"]}
    )
    target = into / "routes.yaml"
    target.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return target


@dataclass
class Arrivals:
    """First arrival per alert id, per side; later arrivals only counted."""

    first: dict[str, dict[str, float]] = field(default_factory=lambda: {"am": {}, "cb": {}})
    requests: dict[str, int] = field(default_factory=lambda: {"am": 0, "cb": 0})
    repeats: dict[str, int] = field(default_factory=lambda: {"am": 0, "cb": 0})
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def arrived(self, side: str, ids: list[str]) -> None:
        now = time.time()
        self.requests[side] += 1
        seen = self.first[side]
        for i in ids:
            if i in seen:
                self.repeats[side] += 1
            else:
                seen[i] = now
        self.changed.set()

    async def until(self, side: str, ids: set[str], seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while not ids <= self.first[side].keys():
                    self.changed.clear()
                    await self.changed.wait()


class Receiver:
    """``/am``: Alertmanager's webhook JSON; ``/hooks/{agency}``: canhbao's. The burst's
    warnings are counted as arrivals; every other delivery (the latency probes' warnings)
    goes to ``on_delivery``."""

    def __init__(
        self, arrivals: Arrivals, on_delivery: Callable[[Delivery], None] | None = None
    ) -> None:
        self.arrivals = arrivals
        self.on_delivery = on_delivery
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _am(self, request: web.Request) -> web.Response:
        body = await request.json()
        ids = [a["labels"].get("warning_id", "") for a in body.get("alerts", [])]
        self.arrivals.arrived("am", ids)
        return web.Response(text="ok")

    async def _cb(self, request: web.Request) -> web.Response:
        body = await request.json()
        warning = body.get("warning") or {}
        if warning.get("rule_id") == PEER_RULE:
            self.arrivals.arrived("cb", [warning.get("warning_id", "")])
        elif self.on_delivery is not None:
            key = request.headers.get("Idempotency-Key", "")
            self.on_delivery(Delivery(path=request.path, key=key, body=body))
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/am", self._am)
        app.router.add_post("/hooks/{agency}", self._cb)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@dataclass
class SideResult:
    alerts: int
    delivered: int
    seconds: float  # first send → last first arrival
    alerts_per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    requests: int  # HTTP requests the receiver got during the burst
    repeats: int  # arrivals of an alert already seen
    # canhbao only: first send → the route stage's last notification of the burst on
    # canhbao.notifications.webhook (its record time), and that rate; the rest of
    # ``seconds`` is the dispatcher's. Says which of the two stages limits the path.
    routed_seconds: float | None = None
    routed_per_second: float | None = None


def _side(
    n: int, sent_at: dict[str, float], first: dict[str, float], requests: int, repeats: int
) -> SideResult:
    got = [first[i] for i in sent_at if i in first]
    ms = [(first[i] - sent_at[i]) * 1000 for i in sent_at if i in first]
    start = min(sent_at.values())
    seconds = (max(got) - start) if got else float("nan")
    return SideResult(
        alerts=n,
        delivered=len(got),
        seconds=round(seconds, 3),
        alerts_per_second=round(len(got) / seconds, 1) if got and seconds > 0 else 0.0,
        p50_ms=round(percentile(ms, 50), 1),
        p99_ms=round(percentile(ms, 99), 1),
        max_ms=round(max(ms, default=float("nan")), 1),
        requests=requests,
        repeats=repeats,
    )


def find_alertmanager() -> tuple[str | None, str | None]:
    """The binary, or why there is none (installing it with apt-get when root)."""
    path = shutil.which(BINARY)
    if path:
        return path, None
    if os.geteuid() != 0:
        return None, (f"{BINARY} is not installed and the bench is not root: "
                      f"run `sudo {' '.join(APT)}`")  # fmt: skip
    if shutil.which("apt-get") is None:
        return None, f"{BINARY} is not installed and there is no apt-get here"
    done = subprocess.run(APT, capture_output=True, text=True, env={**os.environ,
                          "DEBIAN_FRONTEND": "noninteractive"})  # fmt: skip
    path = shutil.which(BINARY)
    if path is None:
        return None, f"`{' '.join(APT)}` failed: {done.stderr.strip()[-300:]}"
    return path, None


def alertmanager_version(path: str) -> str:
    out = subprocess.run([path, "--version"], capture_output=True, text=True)
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "?"


def _start_alertmanager(path: str, work: Path, webhook: str) -> tuple[Any, str]:
    work.mkdir(parents=True, exist_ok=True)
    config = work / "alertmanager.yml"
    config.write_text(ALERTMANAGER_CONFIG.format(url=webhook))
    port = free_port()
    proc = spawn(
        [f"--config.file={config}", f"--storage.path={work / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
         "--log.level=warn"],
        {}, work / "alertmanager.log", program=[path],
    )  # fmt: skip
    return proc, f"http://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def alertmanager(path: str, work: Path, webhook: str) -> Any:
    proc, url = _start_alertmanager(path, work, webhook)
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 30
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"alertmanager exited: {(work / 'alertmanager.log').read_text()[-500:]}"
                    )
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{url}/-/ready") as resp:
                        if resp.status == 200:
                            break
                if time.monotonic() > deadline:
                    raise TimeoutError("alertmanager did not become ready in 30 s")
                await asyncio.sleep(0.2)
        yield url
    finally:
        stop(proc)


def _am_alert(warning_id: str, now: datetime) -> dict[str, Any]:
    return {
        "labels": {"alertname": "river_flood", "warning_id": warning_id, "severity": "Extreme"},
        "annotations": {"summary": "Mực nước sông Cầu tại Đáp Cầu"},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(hours=1)).isoformat(),
    }


async def _am_burst(url: str, ids: list[str]) -> dict[str, float]:
    sent_at: dict[str, float] = {}
    async with aiohttp.ClientSession() as http:
        for i in range(0, len(ids), BATCH):
            batch = ids[i : i + BATCH]
            now = datetime.now(UTC)
            t = time.time()
            for x in batch:
                sent_at[x] = t
            body = json.dumps([_am_alert(x, now) for x in batch])
            async with http.post(f"{url}/api/v2/alerts", data=body,
                                 headers={"Content-Type": "application/json"}) as resp:  # fmt: skip
                if resp.status != 200:
                    raise RuntimeError(f"alertmanager answered {resp.status}: {await resp.text()}")
    return sent_at


def _warnings(ids: list[str]) -> list[bytes]:
    base = Warning.model_validate_json(WARNING_FILE.read_bytes())
    now = datetime.now(UTC)
    out = []
    for x in ids:
        w = Warning.model_validate({**base.model_dump(), "warning_id": x, "rule_id": PEER_RULE,
                                    "version": 1, "transition": "raised", "raised_at": now,
                                    "updated_at": now, "previous_updated_at": None,
                                    "previous_level": 0})  # fmt: skip
        out.append(w.to_bytes())
    return out


async def routed_at(bootstrap: Kafka, ids: set[str]) -> dict[str, float]:
    """When the route stage wrote each burst warning's webhook notification (the
    record's time, in seconds), read back from ``canhbao.notifications.webhook``."""
    topic = notifications_topic(Channel.WEBHOOK)
    consumer = AIOKafkaConsumer(**client_kwargs(bootstrap), group_id=None,
                                enable_auto_commit=False)  # fmt: skip
    await consumer.start()
    out: dict[str, float] = {}
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not parts:
            return out
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        left = {tp for tp in parts if end[tp] > 0}
        while left:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for tp, records in batches.items():
                for record in records:
                    if record.offset + 1 >= end[tp]:
                        left.discard(tp)
                    wid = json.loads(record.value or b"{}").get("warning_id")
                    if wid in ids:
                        out.setdefault(wid, record.timestamp / 1000)
            if not batches:
                break
    finally:
        try:
            await consumer.stop()
        except asyncio.CancelledError:
            # aiokafka 0.14 can raise the cancellation of its own committed-offsets task
            # when a consumer without a group stops (seen once on Kafka, ending a whole
            # bench run); only a cancellation of this task itself goes on.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
    return out


async def _cb_burst(bootstrap: Kafka, ids: list[str]) -> dict[str, float]:
    values = _warnings(ids)  # encoded before the clock starts, as the AM bodies are cheap
    sent_at: dict[str, float] = {}
    producer = AIOKafkaProducer(**client_kwargs(bootstrap), linger_ms=1, acks="all")
    await producer.start()
    try:
        pending = []
        for x, value in zip(ids, values, strict=True):
            sent_at[x] = time.time()
            pending.append(await producer.send(WARNINGS, value, key=x.encode()))
        for fut in pending:
            await fut
    finally:
        await producer.stop()
    return sent_at


@dataclass
class PeerResult:
    alertmanager_version: str
    alerts: int
    batch: int
    config: str
    canhbao: SideResult
    alertmanager: SideResult


async def run_peer(
    bootstrap: Kafka, arrivals: Arrivals, am_url: str, am_path: str, alerts: int,
    wait_seconds: float = 300.0,
) -> PeerResult:  # fmt: skip
    """Both bursts, canhbao first (its worker and dispatcher are already running)."""
    tag = os.urandom(3).hex()

    async def burst(side: str, ids: list[str]) -> dict[str, float]:
        return await (_cb_burst(bootstrap, ids) if side == "cb" else _am_burst(am_url, ids))

    # A warm-up alert each: both paths connected and ready before the clock starts.
    for side in ("cb", "am"):
        warm = f"bench.warm.{side}.{tag}"
        await burst(side, [warm])
        await arrivals.until(side, {warm}, 60)
        if warm not in arrivals.first[side]:
            raise RuntimeError(f"{side}: the warm-up alert never reached the receiver in 60 s")
    result: dict[str, SideResult] = {}
    for side in ("cb", "am"):
        ids = [f"bench.{side}.{tag}.{i:06d}" for i in range(alerts)]
        requests, repeats = arrivals.requests[side], arrivals.repeats[side]
        sent_at = await burst(side, ids)
        await arrivals.until(side, set(ids), wait_seconds)
        result[side] = _side(alerts, sent_at, arrivals.first[side],
                             arrivals.requests[side] - requests,
                             arrivals.repeats[side] - repeats)  # fmt: skip
        if side == "cb":
            routed = await routed_at(bootstrap, set(ids))
            if routed:
                took = max(routed.values()) - min(sent_at.values())
                result[side].routed_seconds = round(took, 3)
                result[side].routed_per_second = round(len(routed) / took, 1) if took > 0 else None
    return PeerResult(
        alertmanager_version=alertmanager_version(am_path),
        alerts=alerts,
        batch=BATCH,
        config="group_by ['...'], group_wait 0s, group_interval 1m, repeat_interval 4h; "
        "canhbao: one route, no grouping, the agency webhook",
        canhbao=result["cb"],
        alertmanager=result["am"],
    )
