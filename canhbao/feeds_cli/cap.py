"""``canhbao feed cap``: the command around :mod:`feeds.cap_ingest` (settings, brokers,
metrics served, run until signalled)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from feeds.cap_alerts import Areas, CapConfig, CapError, ConfigError, ReportRules, load_config
from feeds.cap_ingest import (
    CapIngest,
    Outcome,
    rules_in_force,
)
from topics.connection import Kafka

log = logging.getLogger(__name__)


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "cap",
        help="ingest CAP 1.2/1.1 alerts of upstream agencies (files, EDXL-DE, an Atom or RSS "
        "feed) as reports",
    )
    p.add_argument("files", nargs="*", type=Path, metavar="FILE", help="CAP or EDXL-DE files")
    p.add_argument("--url", help="a CAP Atom or RSS feed, an EDXL-DE or one CAP alert to poll")
    p.add_argument("--interval", type=float, default=60.0, help="seconds between polls (60)")
    p.add_argument("--once", action="store_true", help="poll the URL once and exit")
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="how alerts map to reports (default: CANHBAO_CAP_INGEST_CONFIG, "
        "config/cap_ingest.yaml)",
    )
    p.add_argument(
        "--state",
        type=Path,
        default=None,
        help="ids already sent (default: <feeds state dir>/cap-seen.json)",
    )
    p.set_defaults(func=cmd_cap)


def cmd_cap(args: argparse.Namespace) -> int:

    from alerting.directory import Directory
    from canhbao.running import brokers
    from canhbao.settings import get_settings

    if bool(args.files) == bool(args.url):
        print("canhbao feed cap: give either CAP files or --url", file=sys.stderr)
        return 2
    if args.interval <= 0:
        print("canhbao feed cap: --interval must be positive", file=sys.stderr)
        return 2
    settings = get_settings()
    try:
        config = load_config(args.config or settings.cap_ingest_config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    areas = Areas.of(Directory.load(settings.geography_path, settings.directory_path))
    state: Path | None = args.state or settings.feeds_state_dir / "cap-seen.json"
    if not settings.kafka_bootstrap and args.state is None:
        state = None  # the embedded broker forgets what it got: so must we
    with brokers(settings) as bootstrap:
        try:
            return asyncio.run(_main(args, areas, config, state, bootstrap))
        except CapError as exc:
            print(exc, file=sys.stderr)
            return 2


async def _main(
    args: argparse.Namespace, areas: Areas, config: CapConfig, state: Path | None, bootstrap: Kafka
) -> int:

    import aiohttp

    from canhbao import metrics
    from canhbao.running import until_signalled
    from canhbao.settings import get_settings
    from feeds.sink import KafkaSink

    settings = get_settings()

    async def refresh(current: ReportRules | None) -> ReportRules | None:
        return await rules_in_force(bootstrap, settings.rules_path, current)

    async with KafkaSink(bootstrap) as sink:
        ingest = CapIngest(
            sink,
            areas,
            config=config,
            rules=await refresh(None),
            refresh_rules=refresh if args.url and not args.once else None,
            state=state,
            accept_exercise=settings.exercise,
            policy=settings.time_policy(),
        )
        if args.files:
            for path in args.files:
                for outcome, detail in await ingest.ingest_file(path):
                    print(f"{path}: {outcome.value}: {detail}", file=sys.stderr)
            return 1 if ingest.stats.counts[Outcome.REJECTED] else 0
        if args.once:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
                await ingest.poll(session, args.url)
            print(
                ", ".join(f"{n} {o.value}" for o, n in ingest.stats.counts.items()), file=sys.stderr
            )
            return 0
        metrics.serve(settings.metrics_port)
        await until_signalled(ingest.follow(args.url, args.interval))
    return 0
