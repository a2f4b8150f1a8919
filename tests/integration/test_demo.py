"""``canhbao demo`` as a user runs it: the default scenario ends by itself, and its JSON
summary shows warnings in the four core domains, a scope escalation, dead-lettered bad
input and webhook deliveries (what CI checks, and more); its worker killed midway is
started again, and the demo still ends with its summary."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from feeds.scenarios import get
from tests.conftest import Broker
from tests.integration.helpers import REPO, collect, ensure_topics, run_canhbao
from topics.catalogue import CLOCK, INGEST_READINGS
from topics.models import Reading, Tick

pytestmark = pytest.mark.integration


def test_the_default_demo_shows_every_core_domain(broker: Broker) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANHBAO_")}
    if broker.kind != "tansu":
        # On Tansu the demo starts its own embedded broker, as `make demo` does.
        env |= {"CANHBAO_KAFKA_BOOTSTRAP": broker.bootstrap}
    run = run_canhbao("demo", "--json", "--duration", "40", env=env, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    s = json.loads(run.stdout)
    assert s["scenario"]["name"] == "multi"
    assert s["warnings"]["total"] > 0 and s["deliveries"]["ok"] > 0
    assert {"water", "environment", "health", "cyber"} <= set(s["warnings"]["by_domain"])
    assert (
        "health.dengue.endemic:bac-ninh: commune → province" in s["warnings"]["scope_escalations"]
    )
    assert s["warnings"]["sensor_notices"] == 0
    # The two malformed messages are dead-lettered; every good reading got through.
    r = s["readings"]
    assert r["rejected"] == 2 and r["ingested"] == r["sent"] - 2
    assert s["deliveries"]["failed"] == 0
    assert s["elapsed_seconds"] < 70


def test_a_demo_whose_worker_is_killed_restarts_it_and_ends_with_its_summary(
    broker: Broker,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANHBAO_")}
    if broker.kind != "tansu":
        env |= {"CANHBAO_KAFKA_BOOTSTRAP": broker.bootstrap}
    demo = subprocess.Popen(
        [sys.executable, "-m", "canhbao", "demo", "--json", "--duration", "30"],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    progress: list[str] = []
    try:
        assert demo.stderr is not None
        worker_pid = None
        for line in demo.stderr:
            progress.append(line)
            if "Faust worker started (pid" in line:
                worker_pid = int(line.split("(pid ")[1].split(",")[0])
            if "  feed  " in line:  # the scenario is playing: kill -9 the worker
                assert worker_pid is not None
                os.kill(worker_pid, signal.SIGKILL)
                break
        out, err = demo.communicate(timeout=240)
    finally:
        if demo.poll() is None:
            demo.kill()
    progress += err.splitlines(keepends=True)
    text = "".join(progress)
    assert "Traceback" not in text
    assert "RESTART   the worker killed by SIGKILL; starting it again (1/5)" in text
    assert demo.returncode == 0, text[-3000:]
    s = json.loads(out)
    assert s["restarts"]["by_part"] == {"worker": 1}
    # The scenario went on: warnings after the kill were raised and delivered.
    assert s["warnings"]["total"] > 0 and s["deliveries"]["ok"] > 0
    assert {"water", "environment", "health", "cyber"} <= set(s["warnings"]["by_domain"])
    assert s["readings"]["ingested"] >= s["readings"]["sent"] - 2


async def test_simulate_plays_a_scenario_into_the_ingest_topics(broker: Broker) -> None:
    """``canhbao simulate`` on a configured cluster: every reading on
    canhbao.ingest.readings, keyed by station, and clock ticks on every partition."""
    await ensure_topics(broker.bootstrap)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANHBAO_")}
    env["CANHBAO_KAFKA_BOOTSTRAP"] = broker.bootstrap
    run = await asyncio.to_thread(
        run_canhbao, "simulate", "faulty", "--speed", "10000", env=env, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "drill" in run.stderr  # a configured cluster is warned about scenario time
    expected = len(get("faulty").events(datetime.now(UTC)))
    values = await collect(broker.bootstrap, INGEST_READINGS, lambda v: len(v) >= expected)
    readings = [Reading.model_validate_json(v) for v in values]
    assert len(readings) == expected
    assert {r.station_id for r in readings} >= {"pha-lai", "luc-nam", "grid-bac-ninh"}
    ticks = await collect(broker.bootstrap, CLOCK, lambda v: len(v) >= 3)
    assert all(Tick.model_validate_json(t).at > datetime.now(UTC) for t in ticks[1:])
