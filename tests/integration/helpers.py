"""Helpers for the integration suite: a worker subprocess, topic readers, a producer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from canhbao.broker import embedded_env, rebalance_timeout
from topics.admin import create_topics
from topics.kafka import topic_partitions

REPO = Path(__file__).resolve().parents[2]


def run_canhbao(
    *args: str,
    env: dict[str, str] | None = None,
    bootstrap: str | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """``canhbao ARGS`` as a user runs it, output captured; ``env`` is the whole
    environment (default: this process's), ``bootstrap`` the brokers to use."""
    env = dict(os.environ if env is None else env)
    if bootstrap is not None:
        env["CANHBAO_KAFKA_BOOTSTRAP"] = bootstrap
    return subprocess.run(
        [sys.executable, "-m", "canhbao", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def worker_env(bootstrap: str, kind: str, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "CANHBAO_KAFKA_BOOTSTRAP": bootstrap,
        # Tansu answers JoinGroup after the rebalance timeout; keep it short there.
        "CANHBAO_REBALANCE_TIMEOUT": str(rebalance_timeout(kind == "tansu", 10.0)),
        "CANHBAO_LOG_LEVEL": os.environ.get("TEST_WORKER_LOG_LEVEL", "info"),
    }
    if kind == "tansu":
        env.update(embedded_env())
    env.update(extra)
    return env


@contextlib.contextmanager
def running_worker(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``canhbao worker`` as a real subprocess; stopped with SIGTERM at the end."""
    with running(["worker"], env, log) as proc:
        yield proc


@contextlib.contextmanager
def running(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``canhbao ARGS`` as a real subprocess; stopped with SIGTERM at the end (killed
    if it has not stopped 20 s later)."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "canhbao", *args],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
        )  # fmt: skip
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def dispatcher_process(
    bootstrap: str, log: Path, channel: str = "webhook", **extra: str
) -> subprocess.Popen[bytes]:
    """``canhbao dispatch CHANNEL`` as a real subprocess (to be killed or stopped)."""
    env = {**os.environ, "CANHBAO_KAFKA_BOOTSTRAP": bootstrap,
           "CANHBAO_REBALANCE_TIMEOUT": "2", "CANHBAO_LOG_LEVEL": "info", **extra}  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "canhbao", "dispatch", channel], env=env, cwd=REPO,
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip


async def ensure_topics(bootstrap: str) -> None:
    await create_topics(bootstrap, default_partitions=3)


@contextlib.asynccontextmanager
async def producer(bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


async def collect(
    bootstrap: str,
    topic: str,
    until: Callable[[list[bytes]], bool],
    timeout: float = 60.0,
) -> list[bytes]:
    """Read ``topic`` from the beginning until ``until(values)`` holds; fail on timeout."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while not until(values):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{topic}: condition not met in {timeout:.0f} s; got {values}")
            batch = await consumer.getmany(timeout_ms=int(min(left, 0.5) * 1000))
            for records in batch.values():
                values.extend(r.value or b"" for r in records)
    finally:
        await consumer.stop()
    return values


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.1)


async def group_lag(
    admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer, group: str, topic: str
) -> dict[int, int]:
    """Per partition of ``topic``, how many records consumer group ``group`` has not
    committed yet (the whole partition when it has committed nothing)."""
    tps = await topic_partitions(admin, topic)
    ends = await consumer.end_offsets(tps)
    committed = await admin.list_consumer_group_offsets(group, partitions=tps)
    done = {
        tp: (meta.offset if meta is not None and meta.offset >= 0 else 0)
        for tp, meta in committed.items()
    }
    return {tp.partition: ends[tp] - done.get(tp, 0) for tp in tps}


async def wait_caught_up(
    bootstrap: str, group_topics: dict[str, str], timeout: float, what: str
) -> None:
    """Wait until every group in ``group_topics`` (group → topic) has committed every
    record of its topic: each one was handled, not just read (commits follow the work)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            lags = {g: await group_lag(admin, consumer, g, t) for g, t in group_topics.items()}
            if all(not any(lag.values()) for lag in lags.values()):
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{what}: records not yet handled, per group and partition: {lags}"
                )
            await asyncio.sleep(0.5)
    finally:
        await consumer.stop()
        await admin.close()


@contextlib.contextmanager
def console_process(env: dict[str, str], log: Path) -> Iterator[str]:
    """``canhbao console`` on a free port with ``env``, its output in ``log`` (CI keeps
    it with the screenshots); yields its address once it answers, stops it at the end."""
    from canhbao.broker import free_port
    from tests.servers import wait_for_port

    port = free_port()
    log.parent.mkdir(exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "canhbao", "console", "--port", str(port)],
            env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_for_port(port, proc, "canhbao console", timeout=60)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
