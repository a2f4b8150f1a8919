"""The validate stage without a broker: what a station, an adapter or a reporter
sends either reaches the pipeline or lands in the dead letters with the reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from alerting.directory import Directory
from pipeline.validate import TimePolicy
from pipeline.worker.stages.validate import ValidateStage
from tests.unit.stage_kit import Msg, Outputs
from topics.catalogue import CORRELATE_REPORTS, INGEST_READINGS, INGEST_REPORTS, readings_topic
from topics.models import Domain, Reading, Report

NOW = datetime(2025, 10, 7, 5, 0, tzinfo=UTC)


@pytest.fixture
def stage(out: Outputs, directory: Directory) -> ValidateStage:
    return ValidateStage(
        policy=TimePolicy(),
        directory=directory,
        readings={d: out.to(readings_topic(d)) for d in Domain},
        reports=out.to(CORRELATE_REPORTS),
        dead=out.dead,
        metrics=out.metrics,
        clock=lambda: NOW,
    )


def reading(station: str, value: float, offset: int, **extra: object) -> Msg:
    body = {
        "station_id": station, "domain": "water", "metric": "water_level_m", "value": value,
        "observed_at": (NOW - timedelta(minutes=1)).isoformat(), **extra,
    }  # fmt: skip
    return Msg(INGEST_READINGS, 1, offset, station.encode(), json.dumps(body).encode())


async def test_a_good_reading_goes_to_its_domain_keyed_by_station(
    stage: ValidateStage, out: Outputs
) -> None:
    await stage.handle_batch([reading("dap-cau", 4.2, 7)])
    [sent] = out.to(readings_topic(Domain.WATER)).records
    assert sent.key == b"dap-cau"
    assert sent.value is not None and Reading.model_validate_json(sent.value).value == 4.2
    assert out.letters() == []
    assert out.sample("canhbao_readings_accepted_total", domain="water") == 1


async def test_a_refused_reading_lands_in_the_dead_letters_with_its_reason(
    stage: ValidateStage, out: Outputs
) -> None:
    # One batch: the good reading still goes through, the unknown station does not.
    await stage.handle_batch([reading("nowhere", 4.2, 8), reading("dap-cau", 4.3, 9)])
    [letter] = out.letters()
    assert (letter.source_topic, letter.partition, letter.offset) == (INGEST_READINGS, 1, 8)
    assert letter.key == b"nowhere" and json.loads(letter.original)["station_id"] == "nowhere"
    assert "nowhere" in letter.reason and letter.stage == "validate"
    assert len(out.to(readings_topic(Domain.WATER)).records) == 1
    assert out.sample("canhbao_validation_refused_total", kind="reading", reason="unknown_station")
    assert out.sample(
        "canhbao_messages_rejected_total", source_topic=INGEST_READINGS, stage="validate"
    )


async def test_a_reading_from_the_far_future_is_refused_not_evaluated(
    stage: ValidateStage, out: Outputs
) -> None:
    ahead = (NOW + timedelta(hours=3)).isoformat()
    await stage.handle_batch([reading("dap-cau", 4.2, 10, observed_at=ahead)])
    [letter] = out.letters()
    assert "ahead" in letter.reason
    assert out.sample("canhbao_validation_refused_total", kind="reading", reason="future") == 1
    assert readings_topic(Domain.WATER) not in out.sent()


def report(*areas: str) -> bytes:
    return json.dumps({
        "report_id": "r-1", "domain": "water", "category": "flooding", "severity": "Severe",
        "areas": list(areas), "observed_at": NOW.isoformat(), "reporter": "UBND phường Vũ Ninh",
    }).encode()  # fmt: skip


async def test_a_report_goes_to_every_commune_it_names(stage: ValidateStage, out: Outputs) -> None:
    await stage.handle_report(Msg(INGEST_REPORTS, 0, 3), report("bn-vu-ninh", "bn-kinh-bac"))
    records = out.to(CORRELATE_REPORTS).records
    assert [r.key for r in records] == [b"bn-vu-ninh", b"bn-kinh-bac"]
    assert all(Report.model_validate_json(r.value or b"").report_id == "r-1" for r in records)


async def test_a_report_about_an_unknown_commune_is_dead_lettered(
    stage: ValidateStage, out: Outputs
) -> None:
    await stage.handle_report(Msg(INGEST_REPORTS, 0, 4), report("bn-vu-ninh", "nowhere-commune"))
    [letter] = out.letters()
    assert letter.errors == ["areas.1: unknown commune 'nowhere-commune' (not in the geography)"]
    assert CORRELATE_REPORTS not in out.sent()
    assert out.sample("canhbao_validation_refused_total", kind="report", reason="unknown_area") == 1
