"""Running the console: the Kafka feeds and writer around the web application."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from aiohttp import web

from console.accounts import Accounts
from console.board import Board
from console.health import KafkaRules, MonitoredLag
from console.history import History
from console.kafka import Feeds, KafkaWriter
from console.pages import Sources
from console.web import ConsoleConfig, make_app
from topics.connection import Kafka
from topics.lag import LagMonitor
from topics.metrics import Metrics


async def serve(
    bootstrap: Kafka,
    accounts: Accounts,
    host: str,
    port: int,
    stop: asyncio.Event,
    config: ConsoleConfig | None = None,
    metrics: Metrics | None = None,
    history: History | None = None,
    sources: Sources | None = None,
) -> None:
    """Serve the console on ``host:port`` until ``stop`` is set. ``sources``: what the
    read-only pages read besides Kafka (geography, the record and its API)."""
    board = Board()
    feeds = Feeds(bootstrap, board)
    writer = KafkaWriter(bootstrap)
    metrics = metrics or Metrics.default()
    # The console shows the whole pipeline's health: every consumer group's lag, measured
    # once for the gauge and the health page alike.
    monitor = LagMonitor(bootstrap, metrics)
    sources = replace(
        sources or Sources(), kafka=MonitoredLag(monitor), rules=KafkaRules(bootstrap)
    )
    lag_stop = asyncio.Event()
    lag = asyncio.create_task(monitor.run(lag_stop))
    await writer.start()
    await feeds.start()
    app = make_app(accounts, board, writer, config, metrics, history, sources=sources)
    runner = web.AppRunner(app, shutdown_timeout=2)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        print(f"console: http://{host}:{port}/", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()
        lag_stop.set()
        await asyncio.gather(lag, return_exceptions=True)
        await feeds.stop()
        await writer.stop()
