"""``canhbao feed mqtt``: the command around :mod:`feeds.mqtt_bridge` (settings, brokers,
metrics served, run until signalled)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from feeds.mqtt_bridge import (
    Bridge,
    BridgeConfig,
    ConfigError,
    load_config,
)
from topics.connection import Kafka

log = logging.getLogger(__name__)


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "mqtt", help="bridge MQTT sensor topics to canhbao.ingest.readings"
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="topic mappings (default: CANHBAO_MQTT_BRIDGE_CONFIG, config/mqtt_bridge.yaml)",
    )
    p.set_defaults(func=cmd_mqtt)


def cmd_mqtt(args: argparse.Namespace) -> int:

    from canhbao.running import brokers
    from canhbao.settings import get_settings

    settings = get_settings()
    try:
        config = load_config(args.config or settings.mqtt_bridge_config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    with brokers(settings) as bootstrap:
        asyncio.run(_main(config, bootstrap))
    return 0


async def _main(config: BridgeConfig, bootstrap: Kafka) -> None:
    from canhbao import metrics
    from canhbao.running import until_signalled
    from canhbao.settings import get_settings
    from feeds.sink import KafkaSink

    settings = get_settings()
    metrics.serve(settings.metrics_port)
    password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
    async with KafkaSink(bootstrap) as sink:
        bridge = Bridge(
            config,
            sink,
            host=config.broker.host or settings.mqtt_host,
            port=config.broker.port or settings.mqtt_port,
            username=settings.mqtt_username,
            password=password,
            policy=settings.time_policy(),
        )
        await until_signalled(bridge.run())
        log.info(
            "mqtt-bridge: stopped (%d sent, %d rejected)", bridge.stats.sent, bridge.stats.rejected
        )
