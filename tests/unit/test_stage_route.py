"""The route stage without a broker: a warning state reaches the agencies and
committees who must act, a level-III flood asks two operators to approve a citizen
broadcast, a silence holds notifications back with a receipt saying so."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerting.audiences import Audiences
from alerting.directory import Directory
from alerting.messages import renderer
from alerting.routes import Silence, load_routing
from pipeline.engine import Engine
from pipeline.rules.loader import RuleSet
from pipeline.worker.stages.route import RouteStage, Views
from tests.unit.stage_kit import Msg, Outputs
from topics.catalogue import (
    APPROVALS,
    GROUP_NOTIFICATIONS,
    RECEIPTS,
    WARNINGS,
    notifications_topic,
)
from topics.models import (
    ApprovalAction,
    ApprovalEvent,
    Channel,
    DeliveryOutcome,
    DeliveryReceipt,
    Domain,
    Notification,
    Reading,
    Warning,
)

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2025, 10, 7, 5, 0, tzinfo=UTC)  # 12:00 in Vietnam: no quiet hours


@pytest.fixture
def views() -> Views:
    return Views(clock=lambda: NOW)


@pytest.fixture
def stage(out: Outputs, views: Views, directory: Directory) -> RouteStage:
    return RouteStage(
        routing=load_routing(REPO / "config/routes.yaml"),
        directory=directory,
        audiences=Audiences.load(REPO / "config/audiences.yaml"),
        render=renderer(directory),
        views=views,
        notifications=out.notifications(),
        groups=out.to(GROUP_NOTIFICATIONS),
        receipts=out.to(RECEIPTS),
        approvals=out.to(APPROVALS),
        dead=out.dead,
        metrics=out.metrics,
        clock=lambda: NOW,
    )


def flood(ruleset: RuleSet, directory: Directory, *levels: float) -> Warning:
    """The Đáp Cầu flood warning after readings at ``levels`` (ten minutes apart)."""
    engine, store = Engine(ruleset, directory), {}
    states: list[Warning] = []
    for i, value in enumerate(levels):
        reading = Reading(
            station_id="dap-cau", domain=Domain.WATER, metric="water_level_m", value=value,
            observed_at=NOW - timedelta(minutes=10 * (len(levels) - i)), source="test",
        )  # fmt: skip
        states += engine.on_reading(reading, store, now=NOW, mode="station").warnings
    return states[-1]


def notes(out: Outputs, channel: Channel) -> list[Notification]:
    return [Notification.model_validate_json(v) for v in out.values(notifications_topic(channel))]


async def test_a_level_two_flood_reaches_the_agencies_who_must_act(
    stage: RouteStage, out: Outputs, ruleset: RuleSet, directory: Directory
) -> None:
    w = flood(ruleset, directory, 5.38)
    await stage.handle(Msg(WARNINGS, 0, 0, w.warning_id.encode()), w.to_bytes())
    hooks = {n.receiver_id: n for n in notes(out, Channel.WEBHOOK)}
    assert hooks["snnmt-webhook"].notification_id == f"{w.warning_id}:v1:snnmt-webhook:webhook"
    assert {"snnmt-webhook", "bchqs-webhook"} <= set(hooks)
    assert "snnmt-email" in {n.receiver_id for n in notes(out, Channel.EMAIL)}
    # Keyed by receiver: each receiver's messages keep their order.
    for r in out.to(notifications_topic(Channel.WEBHOOK)).records:
        assert r.key == Notification.model_validate_json(r.value or b"").receiver_id.encode()
    assert out.sample("canhbao_notifications_routed_total", channel="webhook") == len(hooks)
    assert APPROVALS not in out.sent()  # level II is not for citizens
    assert w.warning_id in stage.views.active  # inhibition now knows of it


async def test_a_level_three_flood_asks_two_operators_for_a_citizen_broadcast(
    stage: RouteStage, out: Outputs, ruleset: RuleSet, directory: Directory
) -> None:
    w = flood(ruleset, directory, 6.42)
    await stage.handle(Msg(WARNINGS, 0, 0, w.warning_id.encode()), w.to_bytes())
    [request] = [ApprovalEvent.model_validate_json(v) for v in out.values(APPROVALS)]
    assert request.action is ApprovalAction.REQUEST and request.actor == "canhbao"
    assert request.broadcast is not None and request.broadcast.warning.warning_id == w.warning_id
    assert request.broadcast_id == f"{w.warning_id}:v1:citizens"
    assert out.to(APPROVALS).records[0].key == w.warning_id.encode()
    # Nothing reaches citizens before the approvals.
    assert not [n for c in Channel for n in notes(out, c) if n.audience.value == "citizen"]


async def test_a_silenced_warning_is_held_back_with_a_receipt(
    stage: RouteStage, out: Outputs, ruleset: RuleSet, directory: Directory
) -> None:
    stage.views.silences["maintenance"] = Silence(
        id="maintenance", matchers=['subject="dap-cau"'], starts_at=NOW - timedelta(hours=1),
        ends_at=NOW + timedelta(hours=1), created_by="Trực ban A", comment="bảo trì trạm",
    )  # fmt: skip
    w = flood(ruleset, directory, 5.38)
    await stage.handle(Msg(WARNINGS, 0, 0, w.warning_id.encode()), w.to_bytes())
    assert notes(out, Channel.WEBHOOK) == []
    receipts = [DeliveryReceipt.model_validate_json(v) for v in out.values(RECEIPTS)]
    assert receipts and all(r.outcome is DeliveryOutcome.SUPPRESSED for r in receipts)
    assert all(r.warning_id == w.warning_id for r in receipts)
    assert out.sample("canhbao_notifications_suppressed_total", channel="webhook") > 0


async def test_a_message_that_is_not_a_warning_lands_in_the_dead_letters(
    stage: RouteStage, out: Outputs
) -> None:
    await stage.handle(Msg(WARNINGS, 1, 42, b"x"), b"{}")
    [letter] = out.letters()
    assert (letter.stage, letter.partition, letter.offset) == ("route", 1, 42)
    assert letter.reason.startswith("not a valid warning")
    assert out.sent() == {"canhbao.deadletter": 1}


async def test_a_batch_routes_each_warning_in_order_and_dead_letters_only_the_bad_one(
    stage: RouteStage, out: Outputs, ruleset: RuleSet, directory: Directory
) -> None:
    """The worker routes warnings in batches: each state of the batch reaches its
    agencies in the order it came, and a record that is not a warning costs only itself."""
    first = flood(ruleset, directory, 5.38)  # level II
    second = Warning.model_validate({**first.model_dump(), "version": 2, "level": 3,
                                     "level_name": "III", "previous_level": 2,
                                     "transition": "escalated"})  # fmt: skip
    await stage.handle_batch([
        (Msg(WARNINGS, 0, 10, first.warning_id.encode()), first.to_bytes()),
        (Msg(WARNINGS, 0, 11, b"x"), b"{}"),
        (Msg(WARNINGS, 0, 12, second.warning_id.encode()), second.to_bytes()),
    ])  # fmt: skip
    snnmt = [n for n in notes(out, Channel.WEBHOOK) if n.receiver_id == "snnmt-webhook"]
    assert [n.warning_version for n in snnmt] == [first.version, second.version] == [1, 2]
    assert [letter.offset for letter in out.letters()] == [11]
    assert len(out.values(APPROVALS)) == 1  # the level-III state asks for a broadcast
