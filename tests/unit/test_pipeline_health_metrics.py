"""The two pipeline-health figures every service exports (README: Metrics and
dashboards): end-to-end latency, from the reading observed to the first delivery
(drills through their clock), and consumer lag from committed offsets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from alerting.notify import observed_at
from consumers.dispatcher import Dispatcher, Ledger
from tests.console_kit import Console, login
from tests.unit.test_dispatcher import (
    TOPIC,
    Producer,
    Receiver,
    Topics,
    dispatcher,
    notification,
    record,
)
from topics.lag import lag_by_topic
from topics.metrics import Metrics
from topics.models import DrillClock, Evidence, Warning

WARNING = Path(__file__).resolve().parents[2] / "examples" / "warnings" / "dap-cau-level3.json"
LATENCY = "canhbao_end_to_end_latency_seconds"
LABELS = {"channel": "webhook", "audience": "agency"}


def test_a_drill_readings_wall_time_comes_through_its_clock() -> None:
    origin = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
    clock = DrillClock(origin=origin, start=origin + timedelta(days=1), speed=3600)
    # An hour of scenario time after its start is one second of wall time after origin.
    e = Evidence(station_id="dap-cau", metric="water_level_m", value=6.3,
                 observed_at=clock.start + timedelta(hours=1), drill=clock)  # fmt: skip
    assert e.observed_wall() == origin + timedelta(seconds=1)
    live = Evidence(station_id="dap-cau", metric="water_level_m", value=6.3, observed_at=origin)
    assert live.observed_wall() == origin
    assert "drill" not in live.model_dump_json()  # live evidence is what it was


def test_a_notification_carries_when_its_deciding_reading_was_observed() -> None:
    w = Warning.model_validate_json(WARNING.read_text())
    assert w.evidence
    assert observed_at(w) == w.evidence[0].observed_at
    assert observed_at(w.model_copy(update={"evidence": []})) is None  # an operator's command


async def deliver(d: Dispatcher, observed: datetime | None) -> None:
    note = notification().model_copy(update={"observed_at": observed})
    await d._handle(Producer(Topics()), TOPIC, record(note))


async def test_the_first_delivery_observes_the_end_to_end_latency_once() -> None:
    own = Metrics(CollectorRegistry())
    d = dispatcher(Receiver(failures=1), Ledger())
    d.metrics = own
    await deliver(d, datetime.now(UTC) - timedelta(seconds=42))
    assert own.registry.get_sample_value(LATENCY + "_count", LABELS) == 1  # not the retry
    assert 42 <= own.registry.get_sample_value(LATENCY + "_sum", LABELS) < 60  # type: ignore[operator]
    await deliver(d, datetime.now(UTC) - timedelta(seconds=42))  # the ledger knows it
    assert own.registry.get_sample_value(LATENCY + "_count", LABELS) == 1


async def test_reminders_and_clocks_ahead_of_ours_are_not_latency() -> None:
    own = Metrics(CollectorRegistry())
    d = dispatcher(Receiver(), Ledger())
    d.metrics = own
    await deliver(d, None)
    await deliver(
        d.__class__(d.sender, d.config, Ledger(), own), datetime.now(UTC) + timedelta(hours=1)
    )
    assert own.registry.get_sample_value(LATENCY + "_count", LABELS) is None


def test_lag_is_end_offsets_minus_commits_summed_per_topic() -> None:
    a0, a1, b0 = TopicPartition("a", 0), TopicPartition("a", 1), TopicPartition("b", 0)
    committed = {a0: 10, a1: 5, b0: -1}  # b never committed: unknown, not its whole log
    ends = {a0: 12, a1: 5, b0: 900}
    assert lag_by_topic(committed, ends) == {"a": 2}
    # A commit past the end (a topic truncated and recreated) is no negative lag.
    assert lag_by_topic({a0: 20}, {a0: 12}) == {"a": 0}


async def test_the_console_serves_its_metrics_on_its_own_port_to_a_scraper(
    console: Console,
) -> None:
    console.metrics.consumer_lag.labels("canhbao", "canhbao.readings.water").set(7)
    await login(console.client, "operator", "wrong password here")
    # Prometheus has no account: /metrics needs no session, and shows counts only.
    resp = await console.client.get("/metrics", allow_redirects=False)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    text = await resp.text()
    assert (
        'canhbao_consumer_lag_records{group="canhbao",topic="canhbao.readings.water"} 7.0' in text
    )
    assert 'canhbao_console_logins_total{outcome="wrong"} 1.0' in text
    # Every other page still sends a visitor without a session to log in.
    assert (await console.client.get("/", allow_redirects=False)).status == 303
