"""Drills on a live cluster (issue 15): a scenario played twice with ``canhbao simulate``
raises its warnings twice. The first run dates readings up to three days ahead of the
wall clock; each run carries its drill's clock, so the validate stage takes them, and
the engine takes the state the first run left beyond the second's present for an
abandoned timeline instead of holding the second run back."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.conftest import Broker
from tests.integration.helpers import (
    collect,
    ensure_topics,
    run_canhbao,
    running_worker,
    worker_env,
)
from topics.catalogue import DEADLETTER, WARNINGS
from topics.models import DeadLetter, Transition, Warning

pytestmark = pytest.mark.integration

FLOOD = "water.flood.dap-cau:dap-cau"
SPEED = "17280"  # the flood's 72 hours in 15 seconds


def raises(values: list[bytes]) -> list[Warning]:
    found = [Warning.model_validate_json(v) for v in values]
    return [w for w in found if w.warning_id == FLOOD and w.transition is Transition.RAISED]


async def test_a_second_drill_of_the_same_scenario_raises_its_warnings_again(
    broker: Broker, tmp_path: Path
) -> None:
    await ensure_topics(broker.bootstrap)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANHBAO_")}
    env["CANHBAO_KAFKA_BOOTSTRAP"] = broker.bootstrap
    worker = worker_env(broker.bootstrap, broker.kind, CANHBAO_EXERCISE="true")
    with running_worker(worker, tmp_path / "worker.log") as proc:
        for run in (1, 2):
            done = await asyncio.to_thread(
                run_canhbao, "simulate", "flood", "--speed", SPEED, env=env, timeout=120
            )
            assert done.returncode == 0, done.stderr[-3000:]
            values = await collect(
                broker.bootstrap, WARNINGS, lambda vs, n=run: len(raises(vs)) >= n, 120
            )
        assert proc.poll() is None
    first, second = raises(values)
    assert (first.level, second.level) == (1, 1)
    assert second.version > first.version  # the same warning, a new episode
    # Every drill reading was taken: none was refused as dated ahead of the clock.
    dead = await collect(broker.bootstrap, DEADLETTER, lambda vs: True, 5)
    assert [DeadLetter.model_validate_json(v).reason for v in dead] == []
