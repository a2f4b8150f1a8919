"""Serving and reading ``/metrics``. The families themselves are ``topics.metrics``."""

from __future__ import annotations

import urllib.request

from prometheus_client import start_http_server


def scrape_counter(port: int, name: str) -> float | None:
    """A counter summed over its labels, read from the ``/metrics`` a process serves on
    127.0.0.1:``port``; None while nothing answers there (not started yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((name + "{", name + " "))
    )


def serve(port: int) -> None:
    """Expose /metrics on ``port`` (0 disables)."""
    if port:
        start_http_server(port, addr="0.0.0.0")
