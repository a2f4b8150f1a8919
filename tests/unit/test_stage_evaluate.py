"""The evaluate stage without a broker: a reading over a threshold raises a warning,
fanned out to the communes it concerns, and the state that remembers it is on the
changelog, the quality gate's "seen" marks last."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from alerting.directory import Directory
from pipeline.engine import Engine
from pipeline.rules.loader import RuleSet
from pipeline.worker.stages.evaluate import EngineHolder, EvaluateStage
from tests.unit.conftest import MemoryTable
from tests.unit.stage_kit import Msg, Outputs
from topics.catalogue import (
    CLOCK,
    COMMANDS,
    CORRELATE_WARNINGS,
    REGROUP_READINGS,
    STATE_EVALUATE,
    WARNINGS,
    readings_topic,
)
from topics.models import Domain, Reading, Tick, Transition, Warning

NOW = datetime(2025, 10, 7, 5, 0, tzinfo=UTC)
WATER = readings_topic(Domain.WATER)


@pytest.fixture
def stage(
    out: Outputs, table: MemoryTable, ruleset: RuleSet, directory: Directory
) -> EvaluateStage:
    return EvaluateStage(
        holder=EngineHolder(Engine(ruleset, directory)),
        table=table,
        changelog=out.to(STATE_EVALUATE),
        warnings=out.to(WARNINGS),
        correlate=out.to(CORRELATE_WARNINGS),
        regroup=out.to(REGROUP_READINGS),
        commands=out.to(COMMANDS),
        ticks=out.to(CLOCK),
        dead=out.dead,
        metrics=out.metrics,
        partitions=3,
        clock=lambda: NOW,
    )


def level(value: float, minutes_ago: float, offset: int) -> tuple[Msg, bytes]:
    body = Reading(
        station_id="dap-cau", domain=Domain.WATER, metric="water_level_m", value=value,
        observed_at=NOW - timedelta(minutes=minutes_ago), source="test",
    ).to_bytes()  # fmt: skip
    return Msg(WATER, 2, offset, b"dap-cau"), body


async def test_a_level_two_reading_raises_a_warning_for_its_communes(
    stage: EvaluateStage, out: Outputs, table: MemoryTable
) -> None:
    await stage.handle_batch([level(5.38, 10, 1)])
    [w] = [Warning.model_validate_json(v) for v in out.values(WARNINGS)]
    assert (w.warning_id, w.level, w.transition) == (
        "water.flood.dap-cau:dap-cau",
        2,
        Transition.RAISED,
    )
    assert out.to(WARNINGS).records[0].key == w.warning_id.encode()
    # The correlation stage hears of it once per commune the station warns.
    assert [r.key for r in out.to(CORRELATE_WARNINGS).records] == [b"bn-vu-ninh", b"bn-kinh-bac"]
    assert out.sample(
        "canhbao_warning_transitions_total",
        domain="water", hazard="river_flood", transition="raised", level="2",
    ) == 1  # fmt: skip
    assert out.sample("canhbao_readings_evaluated_total", domain="water") == 1
    # Its state is in the table and on the changelog, on the reading's partition; the
    # quality marks are written after every other key.
    keys = [json.loads(r.key or b"") for r in out.to(STATE_EVALUATE).records]
    assert {r.partition for r in out.to(STATE_EVALUATE).records} == {2}
    marks = [i for i, k in enumerate(keys) if k.startswith("q|")]
    assert marks and marks == list(range(len(keys) - len(marks), len(keys)))
    assert set(keys) <= set(table)


async def test_the_same_reading_twice_raises_nothing_twice(
    stage: EvaluateStage, out: Outputs
) -> None:
    # A replay after a crash reads the batch again: the quality gate sets it aside.
    batch = [level(5.38, 10, 1)]
    await stage.handle_batch(batch)
    await stage.handle_batch(batch)
    assert len(out.values(WARNINGS)) == 1


async def test_a_message_that_is_not_a_reading_lands_in_the_dead_letters(
    stage: EvaluateStage, out: Outputs
) -> None:
    await stage.handle_batch([(Msg(WATER, 0, 5, b"dap-cau"), b'{"station_id": "dap-cau"}')])
    [letter] = out.letters()
    assert letter.stage == "evaluate" and (letter.source_topic, letter.offset) == (WATER, 5)
    assert letter.reason.startswith(f"not a valid message for {WATER}")
    assert WARNINGS not in out.sent()


async def test_the_clock_ticks_once_per_partition(stage: EvaluateStage, out: Outputs) -> None:
    await stage.tick()
    records = out.to(CLOCK).records
    assert [r.partition for r in records] == [0, 1, 2]
    assert all(Tick.model_validate_json(r.value or b"").at == NOW for r in records)
