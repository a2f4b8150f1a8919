"""One benchmark run: every phase against the same broker, figures in one object."""

from __future__ import annotations

import asyncio
import math
import os
import platform
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from canhbao.bench import baseline, fanout, latency, load, peer
from canhbao.bench.backtest import YEAR_OF_15_MINUTES, run_backtest
from canhbao.bench.brokers import bench_broker
from canhbao.bench.engine import engine_rate
from canhbao.bench.goals import RAMP_EXTRA_STEPS, RAMP_FACTOR, capacity, judge, load_plan
from canhbao.bench.rules import bench_geography, bench_rules
from canhbao.bench.worker import (
    Worker,
    drain_rate,
    peak_rss_mb,
    rate_until,
    rate_until_all,
    settled,
)
from canhbao.broker import embedded_env
from canhbao.processes import spawn, stop
from canhbao.settings import Settings
from topics.admin import create_topics
from topics.catalogue import INGEST_READINGS
from topics.connection import Kafka

EVALUATED = "canhbao_readings_evaluated_total"


@dataclass
class BenchConfig:
    broker: str = "tansu"
    readings: int = 100_000
    stations: int = 10_000
    # None: a ramp from the measured drain rate (goals.LOAD_SHARES), extended while the
    # worker keeps up; a list: exactly these offered readings/s
    loads: list[int] | None = None
    seconds_per_load: float = 10.0
    subscribers: int = 1_000_000
    backtest_readings: int = YEAR_OF_15_MINUTES
    backtest_stations: int = 100
    peer: str = "alertmanager"  # or "none"
    peer_alerts: int = 10_000
    scale_stations: int = 100_000  # 0 skips the phase
    two_workers: bool = True  # on Apache Kafka only


