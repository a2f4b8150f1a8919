"""``canhbao demo`` keeps its parts alive: a child process that dies is started
again and the progress output says so; a part that keeps failing ends the demo;
and whatever ends it, the demo prints its summary, never a traceback."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import sys
from pathlib import Path

import pytest

from canhbao import demo
from canhbao.demo_report import Printer
from canhbao.processes import Child
from canhbao.settings import Settings

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def sleeper(tmp_path: Path) -> Child:
    return Child("worker", [], {}, tmp_path / "worker.log", program=SLEEPER)


async def test_a_killed_worker_is_started_again_and_the_demo_says_so(tmp_path: Path) -> None:
    child = sleeper(tmp_path)
    child.start()
    first = child.pid
    out = io.StringIO()
    restarts = demo.Restarts()
    failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    watch = asyncio.create_task(demo._watch_worker(child, restarts, Printer(out), failed))
    try:
        child.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        for _ in range(100):
            if child.restarts:
                break
            await asyncio.sleep(0.05)
        assert child.restarts == 1 and child.pid != first and child.dead() is None
    finally:
        watch.cancel()
        child.stop(5)
    text = out.getvalue()
    assert "RESTART   the worker killed by SIGKILL; starting it again (1/5)" in text
    assert f"Faust worker started again (pid {child.pid}" in text
    assert restarts.log == ["worker: killed by SIGKILL"]
    assert restarts.extension == demo.RESTART_ALLOWANCE  # the demo waits longer for it
    assert "--- worker killed by SIGKILL; started again ---" in child.log.read_text()
    assert not failed.done()


async def test_a_worker_that_keeps_dying_ends_the_demo(tmp_path: Path) -> None:
    child = Child("worker", [], {}, tmp_path / "worker.log", program=[sys.executable, "-c", ""])
    child.start()
    out = io.StringIO()
    failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    await asyncio.wait_for(demo._watch_worker(child, demo.Restarts(), Printer(out), failed), 30)
    with pytest.raises(demo.DemoFailed, match="the worker died 6 times"):
        failed.result()
    assert out.getvalue().count("RESTART") == demo.MAX_RESTARTS


async def test_a_failing_part_is_started_again() -> None:
    runs: list[int] = []

    async def dispatcher() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise ConnectionError("broker went away")

    out = io.StringIO()
    restarts = demo.Restarts()
    failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    await demo._supervised("webhook dispatcher", dispatcher, restarts, Printer(out), failed)
    assert len(runs) == 3 and not failed.done()
    assert restarts.by_part == {"webhook dispatcher": 2}
    assert (
        "the webhook dispatcher failed (ConnectionError: broker went away); "
        "starting it again (2/5)" in out.getvalue()
    )


def test_a_demo_that_cannot_go_on_still_prints_its_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # No broker answers there: the demo stops at once, with its summary and the reason.
    settings = Settings(kafka_bootstrap="127.0.0.1:9")
    assert demo.run_demo(settings, duration=10, as_json=True) == 1
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert summary["error"] and summary["readings"]["sent"] == 0
    assert summary["restarts"] == {"total": 0, "by_part": {}, "why": []}
    assert "FAILED" in err and "The demo stopped early" in err
    assert "Traceback" not in err
