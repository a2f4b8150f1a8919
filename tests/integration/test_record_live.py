"""The threat record on a real broker: ``canhbao record`` killed with SIGKILL at
random points while a scenario is published, and restarted each time, ends with
exactly the rows of a recorder that ran through without interruption, on SQLite
and on PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from recorder import migrate
from recorder.decode import decode
from recorder.readings import ReadingSelection
from recorder.store import Store
from tests import servers
from tests.conftest import Broker
from tests.integration.helpers import REPO, ensure_topics, producer, run_canhbao, worker_env
from tests.record_db import dump, incoming
from tests.record_stream import Msg, stream
from topics.catalogue import CONTROL_RULES

pytestmark = pytest.mark.integration

SKIP = ("kafka_offsets",)  # compared on their own: the two recorders' groups differ
# The scenario's readings are from 2025: keep them (the purge would, rightly, not).
KEEP_READINGS = {"CANHBAO_RECORD_READINGS_DAYS": "36500"}


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.server("postgresql"))]
)
def databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Makes a fresh, empty database by name; returns its URL."""
    if request.param == "sqlite":
        yield lambda name: f"sqlite+aiosqlite:///{tmp_path / name}.db"
        return
    with servers.postgresql() as url:

        def create(name: str) -> str:
            async def go() -> None:
                import asyncpg

                conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
                await conn.execute(f'CREATE DATABASE "{name}"')
                await conn.close()

            # Called from the test's event loop: run this one in a thread of its own.
            with ThreadPoolExecutor(1) as pool:
                pool.submit(asyncio.run, go()).result()
            return url.rsplit("/", 1)[0] + f"/{name}"

        yield create


def start_recorder(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "canhbao", "record"],
            env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


@contextlib.asynccontextmanager
async def opened(url: str) -> AsyncIterator[Store]:
    store = Store.open(url)
    try:
        yield store
    finally:
        await store.close()


async def expected_counts(messages: list[Msg], tmp: Path) -> dict[str, int]:
    """Rows per table that recording ``messages`` once gives (applied directly)."""
    async with opened(f"sqlite+aiosqlite:///{tmp / 'expected.db'}") as store:
        await migrate.upgrade(store.engine)
        await store.apply("expected", decode(incoming(messages), ReadingSelection()), {})
        return {t: len(rows) for t, rows in (await dump(store.engine, SKIP)).items()}


async def caught_up(url: str, want: dict[str, int], within: float) -> None:
    """Until the database holds the rows of the whole stream (Tansu's end offsets
    are not a count of records, so the rows say when the recorder is done)."""
    deadline = time.monotonic() + within
    async with opened(url) as store:
        while True:
            have = {t: len(rows) for t, rows in (await dump(store.engine, SKIP)).items()}
            if have == want:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not caught up in {within:.0f} s: {have} != {want}")
            await asyncio.sleep(0.5)


async def apply_rules_first(bootstrap: str, messages: list[Msg]) -> list[Msg]:
    """Publish the stream's rule set before any recorder starts (the province applies
    its rules before readings flow: which readings are recorded follows the set in
    force, so it must be the same for the killed and the clean recorder); the rest."""
    async with producer(bootstrap) as p:
        for topic, key, value in messages:
            if topic == CONTROL_RULES:
                await p.send(topic, value, key=key)
        await p.flush()
    return [m for m in messages if m[0] != CONTROL_RULES]


