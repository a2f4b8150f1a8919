"""Running the console: the Kafka feeds and writer around the web application."""

from __future__ import annotations

import asyncio

from aiohttp import web

from console.accounts import Accounts
from console.board import Board
from console.kafka import Feeds, KafkaWriter
from console.web import ConsoleConfig, make_app
from topics.connection import Kafka
from topics.metrics import Metrics


async def serve(
    bootstrap: Kafka,
    accounts: Accounts,
    host: str,
    port: int,
    stop: asyncio.Event,
    config: ConsoleConfig | None = None,
    metrics: Metrics | None = None,
) -> None:
    """Serve the console on ``host:port`` until ``stop`` is set."""
    board = Board()
    feeds = Feeds(bootstrap, board)
    writer = KafkaWriter(bootstrap)
    await writer.start()
    await feeds.start()
    runner = web.AppRunner(make_app(accounts, board, writer, config, metrics), shutdown_timeout=2)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        print(f"console: http://{host}:{port}/", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()
        await feeds.stop()
        await writer.stop()
