"""The walking skeleton on a real broker: a reading at Đáp Cầu becomes a warning,
is routed to the Dept. of Agriculture and Environment and delivered by webhook."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from canhbao.receiver import WebhookReceiver
from consumers.webhook import WebhookConfig, WebhookDispatcher
from tests.conftest import Broker
from tests.integration.helpers import (
    collect,
    ensure_topics,
    producer,
    running_worker,
    wait_for,
    worker_env,
)
from topics.catalogue import DEADLETTER, INGEST_READINGS, INGEST_REPORTS, RECEIPTS, WARNINGS
from topics.models import (
    DeadLetter,
    DeliveryOutcome,
    DeliveryReceipt,
    Domain,
    Reading,
    Report,
    Severity,
    Transition,
    Warning,
)

pytestmark = pytest.mark.integration

# Readings of the last few hours: older ones are history, which the pipeline refuses.
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)
SECRET = b"integration-secret"


def reading(value: float, hour: int, station: str = "dap-cau") -> bytes:
    return Reading(
        station_id=station,
        domain=Domain.WATER,
        metric="water_level_m",
        value=value,
        observed_at=T0 + timedelta(hours=hour),
    ).to_bytes()


async def test_rising_river_is_warned_and_delivered(broker: Broker, tmp_path: Path) -> None:
    await ensure_topics(broker.bootstrap)
    receiver = await WebhookReceiver(secret=SECRET).start()
    env = worker_env(broker.bootstrap, broker.kind, CANHBAO_AGENCY_WEBHOOK_BASE=receiver.base_url)
    dispatcher = WebhookDispatcher(
        WebhookConfig(bootstrap=broker.bootstrap, secret=SECRET, rebalance_timeout_ms=2000)
    )
    import asyncio

    task = asyncio.create_task(dispatcher.run())
    try:
        with running_worker(env, tmp_path / "worker.log") as worker:
            async with producer(broker.bootstrap) as p:
                for hour, level in enumerate([3.9, 4.1, 4.45, 5.0, 5.42]):
                    await p.send_and_wait(INGEST_READINGS, reading(level, hour), key=b"dap-cau")
            await wait_for(
                lambda: len([d for d in receiver.deliveries if d.path == "/hooks/snnmt"]) >= 2,
                90,
                "two webhook deliveries to the department",
            )
            assert worker.poll() is None, "the worker died"
    finally:
        dispatcher.stop()
        await asyncio.wait_for(task, 20)
        await receiver.stop()

    # The department got level I, then level II, signed, in Vietnamese and English;
    # the wards' committees were told too.
    bodies = [d.body for d in receiver.deliveries if d.path == "/hooks/snnmt"]
    assert [b["warning"]["level"] for b in bodies] == [1, 2]
    assert {"/hooks/ubnd-bn-vu-ninh", "/hooks/ubnd-bn-kinh-bac"} <= {
        d.path for d in receiver.deliveries
    }
    assert receiver.rejected == 0
    level_two = bodies[1]
    assert level_two["warning"]["lead_agency"]["name_vi"] == "Sở Nông nghiệp và Môi trường"
    assert level_two["warning"]["transition"] == "escalated"
    assert "BÁO ĐỘNG II" in level_two["text"]["vi"] and "5,42" in level_two["text"]["vi"]
    assert "ALARM LEVEL II" in level_two["text"]["en"]

    warnings = [
        Warning.model_validate_json(v)
        for v in await collect(broker.bootstrap, WARNINGS, lambda vs: len(vs) >= 2)
    ]
    assert [(w.transition, w.level, w.version) for w in warnings] == [
        (Transition.RAISED, 1, 1),
        (Transition.ESCALATED, 2, 2),
    ]
    assert len({w.warning_id for w in warnings}) == 1

    receipts = [
        DeliveryReceipt.model_validate_json(v)
        for v in await collect(broker.bootstrap, RECEIPTS, lambda vs: len(vs) >= 2)
    ]
    mine = [r for r in receipts if r.receiver_id == "snnmt-webhook"]
    assert all(r.outcome is DeliveryOutcome.DELIVERED and r.status_code == 200 for r in mine)
    assert {r.notification_id for r in mine} == {
        f"{warnings[0].warning_id}:v1:snnmt-webhook:webhook",
        f"{warnings[0].warning_id}:v2:snnmt-webhook:webhook",
    }


async def test_malformed_readings_go_to_dead_letter_and_pipeline_keeps_going(
    broker: Broker, tmp_path: Path
) -> None:
    await ensure_topics(broker.bootstrap)
    bad_json = b'{"station_id": "dap-cau", "value": 5.0'
    missing = json.dumps(
        {"station_id": "dap-cau", "domain": "water", "metric": "water_level_m", "value": 5.0}
    ).encode()
    wrong_type = json.dumps(
        {
            "station_id": "dap-cau",
            "domain": "water",
            "metric": "water_level_m",
            "value": "high",
            "observed_at": "2025-10-07T08:00:00+07:00",
        }
    ).encode()
    env = worker_env(broker.bootstrap, broker.kind)
    with running_worker(env, tmp_path / "worker.log") as worker:
        async with producer(broker.bootstrap) as p:
            await p.send_and_wait(INGEST_READINGS, reading(4.0, 0), key=b"dap-cau")
            for bad in (bad_json, missing, wrong_type):
                await p.send_and_wait(INGEST_READINGS, bad, key=b"dap-cau")
            # Two hours later: a plausible rise, not a spike for the quality gate.
            await p.send_and_wait(INGEST_READINGS, reading(6.5, 2), key=b"dap-cau")
        dead = [
            DeadLetter.model_validate_json(v)
            for v in await collect(broker.bootstrap, DEADLETTER, lambda vs: len(vs) >= 3, 90)
        ]
        # The valid reading after the bad ones still raised a level-III warning.
        warnings = [
            Warning.model_validate_json(v)
            for v in await collect(broker.bootstrap, WARNINGS, lambda vs: len(vs) >= 1, 60)
        ]
        assert worker.poll() is None, "a bad message must not stop the worker"

    assert [d.original for d in dead] == [bad_json, missing, wrong_type]
    assert "not valid JSON" in dead[0].reason
    assert "observed_at" in dead[1].reason and "Field required" in dead[1].reason
    assert "value" in dead[2].reason and "number" in dead[2].reason
    assert all(d.source_topic == INGEST_READINGS and d.stage == "validate" for d in dead)
    assert warnings[0].level == 3 and warnings[0].level_name == "III"


async def test_untimely_and_unknown_input_is_dead_lettered_and_cannot_silence_a_station(
    broker: Broker, tmp_path: Path
) -> None:
    """Issue 15 on a real broker and worker: a fuel reading dated 2999 used to silence
    fuel-bac-ninh for good; a report for 'nowhere-commune' became a warning; readings
    from unknown stations and old history were evaluated. The validate stage refuses
    each with the reason, and the station still raises its warning."""
    await ensure_topics(broker.bootstrap)
    now = datetime.now(UTC).replace(microsecond=0)

    def fuel(value: float, at: datetime) -> bytes:
        return Reading(
            station_id="fuel-bac-ninh",
            domain=Domain.ENERGY,
            metric="fuel_reserve_days",
            value=value,
            observed_at=at,
        ).to_bytes()

    nowhere = Report(
        report_id="r-nowhere",
        domain=Domain.WATER,
        category="flooding",
        severity=Severity.SEVERE,
        areas=["nowhere-commune"],
        observed_at=now,
        reporter="someone",
    ).to_bytes()
    bad = [
        (b"fuel-bac-ninh", fuel(20, datetime(2999, 1, 1, tzinfo=UTC)), "ahead of the pipeline"),
        (b"cau-xe", reading(5.0, 4, station="cau-xe"), "unknown station 'cau-xe'"),
        (b"fuel-bac-ninh", fuel(3, now - timedelta(days=900)), "live lateness bound"),
    ]
    env = worker_env(broker.bootstrap, broker.kind)
    with running_worker(env, tmp_path / "worker.log") as worker:
        async with producer(broker.bootstrap) as p:
            for key, value, _ in bad:
                await p.send_and_wait(INGEST_READINGS, value, key=key)
            await p.send_and_wait(INGEST_REPORTS, nowhere, key=b"nowhere-commune")
            await p.send_and_wait(INGEST_READINGS, fuel(12, now), key=b"fuel-bac-ninh")
        dead = [
            DeadLetter.model_validate_json(v)
            for v in await collect(broker.bootstrap, DEADLETTER, lambda vs: len(vs) >= 4, 90)
        ]
        warnings = [
            Warning.model_validate_json(v)
            for v in await collect(broker.bootstrap, WARNINGS, lambda vs: len(vs) >= 1, 60)
        ]
        assert worker.poll() is None
    # Keyed by station, so on different partitions: in no particular order.
    readings_dead = {d.original: d for d in dead if d.source_topic == INGEST_READINGS}
    assert set(readings_dead) == {v for _, v, _ in bad}
    for _, value, words in bad:
        letter = readings_dead[value]
        assert words in letter.reason and letter.stage == "validate"
    [report_dead] = [d for d in dead if d.source_topic == INGEST_REPORTS]
    assert report_dead.errors == [
        "areas.0: unknown commune 'nowhere-commune' (not in the geography)"
    ]
    # The reading of the present raised fuel-bac-ninh's level 1 despite the 2999 one.
    [w] = warnings
    assert (w.warning_id, w.transition, w.level) == (
        "energy.fuel.reserve-days:fuel-bac-ninh",
        Transition.RAISED,
        1,
    )
