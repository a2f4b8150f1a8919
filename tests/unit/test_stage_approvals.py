"""The approval stage without a broker: a citizen broadcast goes out only once two
different operators approved it, never on one, and expires unapproved by the wall
clock; its state is on the changelog."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerting.audiences import Audiences
from alerting.directory import Directory
from alerting.messages import renderer
from alerting.routes import load_routing
from pipeline.rules.loader import RuleSet
from pipeline.worker.stages.approvals import ApprovalStage
from pipeline.worker.stages.route import RouteStage, Views
from tests.unit.conftest import MemoryTable
from tests.unit.stage_kit import Msg, Outputs
from tests.unit.test_stage_route import flood
from topics.catalogue import (
    APPROVALS,
    CLOCK,
    GROUP_NOTIFICATIONS,
    RECEIPTS,
    STATE_BROADCASTS,
    WARNINGS,
    notifications_topic,
)
from topics.models import ApprovalAction, ApprovalEvent, Broadcast, BroadcastStatus, Channel, Tick

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2025, 10, 7, 5, 0, tzinfo=UTC)  # 12:00 in Vietnam


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stage(out: Outputs, table: MemoryTable, directory: Directory, clock: Clock) -> ApprovalStage:
    return ApprovalStage(
        audiences=Audiences.load(REPO / "config/audiences.yaml"),
        render=renderer(directory),
        table=table,
        changelog=out.to(STATE_BROADCASTS),
        notifications=out.notifications(),
        dead=out.dead,
        metrics=out.metrics,
        clock=clock,
    )


@pytest.fixture
async def request_(ruleset: RuleSet, directory: Directory) -> ApprovalEvent:
    """The request the route stage makes for a level-III flood."""
    routed = Outputs()
    route = RouteStage(
        routing=load_routing(REPO / "config/routes.yaml"), directory=directory,
        audiences=Audiences.load(REPO / "config/audiences.yaml"), render=renderer(directory),
        views=Views(clock=lambda: NOW), notifications=routed.notifications(),
        groups=routed.to(GROUP_NOTIFICATIONS), receipts=routed.to(RECEIPTS),
        approvals=routed.to(APPROVALS), dead=routed.dead, metrics=routed.metrics,
        clock=lambda: NOW,
    )  # fmt: skip
    w = flood(ruleset, directory, 6.42)
    await route.handle(Msg(WARNINGS, 0, 0, w.warning_id.encode()), w.to_bytes())
    [raw] = routed.values(APPROVALS)
    return ApprovalEvent.model_validate_json(raw)


def approval(request: ApprovalEvent, actor: str, at: datetime) -> bytes:
    return ApprovalEvent(
        event_id=str(uuid.uuid4()), broadcast_id=request.broadcast_id,
        action=ApprovalAction.APPROVE, actor=actor, at=at,
    ).to_bytes()  # fmt: skip


def citizen_messages(out: Outputs) -> int:
    return sum(len(out.values(notifications_topic(c))) for c in Channel)


def stored(out: Outputs, broadcast_id: str) -> Broadcast:
    """The broadcast as the changelog has it last (what a restarted worker recovers)."""
    last = [r.value for r in out.to(STATE_BROADCASTS).records if json.loads(r.key or b"") ==
            broadcast_id][-1]  # fmt: skip
    assert last is not None
    return Broadcast.model_validate({k: v for k, v in json.loads(last).items() if k != "_p"})


async def test_a_broadcast_goes_out_once_two_operators_approved(
    stage: ApprovalStage, out: Outputs, request_: ApprovalEvent
) -> None:
    bid = request_.broadcast_id
    await stage.handle(Msg(APPROVALS, 1, 0), request_.to_bytes())
    await stage.handle(Msg(APPROVALS, 1, 1), approval(request_, "Trực ban A", NOW))
    assert citizen_messages(out) == 0  # one operator is not enough
    assert stored(out, bid).status is BroadcastStatus.PENDING
    assert stored(out, bid).approvals == ["Trực ban A"]
    await stage.handle(Msg(APPROVALS, 1, 2), approval(request_, "Trực ban B", NOW))
    assert citizen_messages(out) > 0
    assert stored(out, bid).status is BroadcastStatus.SENT
    assert out.sample("canhbao_broadcasts_total", status="approval") == 1
    assert out.sample("canhbao_broadcasts_total", status="sent") == 1


async def test_the_same_operator_twice_releases_nothing_and_is_dead_lettered(
    stage: ApprovalStage, out: Outputs, request_: ApprovalEvent
) -> None:
    await stage.handle(Msg(APPROVALS, 1, 0), request_.to_bytes())
    await stage.handle(Msg(APPROVALS, 1, 1), approval(request_, "Trực ban A", NOW))
    await stage.handle(Msg(APPROVALS, 1, 2), approval(request_, "Trực ban A", NOW))
    assert citizen_messages(out) == 0
    [letter] = out.letters()
    assert letter.stage == "approval" and letter.offset == 2
    assert "a second, different operator must approve" in letter.reason


async def test_a_broadcast_nobody_approves_expires_on_a_tick(
    stage: ApprovalStage, out: Outputs, request_: ApprovalEvent, clock: Clock
) -> None:
    assert request_.broadcast is not None
    await stage.handle(Msg(APPROVALS, 1, 0), request_.to_bytes())
    tick = Tick(at=NOW).to_bytes()
    await stage.handle(Msg(CLOCK, 1, 0), tick)
    assert stored(out, request_.broadcast_id).status is BroadcastStatus.PENDING
    clock.now = request_.broadcast.expires_at + timedelta(seconds=1)
    await stage.handle(Msg(CLOCK, 1, 1), tick)
    assert stored(out, request_.broadcast_id).status is BroadcastStatus.EXPIRED
    assert out.sample("canhbao_broadcasts_total", status="expired") == 1
    # A late approval is refused, and nothing goes out.
    await stage.handle(Msg(APPROVALS, 1, 1), approval(request_, "Trực ban A", clock.now))
    assert citizen_messages(out) == 0 and len(out.letters()) == 1