def machine() -> dict[str, Any]:
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        # others' work shares the cores: absolute figures move with it, ratios less
        "load_average": [round(x, 1) for x in os.getloadavg()],
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
        arrivals = peer.Arrivals()
        # One receiver for everything: the probes' warnings, canhbao's burst, Alertmanager's.
        receiver = peer.Receiver(arrivals, on_delivery=probes.on_delivery)
        await receiver.start()
        run_id = secrets.token_hex(3)
        env = {
            "CANHBAO_KAFKA_BOOTSTRAP": str(broker.bootstrap),
            "CANHBAO_APP_ID": f"canhbao-bench-{run_id}",
            "CANHBAO_RULES_PATH": str(bench_rules_path),
            "CANHBAO_ROUTES_PATH": str(peer.bench_routes(settings.routes_path, work)),
            "CANHBAO_GEOGRAPHY_PATH": str(geography),
            "CANHBAO_AGENCY_WEBHOOK_BASE": receiver.base_url,
            "CANHBAO_WEBHOOK_SECRET": secret,
            "CANHBAO_LOG_LEVEL": "warning",
            "CANHBAO_DATA_DIR": str(work / "data"),
            **(embedded_env() if broker.kind == "tansu" else {}),
        }
        # Unpaced, as Alertmanager is: the default 20 deliveries/s per receiver would make
        # the side-by-side burst measure the pacing, not the path (the README says so).
        unpaced = {"CANHBAO_DISPATCH_RATE_PER_RECEIVER": "1e6",
                   "CANHBAO_DISPATCH_BURST_PER_RECEIVER": "1e6"}  # fmt: skip
        dispatcher = spawn(["dispatch", "webhook"], {**env, **unpaced}, work / "dispatch.log")
        worker = Worker(env, work / "worker.log")
        try:
            worker.start()
            drained = await drain_rate(worker, EVALUATED, cfg.readings, limit_seconds=600)
            rate = drained.per_second
            say(
                f"pipeline: {rate:,.0f} readings/s ({rate / raw_rate:.0%} of the baseline), "
                f"{drained.per_cpu_second:,.0f} per second of the worker's CPU time"
            )

            # Goal 2: the latency curve, ramping the offered load past capacity.
            async def evaluated() -> float | None:
                return await asyncio.to_thread(worker.counter, EVALUATED)

            plan = cfg.loads or load_plan(rate)
            loads: list[dict[str, Any]] = []
            while plan:
                offered = plan.pop(0)
                r = await latency.run_load(
                    broker.bootstrap, stations, offered, cfg.seconds_per_load, probes, evaluated
                )
                say(
                    f"latency at {offered:,}/s: p50 {r.p50_ms} ms, p95 {r.p95_ms} ms, "
                    f"p99 {r.p99_ms} ms ({r.delivered}/{r.probes} probes delivered; worker "
                    f"evaluated {r.evaluated_per_second or 0:,.0f}/s, "
                    f"{'kept up' if r.kept_up else 'fell behind'})"
                )
                loads.append(asdict(r))
                extra = len(loads) - len(load_plan(rate))
                if cfg.loads is None and not plan and r.kept_up and extra < RAMP_EXTRA_STEPS:
                    plan.append(round(offered * RAMP_FACTOR / 10) * 10)
            cap, how = capacity(rate, loads)
            say(f"capacity: {cap:,.0f} readings/s ({how})")

            # Goal 4, once the ramp's backlog is gone (the burst must not queue behind
            # readings): the same burst through canhbao and through Alertmanager.
            await settled(worker, EVALUATED, quiet_seconds=3.0, limit_seconds=600)
            peer_result = await _peer(cfg, broker.bootstrap, arrivals, receiver, work, say)

            fan = await fanout.run_fanout(broker.bootstrap, settings, cfg.subscribers)
            say(
                f"fan-out: {fan.subscribers:,} subscribers enqueued in {fan.seconds:.2f} s, "
                f"peak RSS {fan.peak_rss_mb:.0f} MB"
            )
            assert worker.proc is not None
            rss = peak_rss_mb(worker.proc.pid)
        finally:
            worker.stop()
            stop(dispatcher)
            await receiver.stop()
        # Goal 5: the same worker (same id: state restored from its changelog) with
        # many more stations; then two workers against one, on Apache Kafka.
        scale = None
        if cfg.scale_stations > 0:
            scale = await _scale(cfg, broker.bootstrap, env, settings, work, say)
        two: dict[str, Any] | None = None
        if cfg.two_workers:
            if broker.kind == "tansu":
                two = {"skipped": "two workers are measured on Apache Kafka (--broker kafka)"}
            else:
                two = await _two_workers(cfg, broker.bootstrap, stations, env, work, say)
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
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "broker": broker.kind,
        "readings": cfg.readings,
        "stations": cfg.stations,
        "baseline_readings_per_second": round(raw_rate),
        "pipeline_readings_per_second": round(rate),
        "ratio_to_baseline": round(rate / raw_rate, 3),
        # Moves far less than the wall-clock rate when other jobs share the machine:
        # compare versions of the worker with it, back to back.
        "pipeline_readings_per_cpu_second": (
            None if math.isnan(drained.per_cpu_second) else round(drained.per_cpu_second)
        ),
        "engine_readings_per_second": round(engine),
        "engine_ratio_to_baseline": round(engine / raw_rate, 3),
        "capacity_readings_per_second": round(cap),
        "capacity_found": how,
        "latency": loads,
        "p99_ms_at_2000": at_2000["p99_ms"] if at_2000 else None,
        "peer": peer_result,
        "fanout": asdict(fan),
        "worker_peak_rss_mb": round(rss, 1),
        "scale": scale,
        "two_workers": two,
        "backtest": asdict(backtest) if backtest is not None else None,
    }
    result["goals"] = judge(result)
    return result


