"""``canhbao bench --soak 30m``: the pipeline at a steady rate for a long time, sampled
every window: resident memory of each process, consumer lag of each group, and the
end-to-end latency of probe warnings (reading produced → webhook delivered).

A slow leak shows as RSS that keeps rising window after window; a stage that falls
behind shows as lag that grows instead of returning to zero; both are invisible in the
short benchmark phases."""

from __future__ import annotations

import re
import secrets
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from canhbao.bench import latency, load
from canhbao.bench.brokers import bench_broker
from canhbao.bench.rules import bench_geography, bench_rules
from canhbao.bench.worker import Worker
from canhbao.broker import embedded_env, free_port
from canhbao.processes import spawn, stop
from canhbao.receiver import WebhookReceiver
from canhbao.settings import Settings
from topics.admin import create_topics
from topics.lag import LagMonitor
from topics.metrics import Metrics


def parse_duration(text: str) -> float:
    """'30m', '60s', '1h', '90' (seconds) → seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"not a duration: {text!r} (e.g. 60s, 30m, 1h)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def rss_mb(pid: int) -> float:
    """VmRSS: resident memory now (not the peak), so a leak shows as a trend."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return float("nan")


async def group_lags(monitor: LagMonitor, prefixes: tuple[str, ...]) -> dict[str, int]:
    """Per consumer group whose id starts with one of ``prefixes``: records on its
    topics not yet committed (what it still has to do)."""
    await monitor.measure()
    return monitor.by_group(prefixes)


@dataclass
class Window:
    minute: float  # minutes since the start, at the end of the window
    offered_per_second: int
    achieved_per_second: float
    probes: int
    delivered: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    rss_mb: dict[str, float]
    lag: dict[str, int]


@dataclass
class SoakConfig:
    broker: str = "tansu"
    seconds: float = 1800.0
    rate: int = 500  # calm readings per second, around 5 probe warnings per second
    stations: int = 2000
    window: float = 60.0


@dataclass
class SoakResult:
    broker: str
    seconds: float
    rate: int
    stations: int
    windows: list[Window] = field(default_factory=list)
    exited: list[str] = field(default_factory=list)  # processes that died during the soak

    def summary(self) -> dict[str, Any]:
        ws = self.windows
        procs = sorted({p for w in ws for p in w.rss_mb})
        return {
            "minutes": round(self.seconds / 60, 1),
            "probes": sum(w.probes for w in ws),
            "delivered": sum(w.delivered for w in ws),
            "p99_ms_worst_window": max((w.p99_ms for w in ws), default=float("nan")),
            "rss_mb_first_last": {p: (ws[0].rss_mb.get(p), ws[-1].rss_mb.get(p)) for p in procs}
            if ws
            else {},
            "lag_max": max((sum(w.lag.values()) for w in ws), default=0),
            "lag_last": sum(ws[-1].lag.values()) if ws else 0,
            "exited": self.exited,
        }


