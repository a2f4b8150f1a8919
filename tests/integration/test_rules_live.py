"""Rules in the live pipeline: hot reload without a restart, refusal of an invalid
set, clearing of a removed rule's warnings, operator phase changes, and a worker
killed mid-flood that comes back without raising the active warning again."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from tests.conftest import Broker
from tests.integration.helpers import (
    collect,
    ensure_topics,
    group_lag,
    producer,
    run_canhbao,
    running_worker,
    worker_env,
)
from topics.catalogue import CLOCK, CONTROL_RULES, INGEST_READINGS, WARNINGS, readings_topic
from topics.models import Domain, DrillClock, Reading, Tick, Transition, Warning

pytestmark = pytest.mark.integration

# Readings of the last few hours: older ones are history, which the pipeline refuses.
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=4)
RULE = """
rules:
  - id: water.flood.dap-cau
    domain: water
    hazard: river_flood
    selector: {{station: dap-cau, metric: water_level_m}}
    condition: {{kind: threshold, direction: rising, hysteresis: 0.10}}
    levels:
      - {{level: 1, name: "I", value: {i}, severity: Moderate}}
      - {{level: 2, name: "II", value: {ii}, severity: Severe}}
      - {{level: 3, name: "III", value: {iii}, severity: Extreme}}
"""
OTHER = """
rules:
  - id: water.flood.luc-nam
    domain: water
    hazard: river_flood
    selector: {station: luc-nam, metric: water_level_m}
    condition: {kind: threshold}
    levels:
      - {level: 1, name: "I", value: 4.30, severity: Moderate}
