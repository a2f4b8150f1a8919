"""What every ``canhbao feed`` command does around its adapter: find the brokers (or
start the embedded one, saying so), and run until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Coroutine, Iterator
from typing import Any

from canhbao.settings import Settings


@contextlib.contextmanager
def brokers(settings: Settings) -> Iterator[str]:
    """The configured bootstrap servers, or an embedded Tansu for the command's life."""
    from canhbao.broker import kafka_bootstrap

    with kafka_bootstrap(settings.kafka_bootstrap) as bootstrap:
        if not settings.kafka_bootstrap:
            print(f"embedded Tansu broker on {bootstrap} (memory only)", file=sys.stderr)
        yield bootstrap


async def until_signalled(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` until it ends or SIGINT/SIGTERM cancels it (a clean stop)."""
    task = asyncio.create_task(work)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