async def _peer(
    cfg: BenchConfig, bootstrap: Kafka, arrivals: peer.Arrivals, receiver: peer.Receiver,
    work: Path, say: Any,
) -> dict[str, Any]:  # fmt: skip
    if cfg.peer == "none":
        return {"skipped": "not asked for (--peer none)"}
    path, why = await asyncio.to_thread(peer.find_alertmanager)
    if path is None:
        say(f"Alertmanager side by side skipped: {why}")
        return {"skipped": why}
    async with peer.alertmanager(path, work / "alertmanager", f"{receiver.base_url}/am") as url:
        r = await peer.run_peer(bootstrap, arrivals, url, path, cfg.peer_alerts)
    for name, side in (("canhbao", r.canhbao), ("Alertmanager", r.alertmanager)):
        say(
            f"{name}: {side.delivered:,}/{side.alerts:,} warnings in {side.seconds:.2f} s, "
            f"{side.alerts_per_second:,.0f}/s, p50 {side.p50_ms} ms, p99 {side.p99_ms} ms"
        )
    routed = r.canhbao
    if routed.routed_seconds is not None:
        say(
            f"canhbao's route stage wrote the burst's notifications in "
            f"{routed.routed_seconds:.2f} s ({routed.routed_per_second or 0:,.0f}/s); "
            "the rest was the dispatcher's"
        )
    return asdict(r)


async def _scale(
    cfg: BenchConfig, bootstrap: Kafka, env: dict[str, str], settings: Settings, work: Path,
    say: Any,
) -> dict[str, Any]:  # fmt: skip
    """One reading from each of ``scale_stations`` stations, through the same worker id
    restarted (its state of the first phase restored), and that worker's peak RSS."""
    stations = load.station_ids(cfg.scale_stations)
    messages = load.calm_readings(stations, len(stations), datetime.now(UTC), timedelta(minutes=1))
    await baseline.produce(bootstrap, INGEST_READINGS, messages)
    # The directory knows every station (an unknown one is refused before the rules).
    (work / "scale").mkdir()
    geography = bench_geography(settings.geography_path, work / "scale", stations)
    worker = Worker({**env, "CANHBAO_GEOGRAPHY_PATH": str(geography)}, work / "worker-scale.log")
    try:
        worker.start()
        t0 = time.perf_counter()
        await rate_until(worker, EVALUATED, len(messages), limit_seconds=900)
        seconds = time.perf_counter() - t0
        assert worker.proc is not None
        rss = peak_rss_mb(worker.proc.pid)
    finally:
        worker.stop()
    say(f"scale: {cfg.scale_stations:,} stations, worker peak RSS {rss:.0f} MB")
    return {
        "stations": cfg.scale_stations,
        "readings": len(messages),
        "seconds_with_restore": round(seconds, 1),
        "worker_peak_rss_mb": round(rss, 1),
    }


async def _two_workers(
    cfg: BenchConfig, bootstrap: Kafka, stations: list[str], env: dict[str, str], work: Path,
    say: Any,
) -> dict[str, Any]:  # fmt: skip
    """The throughput phase again with two workers of one id sharing the partitions."""
    # A second apart, ending now: after every earlier reading of these stations.
    per_station = -(-cfg.readings // len(stations))
    start_at = datetime.now(UTC) - timedelta(seconds=per_station)
    messages = load.calm_readings(stations, cfg.readings, start_at, timedelta(seconds=1))
    await baseline.produce(bootstrap, INGEST_READINGS, messages)
    # Each its own data folder, as two machines would have.
    workers = [
        Worker(
            {**env, "CANHBAO_DATA_DIR": str(work / f"data-two-{i}")}, work / f"worker-two-{i}.log"
        )
        for i in (1, 2)
    ]
    try:
        for w in workers:
            w.start()
        rate = await rate_until_all(workers, EVALUATED, cfg.readings, limit_seconds=600)
    except (RuntimeError, TimeoutError) as exc:
        # The other figures still count: this one says what went wrong.
        say(f"two workers: failed: {str(exc).splitlines()[0]}")
        return {"failed": str(exc)[-1500:]}
    finally:
        for w in workers:
            w.stop()
    say(f"two workers: {rate:,.0f} readings/s")
    return {"workers": 2, "readings": cfg.readings, "readings_per_second": round(rate)}


def run_sync(cfg: BenchConfig, settings: Settings, say: Any) -> dict[str, Any]:
    return asyncio.run(run(cfg, settings, say))
