"""Serving and reading ``/metrics``. The families themselves are ``topics.metrics``."""

from __future__ import annotations

import asyncio
import threading
import urllib.request
from collections.abc import Sequence

from prometheus_client import start_http_server

from topics.connection import Kafka
from topics.lag import LagMonitor
from topics.metrics import Metrics

ALL_GROUPS: None = None  # lag of every consumer group of the cluster (the console)


def scrape(port: int, host: str = "127.0.0.1", path: str = "/metrics") -> str | None:
    """The text a process serves at ``/metrics``; None while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=2) as resp:
            return str(resp.read().decode())
    except OSError:
        return None


def scrape_counter(port: int, name: str) -> float | None:
    """A counter summed over its labels, read from the ``/metrics`` a process serves on
    127.0.0.1:``port``; None while nothing answers there (not started yet)."""
    text = scrape(port)
    if text is None:
        return None
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((name + "{", name + " "))
    )


def serve(
    port: int,
    bootstrap: Kafka | None = None,
    groups: Sequence[str] | None = (),
) -> LagWatch | None:
    """Expose /metrics on ``port`` (0 disables). With ``bootstrap``, also measure the
    consumer lag of ``groups`` (``ALL_GROUPS``: every group) into it, in a thread of
    its own: the service's event loop (Faust's, for the worker) is left alone."""
    if not port:
        return None
    start_http_server(port, addr="0.0.0.0")
    if bootstrap is not None and (groups is None or groups):
        return LagWatch(bootstrap, groups)
    return None


class LagWatch:
    """Consumer lag measured into the process's metrics, in a daemon thread, until
    :meth:`stop` (or the process ends)."""

    def __init__(self, bootstrap: Kafka, groups: Sequence[str] | None) -> None:
        self.monitor = LagMonitor(bootstrap, Metrics.default(), groups)
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self.thread = threading.Thread(target=self._run, name="canhbao-lag", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self._loop.run_until_complete(self.monitor.run(self._stop))
        self._loop.close()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop measuring (before the broker goes away, so nothing logs its absence)."""
        if self.thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self.thread.join(timeout)
