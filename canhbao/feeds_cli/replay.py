"""``canhbao feed replay``: the command around :mod:`feeds.file_replay` (settings, brokers,
metrics served, run until signalled)."""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from feeds.file_replay import (
    FEED,
    Planned,
    plan,
    print_plan,
    read_history,
    replay,
    screen,
)
from topics.models import Domain

log = logging.getLogger(__name__)


def _rule_domains() -> dict[str, Domain]:
    """metric -> domain from the rules in force (for CSV rows without a domain)."""
    from canhbao.settings import get_settings
    from pipeline.rules.loader import RuleError, load_rules

    try:
        rules = load_rules(get_settings().rules_path)
    except (RuleError, OSError) as exc:
        print(f"warning: rules not loaded, CSV rows need a domain: {exc}", file=sys.stderr)
        return {}
    return {r.selector.metric: r.domain for r in rules.rules if r.selector.metric}


async def _send(planned: list[Planned], speed: float) -> None:
    from canhbao.broker import kafka_cluster
    from canhbao.settings import get_settings
    from feeds.sink import KafkaSink
    from topics.admin import create_topics

    settings = get_settings()

    def progress(at: float, chunk: list[Planned]) -> None:
        if speed:
            last = chunk[-1].reading
            print(
                f"+{at:8.1f}s  sent {len(chunk):4}  up to {last.observed_at.isoformat()} "
                f"({last.station_id})",
                file=sys.stderr,
            )

    with kafka_cluster(settings) as bootstrap:
        if not settings.kafka_bootstrap:
            print(
                f"embedded Tansu broker on {bootstrap}: memory only, gone when the replay "
                "ends; set CANHBAO_KAFKA_BOOTSTRAP to feed a running pipeline",
                file=sys.stderr,
            )
            await create_topics(bootstrap, default_partitions=settings.partitions)
        async with KafkaSink(bootstrap) as sink:
            await replay(planned, sink, on_batch=progress)


def cmd_replay(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    from datetime import UTC

    from alerting.directory import ConfigError, Directory
    from canhbao.settings import get_settings
    from topics.metrics import Metrics

    try:
        default = Domain(args.domain) if args.domain else None
    except ValueError:
        print(f"--domain: one of {', '.join(d.value for d in Domain)}", file=sys.stderr)
        return 2
    if args.shift_to_now and not args.speed:
        print(
            "--shift-to-now plays a drill in compressed time: give its --speed "
            "(e.g. 3600: an hour a second)",
            file=sys.stderr,
        )
        return 2
    settings = get_settings()
    try:
        directory = Directory.load(settings.geography_path, settings.directory_path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    loaded = read_history(args.files, _rule_domains() if not default else {}, default)
    for bad in loaded.bad:
        print(bad, file=sys.stderr)
    now = datetime.now(UTC).replace(microsecond=0)
    planned = plan(loaded.readings, args.speed, now if args.shift_to_now else None)
    policy = settings.time_policy()
    # A drill's times are judged in the pipeline on its own clock as they arrive.
    when = None if args.shift_to_now else now
    screened = screen([p.reading for p in planned], now=when, policy=policy, directory=directory)
    kept = {id(r) for r in screened.kept}
    planned = [p for p in planned if id(p.reading) in kept]
    for code, n in screened.refused.items():
        Metrics.default().feed_refused.labels(FEED, code).inc(n)
    for line in screened.lines(policy):
        logging.getLogger(__name__).warning("replay: %s", line)
    if args.dry_run:
        print_plan(planned, sys.stdout)
    elif planned:
        asyncio.run(_send(planned, args.speed))
    what = "would send" if args.dry_run else "sent"
    span = f" over {planned[-1].due:.1f} s" if planned else ""
    refused = sum(screened.refused.values())
    print(
        f"{what} {len(planned)} readings from {len(args.files)} file(s){span}; "
        f"{refused} not sent; {len(loaded.bad)} bad line(s)",
        file=sys.stderr,
    )
    return 1 if loaded.bad or refused else 0


def _speed(text: str) -> float:
    value = float(text)
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError("0 (as fast as possible) or a positive factor")
    return value


def add_parser(sub: Any) -> None:
    p = sub.add_parser("replay", help="replay CSV/JSONL history onto the ingest topic")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="CSV or JSONL history")
    p.add_argument(
        "--speed",
        type=_speed,
        default=0.0,
        help="history seconds per wall second (3600: an hour a second); "
        "0 (default): as fast as possible",
    )
    p.add_argument(
        "--shift-to-now",
        action="store_true",
        help="stamp the first reading now, keep the gaps (a drill, needs --speed); "
        "default: keep the original times (readings older than the live lateness bound "
        "are history and are not sent)",
    )
    p.add_argument("--dry-run", action="store_true", help="print what would be sent, and when")
    p.add_argument("--domain", default=None, help="domain for CSV rows without one")
    p.set_defaults(func=cmd_replay)
