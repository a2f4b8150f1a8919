"""``canhbao feed suricata``: the command around :mod:`feeds.suricata` (settings, brokers,
metrics served, run until signalled)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from feeds.suricata import (
    DEFAULT_STATION,
    DEFAULT_WEB_STATION,
    EveConfig,
    EveError,
    EveTailer,
    _slug,
    areas_of,
    parse_sensors,
    unknown_stations,
)
from pipeline.validate import TimePolicy
from topics.connection import Kafka

log = logging.getLogger(__name__)


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "suricata", help="follow a Suricata EVE JSON file: IDS alerts to cyber readings"
    )
    p.add_argument("eve_file", type=Path, metavar="EVE_FILE")
    p.add_argument(
        "--state",
        type=Path,
        default=None,
        help="offset file (default: <feeds state dir>/suricata-<name>.json)",
    )
    p.add_argument(
        "--from-start",
        action="store_true",
        help="read the file from the beginning, not from the saved offset or its end",
    )
    p.add_argument(
        "--station",
        default=DEFAULT_STATION,
        help=f"station of the IDS sensor (default {DEFAULT_STATION})",
    )
    p.add_argument(
        "--sensor",
        action="append",
        default=[],
        metavar="HOST=STATION",
        help="station of one sensor, by the EVE 'host' field (repeatable)",
    )
    p.add_argument(
        "--web-station",
        default=DEFAULT_WEB_STATION,
        help="station for failed logins and HTTP request counts",
    )
    p.add_argument(
        "--report-sid",
        action="append",
        type=int,
        default=[],
        metavar="SID",
        help="also report alerts of this signature id as an intrusion (repeatable)",
    )
    p.set_defaults(func=cmd_suricata)


def cmd_suricata(args: argparse.Namespace) -> int:

    from alerting.directory import Directory
    from canhbao.running import brokers
    from canhbao.settings import get_settings

    settings = get_settings()
    try:
        directory = Directory.load(settings.geography_path, settings.directory_path)
        config = EveConfig(
            station=args.station,
            sensors=parse_sensors(args.sensor),
            web_station=args.web_station,
            report_sids=frozenset(args.report_sid),
            areas=areas_of(directory),
        )
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    unknown = unknown_stations(config, directory)
    if unknown:
        print(
            f"station(s) {', '.join(unknown)} are not in the geography "
            f"({settings.geography_path}): their readings would all be refused",
            file=sys.stderr,
        )
        return 2
    policy = settings.time_policy()
    state = args.state or settings.feeds_state_dir / f"suricata-{_slug(str(args.eve_file))}.json"
    with contextlib.ExitStack() as stack:
        if not settings.kafka_bootstrap and args.state is None:
            # The embedded broker forgets what it got: an offset saved for it would make a
            # later run against the real cluster skip those events.
            state = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "state.json"
        bootstrap = stack.enter_context(brokers(settings))
        try:
            asyncio.run(_main(args.eve_file, state, config, args.from_start, bootstrap, policy))
        except EveError as exc:
            print(exc, file=sys.stderr)
            return 2
    return 0


async def _main(
    eve: Path,
    state: Path,
    config: EveConfig,
    from_start: bool,
    bootstrap: Kafka,
    policy: TimePolicy,
) -> None:
    from canhbao import metrics
    from canhbao.running import until_signalled
    from canhbao.settings import get_settings
    from feeds.sink import KafkaSink

    metrics.serve(get_settings().metrics_port)
    async with KafkaSink(bootstrap) as sink:
        tailer = EveTailer(eve, state, sink, config, from_start=from_start, policy=policy)
        await until_signalled(tailer.run())
        log.info(
            "suricata: stopped at %s (%d lines, %d sent, %d rejected, %d historical not sent)",
            state,
            tailer.stats.lines,
            tailer.stats.sent,
            tailer.stats.rejected,
            tailer.stats.historical,
        )
