"""Aggregation groups on a real broker: dengue warnings for four communes reach the
Department of Health's webhook as one digest, after group_wait, though the worker was
restarted while they waited; a later escalation to Severe does not wait for the group."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerting.directory import Directory
from alerting.governance import lead_agency
from canhbao.receiver import Delivery, WebhookReceiver
from consumers.delivery import RetryPolicy
from consumers.dispatcher import DispatchConfig, Dispatcher
from consumers.webhook import WebhookSender
from tests.conftest import Broker
from tests.integration.helpers import (
    REPO,
    collect,
    ensure_topics,
    producer,
    run_canhbao,
    running_worker,
    wait_for,
    worker_env,
)
from topics.catalogue import GROUP_NOTIFICATIONS, STATE_GROUPS, WARNINGS, notifications_topic
from topics.models import (
    Channel,
    Domain,
    Evidence,
    GroupEntry,
    Notification,
    Phase,
    ScopeTier,
    Severity,
    Transition,
    Warning,
)

pytestmark = pytest.mark.integration
COMMUNES = ["bn-vu-ninh", "bn-kinh-bac", "bn-hap-linh", "bn-bac-giang"]
GROUP_WAIT = 25  # long enough to restart the worker while the group waits
ROUTES = f"""
route:
  receivers: [lead-agency]
  routes:
    - matchers: ['domain="health"']
      receivers: [lead-agency]
      group_by: [domain, hazard]
      group_wait: {GROUP_WAIT}s
      group_interval: 2m
receivers:
  - {{name: lead-agency, to: {{lead_agency: true}}, channels: [webhook]}}
