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
from pipeline.validate import TimePolicy
from pipeline.worker.stages.evaluate import EngineHolder, EvaluateStage, home_partition
from pipeline.worker.stages.validate import ValidateStage
from tests.unit.conftest import MemoryTable
from tests.unit.stage_kit import Msg, Outputs
from topics.catalogue import (
    CLOCK,
    COMMANDS,
    CORRELATE_REPORTS,
    CORRELATE_WARNINGS,
    INGEST_READINGS,
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
        validate=ValidateStage(
            policy=TimePolicy(),
            directory=directory,
            readings={d: out.to(readings_topic(d)) for d in Domain},
            reports=out.to(CORRELATE_REPORTS),
            dead=out.dead,
            metrics=out.metrics,
            clock=lambda: NOW,
        ),
        ingest=out.to(INGEST_READINGS),
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


def raw(value: float, offset: int, key: bytes | None, partition: int) -> tuple[Msg, bytes]:
    """A reading as an adapter sends it to the ingest topic."""
    _, body = level(value, 10, offset)
    return Msg(INGEST_READINGS, partition, offset, key), body


async def test_a_raw_reading_is_validated_published_and_evaluated_in_one_pass(
    stage: EvaluateStage, out: Outputs
) -> None:
    # Keyed by its station, on that key's partition (Kafka's default partitioner).
    home = home_partition(b"dap-cau", 3)
    bad = (Msg(INGEST_READINGS, home, 6, b"dap-cau"), b"{not json")
    await stage.handle_batch([bad, raw(5.38, 7, b"dap-cau", home)])
    [w] = [Warning.model_validate_json(v) for v in out.values(WARNINGS)]
    assert (w.level, w.transition) == (2, Transition.RAISED)
    # The validated reading is still on its domain's topic for the threat record.
    [copy] = out.to(readings_topic(Domain.WATER)).records
    assert copy.key == b"dap-cau" and copy.value is not None
    assert Reading.model_validate_json(copy.value).value == 5.38
    [letter] = out.letters()
    assert (letter.source_topic, letter.offset) == (INGEST_READINGS, 6)
    assert out.sample("canhbao_readings_accepted_total", domain="water") == 1
    assert out.sample("canhbao_readings_evaluated_total", domain="water") == 1
    assert out.values(INGEST_READINGS) == []


async def test_a_raw_reading_off_its_stations_partition_is_evaluated_once_it_is_there(
    stage: EvaluateStage, out: Outputs
) -> None:
    # Sent without a key, or placed by another partitioner: where it was read, the
    # station's state is not. It goes back to the ingest topic, on its partition.
    home = home_partition(b"dap-cau", 3)
    elsewhere = (home + 1) % 3
    await stage.handle_batch([raw(5.38, 7, None, elsewhere), raw(5.38, 8, b"dap-cau", elsewhere)])
    assert out.values(WARNINGS) == [] and out.values(readings_topic(Domain.WATER)) == []
    again = out.to(INGEST_READINGS).records
    assert [(r.key, r.partition) for r in again] == [(b"dap-cau", home)] * 2
    await stage.handle_batch(
        [(Msg(INGEST_READINGS, home, 100 + i, r.key), r.value or b"") for i, r in enumerate(again)]
    )
    # Evaluated there, once: the copy is a duplicate to the quality gate.
    [w] = [Warning.model_validate_json(v) for v in out.values(WARNINGS)]
    assert (w.level, w.transition) == (2, Transition.RAISED)
    assert len(out.to(INGEST_READINGS).records) == 2


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
