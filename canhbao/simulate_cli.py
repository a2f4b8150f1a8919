"""``canhbao simulate SCENARIO``: feed a scenario's readings and reports into the pipeline."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from topics.connection import Kafka


def add_parsers(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "simulate",
        help="play a scenario (multi, flood, air, dengue, cyber, faulty) into the pipeline",
        description="Play a scenario's readings and reports into canhbao.ingest.* in "
        "compressed time, starting now. Without CANHBAO_KAFKA_BOOTSTRAP it starts an "
        "embedded broker, which no worker listens to: a smoke test only.",
    )
    p.add_argument("scenario", nargs="?", help="scenario name (see --list)")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument(
        "--speed",
        type=float,
        default=None,
        help="scenario seconds per real second (default: the scenario lasts about 45 s)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print the messages as JSONL with send offsets"
    )
    p.add_argument(
        "--start",
        type=datetime.fromisoformat,
        default=None,
        help="scenario start, ISO 8601 with an offset (default: now)",
    )
    p.add_argument(
        "--no-clock",
        action="store_true",
        help="do not tick canhbao.clock in scenario time (silences and windows then age "
        "on the wall clock only)",
    )
    p.set_defaults(func=cmd_simulate)


def list_scenarios(out: TextIO | None = None) -> None:
    from feeds.scenarios import DEFAULT, SCENARIOS
    from feeds.simulate import default_speed

    out = out or sys.stdout
    for s in SCENARIOS.values():
        mark = " (default demo)" if s.name == DEFAULT else ""
        span = _span(s.duration.total_seconds())
        print(f"{s.name:8} {span:>5}  {s.summary_vi}{mark}", file=out)
        print(f"{'':8} {'':>5}  {s.summary_en}  [--speed {default_speed(s):g}]", file=out)


def _span(seconds: float) -> str:
    if seconds >= 2 * 86_400:
        return f"{seconds / 86_400:g}d"
    return f"{seconds / 3600:g}h"


def cmd_simulate(args: argparse.Namespace) -> int:
    from feeds.scenarios import get
    from feeds.simulate import default_speed, jsonl, schedule

    if args.list:
        list_scenarios()
        return 0
    if not args.scenario:
        print("canhbao simulate: name a scenario, or --list", file=sys.stderr)
        return 2
    try:
        scenario = get(args.scenario)
    except KeyError as exc:
        print(f"canhbao simulate: {exc.args[0]}", file=sys.stderr)
        return 2
    start = args.start or datetime.now(UTC)
    if start.tzinfo is None:
        print("canhbao simulate: --start needs a UTC offset, e.g. +07:00", file=sys.stderr)
        return 2
    speed = default_speed(scenario) if args.speed is None else args.speed
    if speed <= 0:
        print("canhbao simulate: --speed must be positive", file=sys.stderr)
        return 2
    # The drill's clock: scenario time `start` now (the run starts after this instant).
    items = schedule(scenario, start, speed, origin=datetime.now(UTC), clock=not args.no_clock)
    if args.dry_run:
        try:
            for line in jsonl(items):
                print(line)
            sys.stdout.flush()
        except BrokenPipeError:
            # `simulate ... --dry-run | head`: the reader has all it wanted.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return _live(scenario.name, items, speed)


def _live(name: str, items: list[Any], speed: float) -> int:
    from canhbao.broker import kafka_cluster
    from canhbao.settings import get_settings
    from feeds.simulate import KafkaBroadcaster, Played, play
    from feeds.sink import KafkaSink
    from topics.admin import create_topics

    settings = get_settings()
    embedded = not settings.kafka_bootstrap
    last = time.monotonic()

    def progress(p: Played) -> None:
        nonlocal last
        if time.monotonic() - last < 2.0 and p.last is not items[-1]:
            return
        last = time.monotonic()
        at = p.last.scenario_at if p.last is not None else None
        when = f" (scenario {at:%d/%m %H:%M})" if at is not None else ""
        print(
            f"sent {p.readings} readings, {p.reports} reports, {p.ticks} ticks{when}",
            file=sys.stderr,
            flush=True,
        )

    async def run(bootstrap: Kafka) -> Played:
        if embedded:
            await create_topics(
                bootstrap,
                default_partitions=settings.partitions,
                replication_factor=settings.replication_factor,
            )
        broadcaster = KafkaBroadcaster(bootstrap)
        await broadcaster.start()
        sink = KafkaSink(bootstrap, linger_ms=1)
        await sink.start()
        try:
            return await play(items, sink, broadcaster, on_sent=progress)
        finally:
            await sink.stop()
            await broadcaster.stop()

    with kafka_cluster(settings) as bootstrap:
        where = f"embedded Tansu on {bootstrap} (nothing else listens)" if embedded else bootstrap
        print(
            f"simulate {name}: {len(items)} messages at {speed:g}× to {where}",
            file=sys.stderr,
            flush=True,
        )
        if not embedded:
            # Future-dated readings and scenario-time ticks would confuse real stations'
            # state (out-of-order readings, false data gaps): a drill cluster only.
            print(
                "  readings are dated from now on in scenario time and the pipeline clock "
                "ticks in scenario time: use a drill or demo cluster, not production",
                file=sys.stderr,
            )
        played = asyncio.run(run(bootstrap))
    print(
        f"done: {played.readings} readings, {played.reports} reports, {played.ticks} ticks "
        f"in {played.seconds:.1f} s",
        file=sys.stderr,
    )
    return 0