"""


def dengue(directory: Directory, commune: str, version: int = 1, level: int = 1) -> Warning:
    now = datetime.now(UTC).replace(microsecond=0)
    return Warning(
        warning_id=f"health.dengue.commune:{commune}", version=version,
        rule_id="health.dengue.commune", domain=Domain.HEALTH, hazard="dengue_outbreak",
        subject=commune, transition=Transition.RAISED if level == 1 else Transition.ESCALATED,
        level=level, level_name="vượt ngưỡng dịch" if level == 1 else "dịch lớn",
        previous_level=level - 1, severity=Severity.MODERATE if level == 1 else Severity.SEVERE,
        areas=[directory.area(commune)], scope_tier=ScopeTier.COMMUNE,
        lead_agency=lead_agency(directory, Domain.HEALTH, Phase.INCIDENT),
        evidence=[Evidence(station_id=f"cdc-{commune}", metric="dengue_cases_weekly",
                           value=20 + 10 * level, observed_at=now - timedelta(hours=1),
                           threshold=18)],
        raised_at=now, updated_at=now,
        annotations={"summary_vi": "Số ca sốt xuất huyết vượt kênh dịch",
                     "summary_en": "Dengue cases above the endemic channel"},
    )  # fmt: skip


@contextlib.asynccontextmanager
async def webhook_dispatcher(bootstrap: str) -> AsyncIterator[None]:
    policy = RetryPolicy(max_attempts=5, base=0.2, timeout=5)
    d = Dispatcher(WebhookSender(), DispatchConfig(bootstrap=bootstrap, policy=policy,
                                                   rebalance_timeout_ms=2000))  # fmt: skip
    task = asyncio.create_task(d.run())
    try:
        yield
    finally:
        d.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 20)


async def test_dengue_in_four_communes_reaches_the_health_department_as_one_digest(
    broker: Broker, tmp_path: Path
) -> None:
    await ensure_topics(broker.bootstrap)
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES, encoding="utf-8")
    directory = Directory.load(REPO / "config/geography.yaml", REPO / "config/directory.yaml")
    receiver = await WebhookReceiver().start()
    env = worker_env(
        broker.bootstrap, broker.kind, CANHBAO_AGENCY_WEBHOOK_BASE=receiver.base_url,
        CANHBAO_TICK_INTERVAL="1", CANHBAO_ROUTES_PATH=str(routes),
    )  # fmt: skip

    def at_syt() -> list[Delivery]:
        return [d for d in receiver.deliveries if d.path == "/hooks/syt"]

    async with webhook_dispatcher(broker.bootstrap):
        with running_worker(env, tmp_path / "worker-1.log"):
            async with producer(broker.bootstrap) as p:
                for commune in COMMUNES:
                    w = dengue(directory, commune)
                    await p.send_and_wait(WARNINGS, w.to_bytes(), key=w.warning_id.encode())
            # Held: the group, with its four members, is in the changelog...
            await collect(broker.bootstrap, STATE_GROUPS, lambda vs: any(
                v.count(b'"warning_id"') >= 4 for v in vs), 90)  # fmt: skip
        # ...and the worker stops (its offsets committed) before group_wait is over.
        assert at_syt() == []
        # An operator sees what waits, for whom, and when it goes out.
        shown = await asyncio.to_thread(run_canhbao, "alerts", "groups", bootstrap=broker.bootstrap)
        assert shown.returncode == 0, shown.stderr
        (line,) = shown.stdout.splitlines()
        assert "webhook" in line and "-> syt-webhook (agency): 4 warning(s)" in line, line
        assert all(f"dengue_outbreak L1 {c}" in line for c in COMMUNES), line
        assert "sends 4 change(s) at" in line and "0 sent" in line, line
        listed = await asyncio.to_thread(
            run_canhbao, "alerts", "groups", "--json", bootstrap=broker.bootstrap
        )
        (group,) = json.loads(listed.stdout)
        assert sorted(m["warning"]["subject"] for m in group["members"].values()) == sorted(
            COMMUNES
        )
        with running_worker(env, tmp_path / "worker-2.log"):
            # The restarted worker rebuilds the group and flushes it on time, though no
            # new warning arrives.
            await wait_for(lambda: bool(at_syt()), 120, "the digest at the Department of Health")
            await asyncio.sleep(3)  # nothing else follows: no message per commune
            (digest,) = at_syt()
            body = digest.body
            assert body["type"] == "canhbao.digest"
            assert sorted(w["subject"] for w in body["warnings"]) == sorted(COMMUNES)
            assert body["subject"].startswith("TỔNG HỢP 4 CẢNH BÁO: Dịch sốt xuất huyết")
            for name in ("Phường Vũ Ninh", "Phường Kinh Bắc", "Phường Hạp Lĩnh"):
                assert name in body["text"]["vi"]
            assert body["text"]["en"].startswith("DIGEST OF 4 WARNINGS")

            # It went out group_wait after the first warning was routed, not before.
            entries = [GroupEntry.model_validate_json(v) for v in await collect(
                broker.bootstrap, GROUP_NOTIFICATIONS, lambda vs: len(vs) >= 4, 30)]  # fmt: skip
            notes = [Notification.model_validate_json(v) for v in await collect(
                broker.bootstrap, notifications_topic(Channel.WEBHOOK),
                lambda vs: len(vs) >= 1, 30)]  # fmt: skip
            (note,) = [n for n in notes if n.notification_id == digest.key]
            first = min(e.routed_at for e in entries)
            assert note.created_at - first >= timedelta(seconds=GROUP_WAIT)

            # An escalation to Severe is urgent: it goes at once, alone, though the group
            # would not flush again before its group_interval (2 minutes).
            async with producer(broker.bootstrap) as p:
                w = dengue(directory, "bn-kinh-bac", version=2, level=2)
                await p.send_and_wait(WARNINGS, w.to_bytes(), key=w.warning_id.encode())
            await wait_for(lambda: len(at_syt()) == 2, 30, "the severe escalation")
            urgent = at_syt()[1].body
            assert urgent["type"] == "canhbao.warning"
            assert urgent["warning"]["warning_id"] == w.warning_id
            assert urgent["warning"]["level"] == 2
    await receiver.stop()
