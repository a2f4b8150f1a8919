"""The pipeline under test, as users run it: ``canhbao worker`` and ``canhbao dispatch
webhook`` in their own processes, watched through the worker's /metrics endpoint."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from canhbao.broker import free_port
from canhbao.metrics import scrape_counter
from canhbao.processes import spawn, stop


def cpu_seconds(pid: int) -> float:
    """The user + system CPU time process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the most resident memory the process ever had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Worker:
    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**self.env, "CANHBAO_METRICS_PORT": str(self.port)}
        self.proc = spawn(["worker"], env, self.log)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def check(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"the worker exited; the end of its log:\n{tail}")

    def counter(self, name: str) -> float | None:
        return scrape_counter(self.port, name)

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        return cpu_seconds(self.proc.pid)


@dataclass
class Drain:
    """How fast a worker drained a backlog: per second of the wall clock, and per
    second of its own CPU time (which other jobs on the machine move far less)."""

    per_second: float
    per_cpu_second: float


async def drain_rate(
    worker: Worker, name: str, target: float, limit_seconds: float, poll: float = 0.2
) -> Drain:
    """:func:`rate_until`, and the readings per CPU-second of the worker over the same
    window (from the poll that saw the counter move)."""
    marks: list[tuple[float, float]] = []  # (count, worker CPU seconds)
    rate = await rate_until(worker, name, target, limit_seconds, poll, marks)
    (first, cpu0), (last, cpu1) = marks[0], marks[-1]
    per_cpu = (last - first) / (cpu1 - cpu0) if last > first and cpu1 > cpu0 else float("nan")
    return Drain(rate, per_cpu)


async def rate_until(
    worker: Worker,
    name: str,
    target: float,
    limit_seconds: float,
    poll: float = 0.2,
    marks: list[tuple[float, float]] | None = None,
) -> float:
    """Poll until ``name`` reaches ``target``; the counter's rate per second between the
    first poll that saw it move and the one that saw it done. When one poll saw it all
    (a small run), from the worker's metrics coming up instead: joining the consumer
    group then counts too, so small runs understate the rate."""
    first = first_at = up_at = 0.0
    deadline = time.monotonic() + limit_seconds
    while True:
        worker.check()
        seen = await asyncio.to_thread(worker.counter, name)
        now = time.perf_counter()
        count = seen or 0.0
        if seen is not None and not up_at:
            up_at = now
        if count > 0 and not first:
            first, first_at = count, now
            if marks is not None:
                marks.append((count, worker.cpu_seconds()))
        if count >= target:
            if marks is not None:
                marks.append((count, worker.cpu_seconds()))
            if now > first_at and count > first:
                return (count - first) / (now - first_at)
            return count / (now - up_at)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: {count:.0f} of {target:.0f} in {limit_seconds:.0f} s")
        await asyncio.sleep(poll)


async def rate_until_all(
    workers: list[Worker], name: str, target: float, limit_seconds: float, poll: float = 0.2
) -> float:
    """:func:`rate_until` over the sum of several workers' counters (each new process
    counts from zero)."""
    first = first_at = 0.0
    started = time.perf_counter()
    deadline = time.monotonic() + limit_seconds
    while True:
        count = 0.0
        for w in workers:
            w.check()
            seen = await asyncio.to_thread(w.counter, name)
            count += seen or 0.0
        now = time.perf_counter()
        if count > 0 and not first:
            first, first_at = count, now
        if count >= target:
            if now > first_at:
                return (count - first) / (now - first_at)
            # All of it drained before the first look (a small run): from the start.
            return count / (now - started)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: {count:.0f} of {target:.0f} in {limit_seconds:.0f} s")
        await asyncio.sleep(poll)


async def settled(
    worker: Worker, name: str, quiet_seconds: float, limit_seconds: float, poll: float = 0.5
) -> float:
    """Wait until ``name`` has not moved for ``quiet_seconds`` (the worker's backlog is
    drained); its value then. Gives up quietly after ``limit_seconds``."""
    deadline = time.monotonic() + limit_seconds
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        worker.check()
        seen = await asyncio.to_thread(worker.counter, name)
        if seen != last:
            last, since = seen, time.monotonic()
        elif time.monotonic() - since >= quiet_seconds:
            break
        await asyncio.sleep(poll)
    return last or 0.0
