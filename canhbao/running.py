"""How every long-running command runs: on the configured brokers (or an embedded
Tansu, saying so) until SIGINT or SIGTERM. The one place that installs signal handlers;
the services below only take a stop event or get cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from canhbao.settings import Settings
from topics.connection import KafkaConnection


@contextlib.contextmanager
def brokers(settings: Settings) -> Iterator[KafkaConnection]:
    """The configured bootstrap servers, or an embedded Tansu for the command's life."""
    from canhbao.broker import kafka_cluster

    with kafka_cluster(settings) as bootstrap:
        if not settings.kafka_bootstrap:
            print(f"embedded Tansu broker on {bootstrap} (memory only)", file=sys.stderr)
        yield bootstrap


def on_signal(stop: Callable[[], object]) -> None:
    """Call ``stop`` at SIGINT or SIGTERM (a clean stop), in the running loop."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)


def stop_event() -> asyncio.Event:
    """An event set at SIGINT or SIGTERM."""
    stop = asyncio.Event()
    on_signal(stop.set)
    return stop


async def until_signalled(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` until it ends or SIGINT/SIGTERM cancels it (a clean stop)."""
    task = asyncio.create_task(work)
    on_signal(task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
