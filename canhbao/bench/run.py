"""One benchmark run: every phase against the same broker, figures in one object."""

from __future__ import annotations

import asyncio
import os
import platform
import secrets
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from canhbao.bench import baseline, fanout, latency, load
from canhbao.bench.backtest import YEAR_OF_15_MINUTES, run_backtest
from canhbao.bench.brokers import bench_broker
from canhbao.bench.engine import engine_rate
from canhbao.bench.rules import bench_geography, bench_rules
from canhbao.bench.worker import Worker, peak_rss_mb, rate_until
from canhbao.broker import embedded_env
from canhbao.processes import spawn, stop
from canhbao.receiver import WebhookReceiver
from canhbao.settings import Settings
from topics.admin import create_topics
from topics.catalogue import INGEST_READINGS

EVALUATED = "canhbao_readings_evaluated_total"


@dataclass
class BenchConfig:
    broker: str = "tansu"
    readings: int = 100_000
    stations: int = 10_000
    loads: list[int] = field(default_factory=lambda: [500, 1000, 2000, 4000])
    seconds_per_load: float = 10.0
    subscribers: int = 100_000
    backtest_readings: int = YEAR_OF_15_MINUTES
    backtest_stations: int = 100


def machine() -> dict[str, Any]:
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


async def run(cfg: BenchConfig, settings: Settings, say: Any) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="canhbao-bench-") as tmp,
        bench_broker(
            cfg.broker, settings.kafka_connection() if settings.kafka_bootstrap else None
        ) as broker,
    ):
        work = Path(tmp)
        say(f"broker: {broker.kind} at {broker.bootstrap}")
        await create_topics(broker.bootstrap, default_partitions=settings.partitions)
        stations = load.station_ids(cfg.stations)
        # A minute apart per station, ending about now: older data followed by the
        # live load would look like stuck sensors (unchanged for hours) to the gate.
        per_station = -(-cfg.readings // cfg.stations)
        start_at = datetime.now(UTC) - timedelta(minutes=per_station + 1)
        messages = load.calm_readings(stations, cfg.readings, start_at, timedelta(minutes=1))
        produce_s = await baseline.produce(broker.bootstrap, INGEST_READINGS, messages)
        say(f"produced {cfg.readings:,} readings ({cfg.stations:,} stations) in {produce_s:.1f} s")

        raw_s = await baseline.raw_consume(broker.bootstrap, INGEST_READINGS, cfg.readings)
        raw_rate = cfg.readings / raw_s
        say(f"baseline: raw aiokafka + json.loads: {raw_rate:,.0f} readings/s")

        bench_rules_path = bench_rules(settings.rules_path, work)
        geography = bench_geography(settings.geography_path, work, stations)
        # The same readings through the engine alone, in this process, no broker.
        engine = engine_rate(bench_rules_path, geography, settings.directory_path, messages)
        say(f"engine alone: {engine:,.0f} readings/s ({engine / raw_rate:.2f} × the baseline)")

        secret = secrets.token_hex(32)
        probes = latency.Probes()
        receiver = await WebhookReceiver(
            secret=secret.encode(), on_delivery=probes.on_delivery
        ).start()
        run_id = secrets.token_hex(3)
        env = {
            "CANHBAO_KAFKA_BOOTSTRAP": str(broker.bootstrap),
            "CANHBAO_APP_ID": f"canhbao-bench-{run_id}",
            "CANHBAO_RULES_PATH": str(bench_rules_path),
            "CANHBAO_GEOGRAPHY_PATH": str(geography),
            "CANHBAO_AGENCY_WEBHOOK_BASE": receiver.base_url,
            "CANHBAO_WEBHOOK_SECRET": secret,
            "CANHBAO_LOG_LEVEL": "warning",
            "CANHBAO_DATA_DIR": str(work / "data"),
            **(embedded_env() if broker.kind == "tansu" else {}),
        }
        dispatcher = spawn(["dispatch", "webhook"], env, work / "dispatch.log")
        worker = Worker(env, work / "worker.log")
        try:
            worker.start()
            rate = await rate_until(worker, EVALUATED, cfg.readings, limit_seconds=600)
            say(f"pipeline: {rate:,.0f} readings/s ({rate / raw_rate:.0%} of the baseline)")

            loads = []
            for offered in cfg.loads:
                r = await latency.run_load(
                    broker.bootstrap, stations, offered, cfg.seconds_per_load, probes
                )
                say(
                    f"latency at {offered:,}/s: p50 {r.p50_ms} ms, p95 {r.p95_ms} ms, "
                    f"p99 {r.p99_ms} ms ({r.delivered}/{r.probes} probes delivered)"
                )
                loads.append(asdict(r))

            fan = await fanout.run_fanout(broker.bootstrap, settings, cfg.subscribers)
            say(f"fan-out: {fan.subscribers:,} subscribers enqueued in {fan.seconds:.2f} s")
            assert worker.proc is not None
            rss = peak_rss_mb(worker.proc.pid)
        finally:
            worker.stop()
            stop(dispatcher)
            await receiver.stop()
        # Last, alone on the machine: `canhbao rules backtest` over a long history.
        backtest = None
        if cfg.backtest_readings > 0:
            backtest_dir = work / "backtest"
            backtest_dir.mkdir()
            backtest_stations = load.station_ids(cfg.backtest_stations)
            backtest_env = {
                **env,
                "CANHBAO_GEOGRAPHY_PATH": str(
                    bench_geography(settings.geography_path, backtest_dir, backtest_stations)
                ),
            }
            history_start = datetime(2025, 1, 1, tzinfo=UTC)
            backtest = await asyncio.to_thread(
                run_backtest, backtest_dir, backtest_env, backtest_stations,
                cfg.backtest_readings, history_start,
            )  # fmt: skip
            say(
                f"backtest: {backtest.readings:,} readings in {backtest.seconds:.1f} s, "
                f"{backtest.readings_per_second:,}/s ({backtest.readings_per_cpu_second:,} per "
                f"CPU-second), peak RSS {backtest.peak_rss_mb:.0f} MB"
            )
    at_2000 = next((x for x in loads if x["offered_per_second"] == 2000), None)
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "broker": broker.kind,
        "readings": cfg.readings,
        "stations": cfg.stations,
        "baseline_readings_per_second": round(raw_rate),
        "pipeline_readings_per_second": round(rate),
        "ratio_to_baseline": round(rate / raw_rate, 3),
        "engine_readings_per_second": round(engine),
        "engine_ratio_to_baseline": round(engine / raw_rate, 3),
        "latency": loads,
        "p99_ms_at_2000": at_2000["p99_ms"] if at_2000 else None,
        "fanout": asdict(fan),
        "worker_peak_rss_mb": round(rss, 1),
        "backtest": asdict(backtest) if backtest is not None else None,
    }


def run_sync(cfg: BenchConfig, settings: Settings, say: Any) -> dict[str, Any]:
    return asyncio.run(run(cfg, settings, say))