async def progressed(url: str, group: str, since: int, within: float) -> int:
    """Records consumed (the sum of the stored offsets) once more than ``since``; the
    same number if nothing more came within ``within`` seconds (all recorded)."""
    deadline = time.monotonic() + within
    async with opened(url) as store:
        while True:
            consumed = sum((await store.offsets(group)).values())
            if consumed > since or time.monotonic() > deadline:
                return consumed
            await asyncio.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def test_a_recorder_killed_at_random_points_records_exactly_what_an_uninterrupted_one_does(
    broker: Broker, databases: Callable[[str], str], tmp_path: Path
) -> None:
    await ensure_topics(broker.bootstrap)
    killed_url, clean_url = databases("killed"), databases("clean")
    for url in (killed_url, clean_url):
        done = run_canhbao("db", "upgrade", env={**os.environ, "CANHBAO_DATABASE_URL": url})
        assert done.returncode == 0, done.stderr

    messages = stream(40)
    want = await expected_counts(messages, tmp_path)
    messages = await apply_rules_first(broker.bootstrap, messages)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"kill points drawn with seed {seed}")

    async def publish() -> None:
        async with producer(broker.bootstrap) as p:
            for i in range(0, len(messages), 10):
                for topic, key, value in messages[i : i + 10]:
                    await p.send(topic, value, key=key)
                await p.flush()
                # Slow enough (about 20 s) that each restarted recorder, which takes a
                # few seconds to join its group, has work left to be killed in.
                await asyncio.sleep(0.3)

    env = worker_env(broker.bootstrap, broker.kind, CANHBAO_DATABASE_URL=killed_url,
                     CANHBAO_RECORD_GROUP_ID="record-killed", **KEEP_READINGS)  # fmt: skip
    log = tmp_path / "recorder-killed.log"
    proc = start_recorder(env, log)
    publishing = asyncio.create_task(publish())
    mid_stream = 0
    try:
        recorded = 0
        for _ in range(4):
            # Once this run of the recorder has committed something, kill it at a
            # random moment: mid-batch, mid-commit or between batches.
            recorded = await progressed(killed_url, "record-killed", recorded, within=60)
            await asyncio.sleep(rng.uniform(0.0, 0.4))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            mid_stream += recorded < len(messages) + 1  # and the rule set
            proc = start_recorder(env, log)
        await publishing
        await caught_up(killed_url, want, within=90)
    finally:
        stop(proc)

    assert mid_stream >= 2, f"seed {seed}: the recorder was killed mid-stream only {mid_stream}x"
    clean_env = {**env, "CANHBAO_DATABASE_URL": clean_url,
                 "CANHBAO_RECORD_GROUP_ID": "record-clean"}  # fmt: skip
    clean = start_recorder(clean_env, tmp_path / "recorder-clean.log")
    try:
        await caught_up(clean_url, want, within=90)
    finally:
        stop(clean)

    async with opened(killed_url) as killed, opened(clean_url) as reference:
        got, ref = await dump(killed.engine, SKIP), await dump(reference.engine, SKIP)
        offsets = await killed.offsets("record-killed")
        assert offsets == await reference.offsets("record-clean")
    assert len(got["warning_versions"]) == 120
    assert len(got["readings"]) == 160  # each station's four water levels, not its rain
    assert len(got["unreadable_records"]) == 2
    assert got == ref, f"seed {seed}: the killed recorder's rows differ from a clean run's"
    assert "recording into" in log.read_text()


async def test_two_recorders_in_one_group_share_the_work_and_lose_nothing_when_one_is_killed(
    broker: Broker, databases: Callable[[str], str], tmp_path: Path
) -> None:
    """Partitions move between the members while they write: a batch read by the
    member that lost its partition is refused (the offsets moved) and nothing is lost."""
    await ensure_topics(broker.bootstrap)
    url = databases("shared")
    done = run_canhbao("db", "upgrade", env={**os.environ, "CANHBAO_DATABASE_URL": url})
    assert done.returncode == 0, done.stderr
    messages = stream(40)
    want = await expected_counts(messages, tmp_path)
    messages = await apply_rules_first(broker.bootstrap, messages)
    env = worker_env(broker.bootstrap, broker.kind, CANHBAO_DATABASE_URL=url,
                     CANHBAO_RECORD_GROUP_ID="record-shared", **KEEP_READINGS)  # fmt: skip
    first = start_recorder(env, tmp_path / "recorder-1.log")
    second = start_recorder(env, tmp_path / "recorder-2.log")
    try:
        async with producer(broker.bootstrap) as p:
            for i, (topic, key, value) in enumerate(messages):
                await p.send(topic, value, key=key)
                if i == len(messages) // 2:
                    await p.flush()
                    first.send_signal(signal.SIGKILL)  # its partitions go to the other
                    first.wait()
                    first = start_recorder(env, tmp_path / "recorder-1.log")  # and back
            await p.flush()
        await caught_up(url, want, within=120)
    finally:
        stop(first)
        stop(second)
