"""The worker app's lifecycle: where it keeps its local files, and how it ends the
plain aiokafka loops beside its agents when it stops."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from canhbao.settings import Settings
from pipeline.worker.app import App
from tests.unit.conftest import worker_app


def test_worker_files_go_under_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    settings = Settings(data_dir=tmp_path / "data", app_id="canhbao-bench-1a2b3c")
    app = worker_app(settings)
    assert Path(app.conf.datadir) == tmp_path / "data" / "worker" / "canhbao-bench-1a2b3c"
    assert Path(app.conf.datadir).is_dir()  # Faust would not make the parents
    assert Path(app.conf.tabledir).is_relative_to(tmp_path / "data")
    assert os.listdir(cwd) == []  # nothing left where the worker was started


def bare_app() -> App:
    return App("canhbao-test", broker="kafka://127.0.0.1:9", web_enabled=False)


async def test_a_stopping_worker_lets_the_validate_loop_finish_and_cancels_followers() -> None:
    app = bare_app()
    seen: list[str] = []

    async def validate_loop() -> None:
        try:
            while not app.should_stop:  # noqa: ASYNC110 (the stage polls, with getmany)
                await asyncio.sleep(0.01)
            seen.append("validate finished its batch")
        finally:
            seen.append("validate consumer closed")

    async def follower() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            seen.append("follower cancelled")
            raise

    app.edge_task(validate_loop, graceful=True)
    app.edge_task(follower)
    await app.on_started_init_extra_tasks()
    await asyncio.sleep(0.05)
    app._stopped.set()  # as Service.stop does before calling on_stop
    await asyncio.wait_for(app.on_stop(), 5)
    assert sorted(seen) == [
        "follower cancelled",
        "validate consumer closed",
        "validate finished its batch",
    ]


async def test_a_graceful_loop_that_does_not_end_is_cancelled_after_the_grace() -> None:
    app = bare_app()
    app.edge_grace_seconds = 0.1
    seen: list[str] = []

    async def stuck() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            seen.append("closed")

    app.edge_task(stuck, graceful=True)
    await app.on_started_init_extra_tasks()
    await asyncio.sleep(0.05)
    app._stopped.set()
    await asyncio.wait_for(app.on_stop(), 5)
    assert seen == ["closed"]
