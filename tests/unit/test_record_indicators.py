"""The indicators of a period, per domain and commune, as the README defines them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from canhbao.record_cli import LOCAL, indicators_text
from recorder import migrate
from recorder.decode import Incoming, decode
from recorder.indicators import indicators, parse_period
from recorder.store import Store
from tests.record_stream import warning
from topics.catalogue import COMMANDS, RECEIPTS, WARNINGS, notifications_topic
from topics.models import (
    Action,
    Area,
    Audience,
    Channel,
    Command,
    DeliveryOutcome,
    DeliveryReceipt,
    Domain,
    Evidence,
    Notification,
    Transition,
    Warning,
)

T = datetime(2025, 11, 3, 2, 0, tzinfo=UTC)  # readings' time
L = datetime(2025, 11, 3, 2, 0, 5, tzinfo=UTC)  # when the first state was published


class Log:
    """Records with the broker's timestamps chosen by the test."""

    def __init__(self) -> None:
        self.records: list[Incoming] = []

    def add(self, topic: str, value: bytes, logged: datetime) -> None:
        offset = sum(1 for r in self.records if r.topic == topic)
        ms = int(logged.timestamp() * 1000)
        self.records.append(Incoming(topic, 0, offset, b"k", value, ms))


def state(n: int, version: int, level: int, transition: Transition, at: datetime,
          communes: list[str], domain: Domain = Domain.WATER,
          evidence_at: datetime | None = None) -> Warning:  # fmt: skip
    w = warning(n, version, max(level, 1), at)
    return w.model_copy(
        update={
            "transition": transition, "level": level, "domain": domain,
            "areas": [Area(code=c, name=c, province="bac-ninh") for c in communes],
            "raised_at": T, "updated_at": at,
            "evidence": [Evidence(station_id="s", metric="m", value=5, observed_at=evidence_at,
                                  threshold=4)] if evidence_at else [],
        }
    )  # fmt: skip


def note(w: Warning, receiver: str, channel: Channel, audience: Audience) -> Notification:
    return Notification(
        notification_id=f"{w.warning_id}:v{w.version}:{receiver}:{channel.value}",
        warning_id=w.warning_id, warning_version=w.version, receiver_id=receiver,
        channel=channel, audience=audience, address="x", body="b", created_at=L,
    )  # fmt: skip


def receipt(n: Notification, attempt: int, outcome: DeliveryOutcome, at: datetime) -> bytes:
    return DeliveryReceipt(
        notification_id=n.notification_id, warning_id=n.warning_id, receiver_id=n.receiver_id,
        channel=n.channel, attempt=attempt, outcome=outcome, latency_seconds=0.1, at=at,
    ).to_bytes()  # fmt: skip


def command(wid: str, action: Action, cid: str) -> bytes:
    return Command(command_id=cid, warning_id=wid, action=action, actor="an", at=T).to_bytes()


