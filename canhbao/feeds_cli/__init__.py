"""``canhbao feed ...``: run one inbound adapter. Each adapter module in ``feeds/``
exposes ``add_parser(subparsers)``; heavy imports stay inside its command."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

# One line per adapter; the order is the order of ``canhbao feed --help``.
ADAPTERS: tuple[str, ...] = (
    "canhbao.feeds_cli.http",
    "canhbao.feeds_cli.replay",
    "canhbao.feeds_cli.mqtt",
    "canhbao.feeds_cli.suricata",
    "canhbao.feeds_cli.cap",
)


def add_parsers(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "feed", help="run an inbound adapter (HTTP API, MQTT, file replay, Suricata, CAP)"
    )
    feeds = p.add_subparsers(dest="feed", required=True)
    for name in ADAPTERS:
        importlib.import_module(name).add_parser(feeds)