"""


def write_rules(path: Path, text: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "water.yaml").write_text(text, encoding="utf-8")
    return path


def reading(value: float, hour: float) -> bytes:
    return Reading(
        station_id="dap-cau",
        domain=Domain.WATER,
        metric="water_level_m",
        value=value,
        observed_at=T0 + timedelta(hours=hour),
    ).to_bytes()


def canhbao(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_canhbao(*args, bootstrap=bootstrap)


def has(n: int) -> Callable[[list[bytes]], bool]:
    return lambda values: len(values) >= n


async def warnings(broker: Broker, n: int, timeout: float = 60) -> list[Warning]:
    values = await collect(broker.bootstrap, WARNINGS, has(n), timeout)
    return [Warning.model_validate_json(v) for v in values]


async def test_thresholds_change_live_and_an_invalid_set_is_refused(
    broker: Broker, tmp_path: Path
) -> None:
    await ensure_topics(broker.bootstrap)
    v1 = write_rules(tmp_path / "v1", RULE.format(i=4.30, ii=5.30, iii=6.30))
    v2 = write_rules(tmp_path / "v2", RULE.format(i=4.00, ii=4.80, iii=6.00))
    bad = write_rules(tmp_path / "bad", RULE.format(i=4.0, ii=4.8, iii=6.0).replace(
        "hysteresis", "hysteresys"))  # fmt: skip
    gone = write_rules(tmp_path / "gone", OTHER)
    env = worker_env(
        broker.bootstrap, broker.kind, CANHBAO_RULES_PATH=str(v1), CANHBAO_TICK_INTERVAL="1"
    )
    log = tmp_path / "worker.log"
    with running_worker(env, log) as worker:
        async with producer(broker.bootstrap) as p:
            await p.send_and_wait(INGEST_READINGS, reading(5.0, 0), key=b"dap-cau")
            first = await warnings(broker, 1)
            assert (first[0].transition, first[0].level) == (Transition.RAISED, 1)

            applied = canhbao(broker.bootstrap, "rules", "apply", str(v2), "--actor", "kỹ sư A")
            assert applied.returncode == 0, applied.stderr
            version = applied.stdout.split("rule set ")[1].split()[0]
            refused = canhbao(broker.bootstrap, "rules", "apply", str(bad))
            assert refused.returncode == 1
            assert f"{bad / 'water.yaml'}: rule water.flood.dap-cau: condition.hysteresys" in (
                refused.stderr
            )
            active = canhbao(broker.bootstrap, "rules", "active")
            assert version in active.stdout and "kỹ sư A" in active.stdout
            # Poison last on the topic is not "in force": the set the workers apply is.
            await p.send_and_wait(CONTROL_RULES, b"{not a rule set", key=b"active")
            active = canhbao(broker.bootstrap, "rules", "active")
            assert active.returncode == 0, active.stderr
            assert version in active.stdout and "kỹ sư A" in active.stdout

            # 5.1 m is level I under the old thresholds and level II under v2.
            await p.send_and_wait(INGEST_READINGS, reading(5.1, 1), key=b"dap-cau")
            second = await warnings(broker, 2)
            assert (second[1].transition, second[1].level) == (Transition.ESCALATED, 2)
            assert second[1].evidence[0].threshold == 4.80

            # Removing the rule clears its warning (on the next clock tick).
            assert canhbao(broker.bootstrap, "rules", "apply", str(gone)).returncode == 0
            third = await warnings(broker, 3)
            assert third[2].transition is Transition.CLEARED
            assert "rule removed" in third[2].annotations["note"]
        assert worker.poll() is None, "the worker must keep running through every change"
    text = log.read_text(encoding="utf-8", errors="replace")
    assert f"active version {version}" in text


async def test_operator_sets_phase_two_and_the_police_lead(broker: Broker, tmp_path: Path) -> None:
    await ensure_topics(broker.bootstrap)
    env = worker_env(broker.bootstrap, broker.kind)
    with running_worker(env, tmp_path / "worker.log"):
        async with producer(broker.bootstrap) as p:
            await p.send_and_wait(INGEST_READINGS, reading(5.5, 0), key=b"dap-cau")
            (raised,) = await warnings(broker, 1)
        assert raised.lead_agency.code == "snnmt"
        missing_reason = canhbao(
            broker.bootstrap, "warning", "set_phase", raised.warning_id, "--phase", "2",
            "--actor", "Trực ban",
        )  # fmt: skip
        assert missing_reason.returncode == 1 and "reason" in missing_reason.stderr
        sent = canhbao(
            broker.bootstrap, "warning", "set_phase", raised.warning_id, "--phase", "2",
            "--actor", "Trực ban", "--reason", "đám đông tụ tập tại đê, nguy cơ mất trật tự",
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        verified = canhbao(
            broker.bootstrap, "warning", "verify", raised.warning_id, "--actor", "Trực ban"
        )
        assert verified.returncode == 0
        states = await warnings(broker, 3)
    phase2, ver = states[1], states[2]
    assert (phase2.transition, phase2.phase, phase2.lead_agency.code) == (
        Transition.UPDATED, 2, "ca-tinh",
    )  # fmt: skip
    assert phase2.annotations["phase_set_by"] == "Trực ban"
    assert ver.status.value == "verified" and ver.lead_agency.code == "ca-tinh"
    assert [s.version for s in states] == [1, 2, 3]


async def test_worker_killed_mid_flood_does_not_raise_again(broker: Broker, tmp_path: Path) -> None:
    await ensure_topics(broker.bootstrap)
    env = worker_env(broker.bootstrap, broker.kind)
    if broker.kind == "kafka":
        # As deployed: static membership, so the restarted worker takes the killed
        # one's place in the group at once instead of waiting out its session.
        env["CANHBAO_GROUP_INSTANCE_ID"] = "worker-1"
    with running_worker(env, tmp_path / "worker-1.log") as first:
        async with producer(broker.bootstrap) as p:
            await p.send_and_wait(INGEST_READINGS, reading(4.5, 0), key=b"dap-cau")
            await p.send_and_wait(INGEST_READINGS, reading(5.5, 1), key=b"dap-cau")
        before = await warnings(broker, 2)
        first.send_signal(signal.SIGKILL)  # no clean shutdown, no final commit
        first.wait(10)
    assert [(w.transition, w.level) for w in before] == [
        (Transition.RAISED, 1),
        (Transition.ESCALATED, 2),
    ]
    with running_worker(env, tmp_path / "worker-2.log"):
        async with producer(broker.bootstrap) as p:
            await p.send_and_wait(INGEST_READINGS, reading(5.6, 2), key=b"dap-cau")
            await p.send_and_wait(INGEST_READINGS, reading(6.4, 3), key=b"dap-cau")
        values = await collect(
            broker.bootstrap,
            WARNINGS,
            lambda vs: any(Warning.model_validate_json(v).version == 3 for v in vs),
            timeout=90,
        )
    after = [Warning.model_validate_json(v) for v in values]
    # The restarted worker remembered level II: 5.6 m changed nothing, 6.4 m escalated.
    # At-least-once: a state whose offset was not committed before the kill may be
    # published again, but as the same version (receivers deduplicate on it).
    by_version = {w.version: (w.transition, w.level) for w in after}
    assert by_version == {
        1: (Transition.RAISED, 1),
        2: (Transition.ESCALATED, 2),
        3: (Transition.ESCALATED, 3),
    }
    # Never raised anew: the only raise is version 1, and any replay of it (the worker
    # processes in batches, so a kill may replay a whole batch) is identical to it.
    assert {w.version for w in after if w.transition is Transition.RAISED} == {1}
    for w in after:
        original = next(x for x in after if x.version == w.version)
        assert w.model_dump() == original.model_dump(), "a replay must be identical"


GAP_RULES = """
rules:
  - id: water.flood.dap-cau
    domain: water
    hazard: river_flood
    selector: {station: dap-cau, metric: water_level_m}
    condition: {kind: threshold}
    levels:
      - {level: 1, name: "I", value: 4.30, severity: Moderate}
      - {level: 2, name: "II", value: 5.30, severity: Severe}
      - {level: 3, name: "III", value: 6.30, severity: Extreme}
  - id: water.gap.rivers
    domain: water
    hazard: data_gap
    selector:
      stations: [phu-lang-thuong, luc-nam, pha-lai, ha-noi, thuong-cat]
      metric: water_level_m
    condition: {kind: staleness, silent_for: 30m}
    levels:
      - {level: 1, name: "data gap", severity: Minor}
