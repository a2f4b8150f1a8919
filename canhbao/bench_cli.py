"""``canhbao bench``: measure the pipeline against a raw aiokafka consumer, same run."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any


def _loads(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError("give positive readings/s, e.g. 500,1000,2000")
    return values


def cmd_bench(args: argparse.Namespace) -> int:
    from canhbao.bench.report import table
    from canhbao.bench.run import BenchConfig, run_sync
    from canhbao.settings import get_settings

    if args.soak is not None:
        return _soak(args, get_settings())
    cfg = BenchConfig(
        broker=args.broker,
        readings=args.readings,
        stations=args.stations,
        loads=args.loads,
        seconds_per_load=args.seconds,
        subscribers=args.subscribers,
        backtest_readings=args.backtest_readings,
        peer=args.peer,
        peer_alerts=args.peer_alerts,
        scale_stations=args.scale_stations,
    )
    if args.quick:  # a small run that keeps every phase working (CI), not a measurement
        cfg.readings, cfg.stations, cfg.seconds_per_load = 2_000, 200, 2.0
        cfg.loads = cfg.loads or [100, 200]
        cfg.subscribers, cfg.backtest_readings = 2_000, 1_000
        cfg.peer_alerts, cfg.scale_stations = 100, 300

    def say(text: str) -> None:
        print(f"  … {text}", file=sys.stderr, flush=True)

    result = run_sync(cfg, get_settings(), say)
    if args.chart:
        from canhbao.bench.chart import latency_svg

        args.chart.parent.mkdir(parents=True, exist_ok=True)
        args.chart.write_text(latency_svg(result), encoding="utf-8")
        say(f"latency chart written to {args.chart}")
    print(json.dumps(result, ensure_ascii=False, indent=2) if args.json else table(result))
    return 0


def _duration(text: str) -> float:
    from canhbao.bench.soak import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _soak(args: argparse.Namespace, settings: Any) -> int:
    """``--soak 30m``: only the soak (RELIABILITY.md), not the benchmark's phases."""
    import asyncio

    from canhbao.bench import soak

    cfg = soak.SoakConfig(
        broker=args.broker,
        seconds=args.soak,
        rate=args.soak_rate,
        stations=min(args.stations, 2000),
        window=soak.window_for(args.soak),
    )

    def say(text: str) -> None:
        print(f"  … {text}", file=sys.stderr, flush=True)

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # so the soak's processes and broker are stopped too

    signal.signal(signal.SIGTERM, interrupted)
    result = asyncio.run(soak.soak(cfg, settings, say))
    print(json.dumps(soak.as_json(result), indent=2) if args.json else soak.table(result))
    s = result.summary()
    return 1 if result.exited or s["delivered"] < s["probes"] else 0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark: pipeline throughput vs raw aiokafka, latency, fan-out, memory",
        description="Runs every phase against one broker: embedded Tansu (default), a local "
        "Apache Kafka (--broker kafka, from infra/kafka), or CANHBAO_KAFKA_BOOTSTRAP if set.",
    )
    p.add_argument("--broker", choices=["tansu", "kafka"], default="tansu")
    p.add_argument("--json", action="store_true", help="print one JSON object with the figures")
    p.add_argument("--readings", type=int, default=100_000, help="readings for throughput")
    p.add_argument("--stations", type=int, default=10_000, help="distinct stations")
    p.add_argument(
        "--loads",
        type=_loads,
        default=None,
        help="offered readings/s, e.g. 500,1000,2000 (default: a ramp from the measured "
        "capacity, 25 %% to 130 %% of it and on while the worker keeps up)",
    )
    p.add_argument("--seconds", type=float, default=10.0, help="seconds at each offered load")
    p.add_argument("--subscribers", type=int, default=1_000_000, help="citizens in the fan-out")
    p.add_argument(
        "--backtest-readings",
        type=int,
        default=100 * 365 * 24 * 4,
        help="readings in the backtest phase's history (100 stations, 15 min apart; "
        "default a year); 0 skips the phase",
    )
    p.add_argument(
        "--peer",
        choices=["alertmanager", "none"],
        default="alertmanager",
        help="the same burst of warnings through Debian's prometheus-alertmanager (installed "
        "with apt-get when missing and root; skipped with the reason otherwise)",
    )
    p.add_argument("--peer-alerts", type=int, default=10_000, help="warnings in that burst")
    p.add_argument(
        "--scale-stations",
        type=int,
        default=100_000,
        help="stations for the worker's memory at scale; 0 skips the phase",
    )
    p.add_argument("--chart", type=Path, help="write the latency-against-load chart (SVG) here")
    p.add_argument(
        "--quick", action="store_true", help="small sizes, every phase (for CI; not figures)"
    )
    p.add_argument(
        "--soak",
        type=_duration,
        metavar="DURATION",
        help="instead of the phases: a steady load for DURATION (60s, 30m, 1h), sampling "
        "memory per process, consumer lag and latency each window (RELIABILITY.md)",
    )
    p.add_argument("--soak-rate", type=int, default=500, help="calm readings/s during --soak")
    p.set_defaults(func=cmd_bench)