def scenario() -> Log:
    log = Log()
    s = timedelta(seconds=1)
    # A: a flood in communes x and y, to level III; verified after 2 min; the lead
    # agency has it after 30 s (second attempt), citizens after 5 min; an e-mail fails.
    a1 = state(1, 1, 1, Transition.RAISED, T, ["x", "y"], evidence_at=T - 600 * s)
    a2 = state(1, 2, 3, Transition.ESCALATED, T + 60 * s, ["x", "y"])
    log.add(WARNINGS, a1.to_bytes(), L)
    log.add(WARNINGS, a2.to_bytes(), L + 60 * s)
    log.add(COMMANDS, command(a1.warning_id, Action.VERIFY, "v-a"), L + 120 * s)
    lead = note(a1, "snnmt-webhook", Channel.WEBHOOK, Audience.AGENCY)
    other = note(a1, "bchqs-webhook", Channel.WEBHOOK, Audience.AGENCY)
    people = note(a2, "citizens-x", Channel.SMS, Audience.CITIZEN)
    mail = note(a2, "ubnd-x", Channel.EMAIL, Audience.COMMUNE)
    for n in (lead, other, people, mail):
        log.add(notifications_topic(n.channel), n.to_bytes(), L)
    log.add(RECEIPTS, receipt(other, 1, DeliveryOutcome.DELIVERED, L + 3 * s), L)
    log.add(RECEIPTS, receipt(lead, 1, DeliveryOutcome.RETRYING, L + 10 * s), L)
    log.add(RECEIPTS, receipt(lead, 2, DeliveryOutcome.DELIVERED, L + 30 * s), L)
    log.add(RECEIPTS, receipt(people, 1, DeliveryOutcome.DELIVERED, L + 300 * s), L)
    log.add(RECEIPTS, receipt(mail, 1, DeliveryOutcome.RETRYING, L + 5 * s), L)
    log.add(RECEIPTS, receipt(mail, 2, DeliveryOutcome.FAILED, L + 50 * s), L)
    # B: in commune x, cleared, raised again 40 minutes later (a flap), then closed.
    b = [
        state(2, 1, 1, Transition.RAISED, T, ["x"], evidence_at=T - 60 * s),
        state(2, 2, 0, Transition.CLEARED, T + 600 * s, ["x"]),
        state(2, 3, 1, Transition.RAISED, T + 3000 * s, ["x"]),
        state(2, 4, 0, Transition.CLEARED, T + 4000 * s, ["x"]),
    ]
    for i, w in enumerate(b):
        log.add(WARNINGS, w.to_bytes(), L + i * 1000 * s)
    log.add(COMMANDS, command(b[0].warning_id, Action.CLOSE, "c-b"), L + 5000 * s)
    # C: dengue in commune z, closed by an operator while still raised: a false alarm.
    c = state(3, 1, 1, Transition.RAISED, T, ["z"], Domain.HEALTH, evidence_at=T)
    log.add(WARNINGS, c.to_bytes(), L)
    log.add(COMMANDS, command(c.warning_id, Action.CLOSE, "c-c"), L + 900 * s)
    # D: the month after: not in the period.
    d = state(4, 1, 2, Transition.RAISED, T, ["x"]).model_copy(
        update={"raised_at": T + timedelta(days=30), "updated_at": T + timedelta(days=30)}
    )
    log.add(WARNINGS, d.to_bytes(), L + timedelta(days=30))
    return log


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store.open(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    await migrate.upgrade(s.engine)
    await s.apply("g", decode(scenario().records), {})
    yield s
    await s.close()


LEADS = {"snnmt": {"snnmt-webhook"}}


async def test_the_indicators_of_a_month(store: Store) -> None:
    found = await indicators(store.engine, parse_period("2025-11", LOCAL), lead_receivers=LEADS)
    total = found["total"]
    assert total["warnings"] == 3 and total["by_level"] == {"1": 2, "3": 1}
    # Evidence 600 s, 60 s and 0 s before raising: median 60 s, p90 (nearest rank) 600 s.
    assert total["first_reading_to_warning"] == {"n": 3, "median_s": 60.0, "p90_s": 600.0}
    assert total["warning_to_verified"] == {"n": 1, "median_s": 120.0, "p90_s": 120.0}
    # To the lead agency's receiver, not to the first agency that answered.
    assert total["warning_to_lead_agency"] == {"n": 1, "median_s": 30.0, "p90_s": 30.0}
    assert total["warning_to_citizens"] == {"n": 1, "median_s": 300.0, "p90_s": 300.0}
    assert total["delivery_success"] == {
        "email": {"delivered": 0, "failed": 1, "rate": 0.0},
        "sms": {"delivered": 1, "failed": 0, "rate": 1.0},
        "webhook": {"delivered": 2, "failed": 0, "rate": 1.0},
    }
    assert total["false_alarms"] == 1  # C; B was cleared by its readings before closing
    assert total["flaps"] == 1  # B raised again 40 min after its all-clear
    groups = {(g["domain"], g["commune"]): g for g in found["groups"]}
    assert sorted(groups) == [("health", "z"), ("water", "x"), ("water", "y")]
    assert groups[("water", "x")]["warnings"] == 2 and groups[("water", "y")]["warnings"] == 1
    assert groups[("health", "z")]["false_alarms"] == 1


async def test_indicators_of_one_commune_and_one_domain(store: Store) -> None:
    period = parse_period("2025-Q4", LOCAL)
    one = await indicators(store.engine, period, area="y", lead_receivers=LEADS)
    assert one["total"]["warnings"] == 1 and [g["commune"] for g in one["groups"]] == ["y"]
    health = await indicators(store.engine, period, domain="health", lead_receivers=LEADS)
    assert health["total"]["warnings"] == 1 and health["total"]["false_alarms"] == 1
    year = await indicators(store.engine, parse_period("2025", LOCAL))
    assert year["total"]["warnings"] == 4  # D, raised in December, too


def test_indicators_read_as_text() -> None:
    found: dict[str, Any] = {
        "period": {"label": "2025-11", "start": "2025-11-01T00:00:00+07:00",
                   "end": "2025-12-01T00:00:00+07:00"},
        "total": {
            "warnings": 2, "by_level": {"1": 1, "3": 1},
            "first_reading_to_warning": {"n": 2, "median_s": 90.0, "p90_s": 600.0},
            "warning_to_verified": {"n": 0, "median_s": None, "p90_s": None},
            "warning_to_lead_agency": {"n": 1, "median_s": 30.0, "p90_s": 30.0},
            "warning_to_citizens": {"n": 1, "median_s": 7200.0, "p90_s": 7200.0},
            "delivery_success": {"sms": {"delivered": 3, "failed": 1, "rate": 0.75}},
            "false_alarms": 1, "flaps": 0,
        },
        "groups": [],
    }  # fmt: skip
    text = indicators_text(found)
    assert "all: 2 warning(s) · highest level: I 1, III 1" in text
    assert "first reading over threshold → warning: median 1.5 min, p90 10.0 min (n=2)" in text
    assert "warning → verified: —" in text
    assert "warning → delivered to citizens: median 2.0 h, p90 2.0 h (n=1)" in text
    assert "delivery success: sms 3/4 (75%)" in text
    assert "false alarms: 1 · flaps: 0" in text


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2025-Q4", "2025-10-01", "2026-01-01"),
        ("2025-Q1", "2025-01-01", "2025-04-01"),
        ("2025-12", "2025-12-01", "2026-01-01"),
        ("2025", "2025-01-01", "2026-01-01"),
        ("2025-10-01..2025-10-31", "2025-10-01", "2025-11-01"),
    ],
)
def test_periods_in_vietnam_time(text: str, start: str, end: str) -> None:
    p = parse_period(text, LOCAL)
    assert (p.start.date().isoformat(), p.end.date().isoformat()) == (start, end)
    assert p.start.utcoffset() == timedelta(hours=7)


@pytest.mark.parametrize("text", ["2025-Q5", "2025-13", "Q4", "2025-10-31..2025-10-01"])
def test_a_period_that_is_not_one_says_what_is(text: str) -> None:
    with pytest.raises(ValueError, match=r"use 2025-Q4, 2025-10, 2025|no month"):
        parse_period(text, LOCAL)
