"""The aggregation-group stage without a broker: three dengue warnings raised within
two minutes reach the health department as one digest when the group's wait is over,
not as three messages; the groups are on the changelog."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from alerting.audiences import Audiences
from alerting.directory import Directory
from alerting.messages import flush_renderer, renderer
from alerting.routes import load_routing
from pipeline.worker.stages.group import GroupStage
from pipeline.worker.stages.route import RouteStage, Views
from tests.unit.conftest import MemoryTable
from tests.unit.stage_kit import Msg, Outputs
from tests.unit.test_grouping import T0, dengue  # noqa: F401 (a fixture)
from topics.catalogue import (
    APPROVALS,
    CLOCK,
    GROUP_NOTIFICATIONS,
    RECEIPTS,
    STATE_GROUPS,
    WARNINGS,
    notifications_topic,
)
from topics.models import Channel, Notification, Tick, Warning

REPO = Path(__file__).resolve().parents[2]
COMMUNES = ("bn-vu-ninh", "bn-kinh-bac", "bn-hap-linh")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stages(out: Outputs, directory: Directory, clock: Clock) -> tuple[RouteStage, GroupStage]:
    routing = load_routing(REPO / "config/routes.yaml")
    views = Views(clock=clock)
    route = RouteStage(
        routing=routing, directory=directory,
        audiences=Audiences.load(REPO / "config/audiences.yaml"), render=renderer(directory),
        views=views, notifications=out.notifications(), groups=out.to(GROUP_NOTIFICATIONS),
        receipts=out.to(RECEIPTS), approvals=out.to(APPROVALS), dead=out.dead,
        metrics=out.metrics, clock=clock,
    )  # fmt: skip
    group = GroupStage(
        routing=routing, render=flush_renderer(), views=views, table=MemoryTable(),
        changelog=out.to(STATE_GROUPS), notifications=out.notifications(), dead=out.dead,
        metrics=out.metrics, clock=clock,
    )  # fmt: skip
    return route, group


def to_syt(out: Outputs) -> list[Notification]:
    notes = [Notification.model_validate_json(v)
             for v in out.values(notifications_topic(Channel.WEBHOOK))]  # fmt: skip
    return [n for n in notes if n.receiver_id == "syt-webhook"]


async def test_a_burst_of_dengue_warnings_goes_out_as_one_digest(
    stages: tuple[RouteStage, GroupStage],
    out: Outputs,
    clock: Clock,
    dengue: Callable[..., Warning],  # noqa: F811
) -> None:
    route, group = stages
    for commune in COMMUNES:
        w = dengue(commune)
        await route.handle(Msg(WARNINGS, 0, 0, w.warning_id.encode()), w.to_bytes())
    held = out.to(GROUP_NOTIFICATIONS).records
    assert held and to_syt(out) == []  # held for the group, not sent
    for i, r in enumerate(held):
        await group.handle(Msg(GROUP_NOTIFICATIONS, 0, i, r.key), r.value)
    assert to_syt(out) == []  # the group still gathers
    tick = Tick(at=T0).to_bytes()
    clock.now = T0 + timedelta(minutes=1)
    await group.handle(Msg(CLOCK, 0, 0), tick)
    assert to_syt(out) == []
    clock.now = T0 + timedelta(minutes=2, seconds=1)
    await group.handle(Msg(CLOCK, 0, 1), tick)
    [digest] = to_syt(out)
    assert digest.payload["type"] == "canhbao.digest"
    assert len(digest.payload["warnings"]) == 3
    # One digest per receiver and channel of the group (the department's e-mail too).
    sent = [Notification.model_validate_json(v) for c in Channel
            for v in out.values(notifications_topic(c))]  # fmt: skip
    digests = [n for n in sent if n.warning_id.startswith("grp-")]
    assert out.sample("canhbao_group_flushes_total", kind="update", form="digest") == len(digests)
    # The group, flushed, is on the changelog: a restarted worker does not send it again.
    groups = {}
    for r in out.to(STATE_GROUPS).records:
        groups[json.loads(r.key or b"")] = json.loads(r.value or b"")
    syt = [g for g in groups.values() if g["receiver_id"] == "syt-webhook"]
    assert [(g["flushes"], len(g["members"]), g["_p"]) for g in syt] == [(1, 3, 0)]


async def test_an_unreadable_group_entry_lands_in_the_dead_letters(
    stages: tuple[RouteStage, GroupStage], out: Outputs
) -> None:
    _, group = stages
    await group.handle(Msg(GROUP_NOTIFICATIONS, 2, 9, b"grp-x"), b"not json")
    [letter] = out.letters()
    assert (letter.stage, letter.partition, letter.offset) == ("group", 2, 9)
    assert letter.reason.startswith("not a valid group entry")