async def soak(cfg: SoakConfig, settings: Settings, say: Any) -> SoakResult:
    result = SoakResult(cfg.broker, cfg.seconds, cfg.rate, cfg.stations)
    with (
        tempfile.TemporaryDirectory(prefix="canhbao-soak-") as tmp,
        bench_broker(
            cfg.broker, settings.kafka_connection() if settings.kafka_bootstrap else None
        ) as broker,
    ):
        work = Path(tmp)
        result.broker = broker.kind
        say(f"soak: broker {broker.kind} at {broker.bootstrap}, {cfg.seconds:.0f} s")
        await create_topics(broker.bootstrap, default_partitions=settings.partitions)
        stations = load.station_ids(cfg.stations)
        secret = secrets.token_hex(32)
        probes = latency.Probes()
        receiver = await WebhookReceiver(
            secret=secret.encode(), on_delivery=probes.on_delivery
        ).start()
        app_id = f"canhbao-soak-{secrets.token_hex(3)}"
        env = {
            "CANHBAO_KAFKA_BOOTSTRAP": str(broker.bootstrap),
            "CANHBAO_APP_ID": app_id,
            "CANHBAO_RULES_PATH": str(bench_rules(settings.rules_path, work)),
            "CANHBAO_GEOGRAPHY_PATH": str(bench_geography(settings.geography_path, work, stations)),
            "CANHBAO_AGENCY_WEBHOOK_BASE": receiver.base_url,
            "CANHBAO_WEBHOOK_SECRET": secret,
            "CANHBAO_LOG_LEVEL": "warning",
            "CANHBAO_DATA_DIR": str(work / "data"),
            **(embedded_env() if broker.kind == "tansu" else {}),
        }
        (work / "data").mkdir()
        worker = Worker(env, work / "worker.log")
        procs: dict[str, subprocess.Popen[bytes]] = {}
        lags = LagMonitor(broker.bootstrap, Metrics(CollectorRegistry()))
        try:
            await lags.start()
            worker.start()
            assert worker.proc is not None
            procs["worker"] = worker.proc
            procs["dispatch-webhook"] = spawn(["dispatch", "webhook"], env, work / "dispatch.log")
            upgrade = spawn(["db", "upgrade"], env, work / "db-upgrade.log")
            if upgrade.wait(120) != 0:
                raise RuntimeError(
                    f"canhbao db upgrade failed: {(work / 'db-upgrade.log').read_text()}"
                )
            procs["record"] = spawn(
                ["record", "--group", f"{app_id}.record"],
                {**env, "CANHBAO_METRICS_PORT": str(free_port())},
                work / "record.log",
            )
            # Warm up: the first probe's warning proves the whole path is up.
            warm = await latency.run_load(broker.bootstrap, stations, cfg.rate, 5, probes)
            say(f"warm-up: {warm.delivered}/{warm.probes} probes delivered")
            t0 = time.monotonic()
            while (elapsed := time.monotonic() - t0) < cfg.seconds:
                span = min(cfg.window, cfg.seconds - elapsed)
                r = await latency.run_load(broker.bootstrap, stations, cfg.rate, span, probes)
                for name, proc in procs.items():
                    if proc.poll() is not None and name not in result.exited:
                        result.exited.append(name)
                w = Window(
                    minute=round((time.monotonic() - t0) / 60, 2),
                    offered_per_second=r.offered_per_second,
                    achieved_per_second=r.achieved_per_second,
                    probes=r.probes,
                    delivered=r.delivered,
                    p50_ms=r.p50_ms,
                    p99_ms=r.p99_ms,
                    max_ms=r.max_ms,
                    rss_mb={name: rss_mb(p.pid) for name, p in procs.items()},
                    # The worker's and recorder's groups, and the webhook dispatcher's.
                    lag=await group_lags(lags, (app_id, "canhbao.dispatch.")),
                )
                result.windows.append(w)
                say(
                    f"{w.minute:6.1f} min: {w.delivered}/{w.probes} probes, p99 {w.p99_ms} ms, "
                    f"RSS {w.rss_mb}, lag {sum(w.lag.values())}"
                )
                if result.exited:
                    say(f"stopped: {', '.join(result.exited)} exited (see {work})")
                    break
        finally:
            for proc in procs.values():
                stop(proc)
            await lags.stop()
            await receiver.stop()
    return result


def table(r: SoakResult) -> str:
    procs = sorted({p for w in r.windows for p in w.rss_mb})
    head = (
        f"{'minute':>7} {'offered/s':>9} {'sent/s':>8} {'probes':>7} {'deliv.':>7} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        + " ".join(f"{'RSS ' + p:>18}" for p in procs)
        + f" {'lag':>6}"
    )
    lines = [
        f"canhbao bench --soak — broker {r.broker}, {r.seconds / 60:.1f} min at {r.rate} "
        f"readings/s over {r.stations} stations (+5 probe warnings/s)",
        "",
        head,
    ]
    for w in r.windows:
        lines.append(
            f"{w.minute:>7.1f} {w.offered_per_second:>9} {w.achieved_per_second:>8.0f} "
            f"{w.probes:>7} {w.delivered:>7} {w.p50_ms:>8.1f} {w.p99_ms:>8.1f} {w.max_ms:>8.1f} "
            + " ".join(f"{w.rss_mb.get(p, float('nan')):>15.1f} MB" for p in procs)
            + f" {sum(w.lag.values()):>6}"
        )
    s = r.summary()
    lines += [
        "",
        f"probes delivered: {s['delivered']}/{s['probes']}; worst window p99 "
        f"{s['p99_ms_worst_window']} ms; lag at the end {s['lag_last']} (max {s['lag_max']})",
    ]
    if r.exited:
        lines.append(f"EXITED during the soak: {', '.join(r.exited)}")
    return "\n".join(lines)


def as_json(r: SoakResult) -> dict[str, Any]:
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        **{k: v for k, v in asdict(r).items() if k != "windows"},
        "summary": r.summary(),
        "windows": [asdict(w) for w in r.windows],
    }


def window_for(seconds: float) -> float:
    """About 20 windows in a long soak, none shorter than 10 s or longer than 90 s."""
    return max(10.0, min(90.0, seconds / 20))