"""
RIVERS = ["phu-lang-thuong", "luc-nam", "pha-lai", "ha-noi", "thuong-cat"]
STEP = timedelta(minutes=15)
# Scenario time runs ahead of the wall clock, as in ``canhbao simulate``: the readings
# carry the drill's clock (15 scenario minutes each 0.1 s), or the validate stage would
# refuse them as future-dated; like simulate, the player keeps to that clock, and a
# step whose time has passed (while the worker was down) goes out at once.
SPEED = STEP / timedelta(seconds=0.1)


def drill(start: datetime) -> DrillClock:
    return DrillClock(origin=start, start=start, speed=SPEED)


async def play(p: AIOKafkaProducer, start: datetime, steps: range, stations: list[str]) -> None:
    """As ``canhbao simulate`` plays a scenario: readings every 15 scenario minutes,
    dated from ``start`` on the drill's clock, and a tick of the scenario clock after
    each step."""
    clock = sorted(await p.partitions_for(CLOCK))
    for k in steps:
        at = start + k * STEP
        due = drill(start).wall(at - start).total_seconds()
        await asyncio.sleep(max(0.0, due - (datetime.now(UTC) - start).total_seconds()))
        for i, station in enumerate(stations):
            body = Reading(
                station_id=station, domain=Domain.WATER, metric="water_level_m",
                value=3.0 + (k % 8) / 100 + i / 1000, observed_at=at, drill=drill(start),
            ).to_bytes()  # fmt: skip
            await p.send(INGEST_READINGS, body, key=station.encode())
        await tick(p, at + timedelta(minutes=1), clock)


async def tick(p: AIOKafkaProducer, at: datetime, clock: list[int] | None = None) -> None:
    """One tick of the scenario clock on every partition of ``canhbao.clock``."""
    body = Tick(at=at).to_bytes()
    for partition in clock or sorted(await p.partitions_for(CLOCK)):
        await p.send(CLOCK, body, partition=partition)
    await p.flush()


def marker(value: float, at: datetime, start: datetime) -> bytes:
    return Reading(
        station_id="dap-cau", domain=Domain.WATER, metric="water_level_m", value=value,
        observed_at=at, drill=drill(start),
    ).to_bytes()  # fmt: skip


async def handled_every_reading(bootstrap: str, timeout: float = 60) -> None:
    """Wait until the worker's group has committed every water reading, so every state
    they caused is on the warnings topic. (Not ``wait_caught_up``: on Tansu the commit
    can stand one past the end offset that the broker reports.)"""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        while any(
            lag > 0
            for lag in (
                await group_lag(admin, consumer, "canhbao", readings_topic(Domain.WATER))
            ).values()
        ):
            assert time.monotonic() < deadline, "the worker did not handle every reading"
            await asyncio.sleep(0.5)
    finally:
        await consumer.stop()
        await admin.close()


async def test_worker_restarted_mid_scenario_raises_no_false_data_gap(
    broker: Broker, tmp_path: Path
) -> None:
    """Issue 15 item 8: killed and restarted during a compressed scenario, the worker
    read its downtime's clock ticks before the readings sent meanwhile and raised
    data-gap notices on every river station. Only a station that really stops may."""
    await ensure_topics(broker.bootstrap)
    rules = write_rules(tmp_path / "rules", GAP_RULES)
    env = worker_env(broker.bootstrap, broker.kind, CANHBAO_RULES_PATH=str(rules))
    if broker.kind == "kafka":
        env["CANHBAO_GROUP_INSTANCE_ID"] = "worker-1"
    start = datetime.now(UTC).replace(microsecond=0)
    with running_worker(env, tmp_path / "worker-1.log") as first:
        async with producer(broker.bootstrap) as p:
            await play(p, start, range(0, 12), RIVERS)
            await p.send_and_wait(
                INGEST_READINGS, marker(4.5, start + 11 * STEP, start), key=b"dap-cau"
            )
            await warnings(broker, 1)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        async with producer(broker.bootstrap) as p:
            # Ten scenario hours while the worker is down.
            await play(p, start, range(12, 52), RIVERS)
    with running_worker(env, tmp_path / "worker-2.log"):
        async with producer(broker.bootstrap) as p:
            # Back: once it has read the backlog (the marker escalates), live again.
            await p.send_and_wait(
                INGEST_READINGS, marker(5.5, start + 52 * STEP, start), key=b"dap-cau"
            )
            await warnings(broker, 2)
            # Phủ Lạng Thương stops reporting after step 55 (Thượng Cát, on the same
            # partition of three, goes on).
            await play(p, start, range(52, 56), RIVERS)
            await play(p, start, range(56, 100), RIVERS[1:])
            await p.send_and_wait(
                INGEST_READINGS, marker(6.5, start + 99 * STEP, start), key=b"dap-cau"
            )
            await handled_every_reading(broker.bootstrap)
            # The clock goes on after the scenario's last step, as it does live. (The
            # restarted worker may read every tick before the readings sent with them,
            # when its groups join at different moments: silence is then judged at the
            # next tick.)
            await tick(p, start + 100 * STEP + timedelta(minutes=1))
        values = await collect(
            broker.bootstrap,
            WARNINGS,
            lambda vs: (
                {(w.hazard, w.level) for w in map(Warning.model_validate_json, vs)}
                >= {("river_flood", 3), ("data_gap", 1)}
            ),
            timeout=60,
        )
    states = [Warning.model_validate_json(v) for v in values]
    gaps = [w for w in states if w.hazard == "data_gap"]
    assert {w.subject for w in gaps} == {"phu-lang-thuong"}, [
        (w.subject, w.transition.value, w.updated_at.isoformat()) for w in gaps
    ]
    assert {(w.version, w.transition) for w in gaps} == {(1, Transition.RAISED)}
    (raised,) = {w.updated_at for w in gaps}
    last_heard = start + 55 * STEP
    # Judged in scenario time: never before 30 minutes of silence, and while the
    # scenario still runs. Not "within a tick": at this pace a second's pause of the
    # worker (the group rebalancing once the killed member's session expires) is two
    # and a half scenario hours, and its backlog is read in no set order.
    end = start + 100 * STEP + timedelta(minutes=1)
    assert last_heard + timedelta(minutes=30) < raised <= end
    (evidence,) = gaps[0].evidence
    assert f"silent since {last_heard.isoformat()}" in (evidence.note or "")
    assert evidence.value == (raised - last_heard).total_seconds() / 60
