"""``canhbao feed http``: the command around :mod:`feeds.http_api` (settings, brokers,
metrics served, run until signalled)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from feeds.http_api import (
    READINGS_PATH,
    REPORTS_PATH,
    IngestAPI,
)
from topics.connection import Kafka

log = logging.getLogger(__name__)


async def serve_http(api: IngestAPI, host: str, port: int, stop: Any) -> None:
    """Serve until ``stop`` (an asyncio.Event) is set."""
    from aiohttp import web

    runner = web.AppRunner(api.app())
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port  # port 0: the OS chose
        print(
            f"HTTP ingest API on http://{host}:{bound} (POST {READINGS_PATH}, {REPORTS_PATH}; "
            "GET /openapi.json)",
            flush=True,
        )
        await stop.wait()
    finally:
        await runner.cleanup()


def cmd_http(args: argparse.Namespace) -> int:
    import asyncio

    from alerting.directory import ConfigError, Directory
    from canhbao import metrics
    from canhbao.running import brokers, stop_event
    from canhbao.settings import get_settings
    from feeds.apikeys import KeyFileError, KeyStore
    from feeds.sink import KafkaSink
    from topics.admin import create_topics

    settings = get_settings()
    try:
        keys = KeyStore.load(args.keys or settings.api_keys_path)
        directory = Directory.load(settings.geography_path, settings.directory_path)
    except (KeyFileError, ConfigError) as exc:
        print(exc, file=sys.stderr)
        return 2
    for s in keys.sources:
        if s.sample:
            print(f"warning: source {s.id!r} is a SAMPLE with a published key", file=sys.stderr)

    async def main(bootstrap: Kafka, embedded: bool) -> None:
        if embedded:  # nothing else would create them on a fresh embedded broker
            await create_topics(bootstrap, default_partitions=settings.partitions)
        metrics.serve(settings.metrics_port)
        stop = stop_event()
        async with KafkaSink(bootstrap) as sink:
            api = IngestAPI(
                sink,
                keys,
                directory=directory,
                policy=settings.time_policy(),
                max_body=settings.feed_http_max_body,
                max_items=settings.feed_http_max_items,
            )
            await serve_http(api, args.host, args.port, stop)

    with brokers(settings) as bootstrap:
        asyncio.run(main(bootstrap, not settings.kafka_bootstrap))
    return 0


def cmd_keys(args: argparse.Namespace) -> int:

    from canhbao.settings import get_settings
    from feeds.apikeys import KeyFileError, add_source, read_key_file, remove_source

    path = args.keys or get_settings().api_keys_path
    try:
        if args.action == "add":
            key = add_source(
                path,
                args.source_id,
                domains=args.domain,
                stations=args.station,
                rotate=args.rotate,
                hold_unknown_stations=args.hold_unknown_stations,
            )
            print(key)
            print(
                f"the key of {args.source_id!r}: shown only now; {path} keeps its SHA-256",
                file=sys.stderr,
            )
        elif args.action == "remove":
            if not remove_source(path, args.source_id):
                print(f"{path}: no source {args.source_id!r}", file=sys.stderr)
                return 1
        else:
            for s in read_key_file(path).sources:
                domains = ",".join(d.value for d in s.domains) if s.domains else "*"
                stations = ",".join(s.stations) if s.stations else "*"
                hold = " holds-unknown-stations" if s.hold_unknown_stations else ""
                note = f"  # {s.note}" if s.note else ""
                print(f"{s.id:24} domains={domains} stations={stations}{hold}{note}")
    except KeyFileError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


def add_parser(sub: Any) -> None:

    p = sub.add_parser("http", help="HTTP ingest API: POST readings and reports with an API key")
    p.add_argument("--host", default="127.0.0.1", help="address (0.0.0.0 in a container)")
    p.add_argument("--port", type=int, default=8780)
    p.add_argument("--keys", type=Path, default=None, help="key file (CANHBAO_API_KEYS_PATH)")
    p.set_defaults(func=cmd_http)

    p = sub.add_parser("keys", help="API keys of the HTTP ingest API (only hashes are stored)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--keys", type=Path, default=None, help="key file (CANHBAO_API_KEYS_PATH)")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("add", parents=[common], help="make a key for a source, print it once")
    a.add_argument("source_id")
    a.add_argument("--domain", action="append", default=[], help="allowed domain (repeatable)")
    a.add_argument("--station", action="append", default=[], help="allowed station (repeatable)")
    a.add_argument("--rotate", action="store_true", help="replace the key of an existing source")
    a.add_argument(
        "--hold-unknown-stations",
        action="store_true",
        default=None,
        help="the source may add stations: its readings from stations not in the "
        "geography are held (202, listed under 'held') instead of refused (400)",
    )
    actions.add_parser("list", parents=[common], help="the sources and their limits (no secrets)")
    r = actions.add_parser("remove", parents=[common], help="revoke a source's key")
    r.add_argument("source_id")
    p.set_defaults(func=cmd_keys)
