"""The whole alerting path on a real broker with real edge servers: a level-III flood
at Đáp Cầu reaches the Dept. of Agriculture and Environment (webhook + e-mail), the
commune committees, the coordinating agencies and Mondulkiri (CAP); citizens get
SMS and loudspeaker messages only after a second operator approves; a phase-2 event
hands the lead to the provincial police, who are notified; a cancel reaches every
channel the broadcast went out on."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from canhbao.receiver import WebhookReceiver
from consumers.delivery import RetryPolicy
from consumers.dispatcher import DispatchConfig, Dispatcher, Sender
from consumers.email import EmailSender, SmtpConfig
from consumers.mqtt import MqttSender
from consumers.sms import SmsSender
from consumers.webhook import CapSender, WebhookSender
from tests.conftest import Broker
from tests.integration.edges import Gateway, mosquitto, mqtt_listener, smtp_server
from tests.integration.helpers import (
    ensure_topics,
    producer,
    run_canhbao,
    running_worker,
    wait_caught_up,
    wait_for,
)
from tests.integration.helpers import worker_env as base_env
from topics.catalogue import CLOCK, INGEST_READINGS
from topics.models import Domain, Reading, Tick

pytestmark = pytest.mark.integration
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)


def reading(value: float, hour: int) -> bytes:
    return Reading(
        station_id="dap-cau", domain=Domain.WATER, metric="water_level_m", value=value,
        observed_at=T0 + timedelta(hours=hour),
    ).to_bytes()  # fmt: skip


async def canhbao(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    # In a thread: the dispatchers in this event loop must keep heartbeating to
    # their consumer group while an operator command runs. These tests check the
    # pipeline's two-person rule through the command line, so they allow CLI
    # approvals explicitly, as an admin would (the console's accounts are tested apart).
    env = {**os.environ, "CANHBAO_ALLOW_CLI_APPROVALS": "true"}
    return await asyncio.to_thread(run_canhbao, *args, env=env, bootstrap=bootstrap)


@contextlib.asynccontextmanager
async def dispatching(bootstrap: str, senders: list[Sender]) -> AsyncIterator[None]:
    policy = RetryPolicy(max_attempts=5, base=0.2, timeout=5)
    ds = [
        Dispatcher(s, DispatchConfig(bootstrap=bootstrap, policy=policy, rebalance_timeout_ms=2000))
        for s in senders
    ]
    tasks = [asyncio.create_task(d.run()) for d in ds]
    try:
        yield
    finally:
        for d in ds:
            d.stop()
        for t in tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(t, 20)


@pytest.mark.server("mosquitto")  # skipped, with the reason, without it
async def test_level_three_flood_reaches_every_audience(broker: Broker, tmp_path: Path) -> None:
    await ensure_topics(broker.bootstrap)
    receiver = await WebhookReceiver().start()
    gateway = await Gateway().start()
    with smtp_server(tmp_path) as smtp, mosquitto(tmp_path) as mqtt_port:
        env = base_env(
            broker.bootstrap, broker.kind,
            CANHBAO_AGENCY_WEBHOOK_BASE=receiver.base_url,
            CANHBAO_PARTNER_CAP_BASE=receiver.base_url,
            CANHBAO_TICK_INTERVAL="1",
        )  # fmt: skip
        senders: list[Sender] = [
            WebhookSender(),
            CapSender(),
            EmailSender(SmtpConfig(smtp.host, smtp.port, smtp.username, smtp.password,
                                   starttls=True, ssl_context=smtp.client_context())),
            SmsSender(gateway.url),
            MqttSender("127.0.0.1", mqtt_port),
        ]  # fmt: skip
        async with (
            mqtt_listener(mqtt_port, "canhbao/loa/#") as speakers,
            dispatching(broker.bootstrap, senders),
        ):
            with running_worker(env, tmp_path / "worker.log"):
                async with producer(broker.bootstrap) as p:
                    for hour, level in enumerate([4.5, 5.5, 6.5]):
                        await p.send_and_wait(INGEST_READINGS, reading(level, hour),
                                              key=b"dap-cau")  # fmt: skip

                def level3(path: str) -> bool:
                    return any(
                        d.path == path and d.body.get("warning", {}).get("level") == 3
                        for d in receiver.deliveries
                    )

                await wait_for(lambda: level3("/hooks/snnmt"), 90, "level III at the agency")
                await wait_for(
                    lambda: level3("/hooks/ubnd-bn-vu-ninh") and level3("/hooks/ubnd-bn-kinh-bac"),
                    30,
                    "the committees",
                )
                # (Quiet hours may hold back the e-mail about level I at night; never III.)
                await wait_for(lambda: any("III" in str(m["Subject"]) for m in
                                           smtp.to("truc-ban@snnmt.bacninh.gov.vn")), 30,
                               "the level-III e-mail to the department")  # fmt: skip
                await wait_for(
                    lambda: any(d.path == "/cap/mondulkiri" for d in receiver.deliveries),
                    30,
                    "CAP to Mondulkiri",
                )

                # The department's e-mail: Vietnamese, level III, text and HTML.
                mail = next(m for m in smtp.to("truc-ban@snnmt.bacninh.gov.vn")
                            if "III" in str(m["Subject"]))  # fmt: skip
                parts = {p.get_content_type() for p in mail.walk()}
                assert {"text/plain", "text/html"} <= parts
                # Coordinators: the military command (search and rescue) and the media.
                # (Their notifications may sit on other partitions than the department's.)
                await wait_for(lambda: level3("/hooks/bchqs") and level3("/hooks/svhttdl"), 30,
                               "level III at the coordinators")  # fmt: skip
                # Committees got their SMS too; no citizen yet: that needs two operators.
                await wait_for(lambda: "+84912000101" in gateway.recipients(), 30,
                               "the committee's SMS")  # fmt: skip
                assert not [r for r in gateway.recipients() if r.startswith("+8498")]
                assert speakers == []

                bid = ""
                for _ in range(30):  # the request reaches the approval stage first
                    out = await canhbao(broker.bootstrap, "alerts", "pending")
                    assert out.returncode == 0, out.stderr
                    found = [w for w in out.stdout.split() if w.endswith(":v3:citizens")]
                    if found:
                        bid = found[0]
                        break
                    await asyncio.sleep(1)
                assert bid, "the level-III broadcast never waited for approval"
                first = await canhbao(
                    broker.bootstrap, "alerts", "approve", bid, "--actor", "Trực ban A"
                )
                assert "approved by Trực ban A" in first.stdout and "pending" in first.stdout
                again = await canhbao(broker.bootstrap, "alerts", "approve", bid, "--actor",
                                "Trực ban A", "--wait", "3")  # fmt: skip
                assert "no change seen" in again.stdout  # the same person cannot approve twice
                assert not [r for r in gateway.recipients() if r.startswith("+8498")]
                second = await canhbao(broker.bootstrap, "alerts", "approve", bid, "--actor",
                                 "Phó ban B")  # fmt: skip
                assert " sent " in second.stdout, second.stdout

                # Citizens of both wards: 2000 + 1500 subscribers, in batches, in their language.
                await wait_for(lambda: len([r for r in gateway.recipients()
                                            if r.startswith("+8498")]) == 3500, 60,
                               "every subscriber")  # fmt: skip
                citizen_texts = {t for t in gateway.texts() if "sông" in t or "river" in t.lower()}
                assert any("sông Cầu" in t for t in citizen_texts)
                # The official disaster risk level, as the bulletins state it (Đáp Cầu: zone 3).
                assert any("Cấp độ rủi ro thiên tai do lũ: cấp 3." in t for t in citizen_texts)
                await wait_for(
                    lambda: (
                        {t for t, _ in speakers}
                        >= {"canhbao/loa/bn-vu-ninh", "canhbao/loa/bn-kinh-bac"}
                    ),
                    30,
                    "the loudspeakers",
                )
                assert all(msg["siren"] for _, msg in speakers)

                # Phase 2: the provincial police lead and are notified.
                wid = bid.removesuffix(":v3:citizens")
                phase = await canhbao(
                    broker.bootstrap,
                    "warning",
                    "set_phase",
                    wid,
                    "--phase",
                    "2",
                    "--actor",
                    "Trực ban A",
                    "--reason",
                    "tụ tập đông người ở đê",
                )
                assert phase.returncode == 0, phase.stderr
                await wait_for(
                    lambda: any(d.path == "/hooks/ca-tinh" for d in receiver.deliveries),
                    60,
                    "the police",
                )
                police = [d for d in receiver.deliveries if d.path == "/hooks/ca-tinh"][-1]
                assert police.body["warning"]["lead_agency"]["code"] == "ca-tinh"
                await wait_for(lambda: len(smtp.to("truc-ban@congan.bacninh.gov.vn")) >= 1, 30,
                               "the police e-mail")  # fmt: skip

                # Cancel: every channel it went out on says so.
                sms_before = len(gateway.requests)
                cancel = await canhbao(broker.bootstrap, "alerts", "cancel", bid, "--actor",
                                 "Phó ban B", "--reason", "nhầm lẫn")  # fmt: skip
                assert "cancelled" in cancel.stdout, cancel.stdout
                await wait_for(lambda: any("HỦY" in t for t in gateway.texts()[sms_before:]),
                               60, "the cancel SMS")  # fmt: skip
                await wait_for(lambda: any("HỦY" in m["script"] for _, m in speakers), 30,
                               "the cancel on loudspeakers")  # fmt: skip

                # The risk level travelled with the warning; an operator raises it by one
                # (Article 4 clause 4) and the department hears it, with who and why.
                snnmt = [d.body["warning"] for d in receiver.deliveries
                         if d.path == "/hooks/snnmt"]  # fmt: skip
                assert next(w.get("risk_level") for w in snnmt if w["level"] == 3) == 3
                cap = [d for d in receiver.deliveries if d.path == "/cap/mondulkiri"]
                assert any("VN_DISASTER_RISK_LEVEL" in (d.xml or "") for d in cap)
                raised = await canhbao(broker.bootstrap, "warning", "raise_risk", wid, "--by",
                                       "1", "--actor", "Trực ban A", "--reason",
                                       "lũ và sạt lở đất cùng lúc")  # fmt: skip
                assert raised.returncode == 0, raised.stderr

                def risk_raised() -> bool:
                    return any(
                        d.path == "/hooks/snnmt"
                        and d.body.get("warning", {}).get("risk_level") == 4
                        for d in receiver.deliveries
                    )

                await wait_for(risk_raised, 60, "the raised risk level at the department")
                last = [d for d in receiver.deliveries if d.path == "/hooks/snnmt"][-1]
                adjustment = last.body["warning"]["risk_adjustment"]
                assert (adjustment["by"], adjustment["actor"]) == (1, "Trực ban A")
                assert "Cấp độ rủi ro thiên tai do lũ: cấp 4." in last.body["text"]["vi"]
    await receiver.stop()
    await gateway.stop()


async def test_approvers_have_their_real_time_however_far_the_scenario_clock_runs(
    broker: Broker, tmp_path: Path
) -> None:
    """`canhbao simulate` ticks canhbao.clock in scenario time, hours ahead of the wall
    clock. A broadcast waiting for two operators must still give them their real 30
    minutes: a tick says when to look, the wall clock says whether it expired."""
    await ensure_topics(broker.bootstrap)
    env = base_env(broker.bootstrap, broker.kind, CANHBAO_TICK_INTERVAL="1")
    with running_worker(env, tmp_path / "worker.log"):
        async with producer(broker.bootstrap) as p:
            for hour, level in enumerate([4.5, 5.5, 6.5]):
                await p.send_and_wait(INGEST_READINGS, reading(level, hour), key=b"dap-cau")
        bid = ""
        for _ in range(60):
            out = await canhbao(broker.bootstrap, "alerts", "pending")
            assert out.returncode == 0, out.stderr
            found = [w for w in out.stdout.split() if w.endswith(":v3:citizens")]
            if found:
                bid = found[0]
                break
            await asyncio.sleep(1)
        assert bid, "the level-III broadcast never waited for approval"

        # Scenario time two hours ahead, on every partition, as a drill's clock would be.
        ahead = Tick(at=datetime.now(UTC) + timedelta(hours=2)).to_bytes()
        async with producer(broker.bootstrap) as p:
            for part in sorted(await p.partitions_for(CLOCK)):
                await p.send_and_wait(CLOCK, ahead, partition=part)
        await wait_caught_up(broker.bootstrap, {"canhbao": CLOCK}, 60, "the scenario-time tick")

        first = await canhbao(broker.bootstrap, "alerts", "approve", bid, "--actor", "Trực ban A")
        assert "approved by Trực ban A" in first.stdout, first.stdout + first.stderr
        second = await canhbao(broker.bootstrap, "alerts", "approve", bid, "--actor", "Phó ban B")
        assert " sent " in second.stdout, second.stdout + second.stderr
