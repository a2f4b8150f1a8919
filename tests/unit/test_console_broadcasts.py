"""The console's broadcasts page and actions (console.broadcasts, console.web): the
exact texts citizens would get (the worker's own rendering), time left, names not
codes, delivery counts from the record, Cancel of a sent broadcast, and a broadcast
requested by an account, who then cannot approve it."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from alerting.audiences import Audiences, AudiencesFile
from alerting.directory import Directory
from alerting.messages import renderer
from alerting.notify import citizen_notifications
from alerting.render import RenderError
from alerting.routes import load_routing
from canhbao.settings import REPO_ROOT
from console.accounts import Role
from console.board import Board
from console.broadcasts import citizen_receiver, citizen_texts, delivery_counts, minutes_left
from console.history import WarningRecord
from console.web import ConsoleConfig, make_app
from tests.console_kit import (
    BID,
    NOW,
    WID,
    Console,
    MemoryWriter,
    accounts,
    csrf_of,
    login,
    make_warning,
)
from topics.metrics import Metrics
from topics.models import ApprovalAction, Broadcast, BroadcastStatus, Channel

CONFIG = REPO_ROOT / "config"
DIRECTORY = Directory.load(CONFIG / "geography.yaml", CONFIG / "directory.yaml")
CITIZENS = citizen_receiver(load_routing(CONFIG / "routes.yaml"))
SENT_BID = f"{WID}:v3:citizens"


def pending_broadcast() -> Broadcast:
    # Times from the moment the test runs, not the module's import: the page counts
    # the minutes left by the wall clock, and a whole suite can take longer than 25.
    now = datetime.now(UTC)
    return Broadcast(
        broadcast_id=BID, warning=make_warning(version=4, level=3), communes=["bn-vu-ninh"],
        channels=[Channel.SMS, Channel.LOUDSPEAKER], requested_at=now - timedelta(minutes=5),
        expires_at=now + timedelta(minutes=25),
    )  # fmt: skip


def sent_broadcast() -> Broadcast:
    return Broadcast(
        broadcast_id=SENT_BID, warning=make_warning(version=3, level=3),
        communes=["bn-vu-ninh"], channels=[Channel.SMS, Channel.LOUDSPEAKER],
        requested_at=NOW - timedelta(hours=1), expires_at=NOW - timedelta(minutes=30),
        status=BroadcastStatus.SENT, approvals=["approver", "approver-2"],
        sent_at=NOW - timedelta(minutes=50),
    )  # fmt: skip


def note(
    nid: str, receiver: str, channel: str, recipients: int, version: int = 3
) -> dict[str, Any]:
    return {"notification_id": nid, "warning_id": WID, "warning_version": version,
            "receiver_id": receiver, "channel": channel, "audience": "citizen", "lang": "vi",
            "recipients": recipients, "subject": "", "created_at": NOW.isoformat()}  # fmt: skip


def attempt(nid: str, outcome: str, n: int = 1) -> dict[str, Any]:
    at = (NOW + timedelta(seconds=n)).isoformat()
    return {"notification_id": nid, "attempt": n, "outcome": outcome, "receiver_id": "x",
            "channel": "sms", "at": at, "error": None}  # fmt: skip


def sent_record() -> WarningRecord:
    """Two SMS batches (one delivered, one failed after a retry), the loudspeaker
    delivered, an agency's webhook (not the broadcast's), and the Cancel's SMS."""
    a, b = f"{WID}:v3:citizens-bn-vu-ninh-vi-0:sms", f"{WID}:v3:citizens-bn-vu-ninh-en-0:sms"
    loa = f"{WID}:v3:loa-bn-vu-ninh:loudspeaker"
    cancel = f"{a}:cancel"
    notes = [note(a, "citizens-bn-vu-ninh-vi-0", "sms", 500),
             note(b, "citizens-bn-vu-ninh-en-0", "sms", 60),
             note(loa, "loa-bn-vu-ninh", "loudspeaker", 0),
             {**note(f"{WID}:v3:snnmt-webhook:webhook", "snnmt-webhook", "webhook", 0),
              "audience": "agency"},
             note(cancel, "citizens-bn-vu-ninh-vi-0", "sms", 500)]  # fmt: skip
    tries = [attempt(a, "delivered"), attempt(b, "retrying"), attempt(b, "failed", 2),
             attempt(loa, "delivered")]  # fmt: skip
    return WarningRecord(notifications=notes, deliveries=tries)


@dataclass
class FakeHistory:
    record: WarningRecord | None

    async def warning(self, warning_id: str, rule_id: str) -> WarningRecord | None:
        return self.record


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    people = accounts(tmp_path / "console.db")
    board = Board()
    board.apply_warning(make_warning(version=4, level=3))
    for b in (pending_broadcast(), sent_broadcast()):
        board.broadcasts[b.broadcast_id] = b
        board.requesters[b.broadcast_id] = "canhbao"
    writer = MemoryWriter()
    metrics = Metrics(CollectorRegistry())
    config = ConsoleConfig(directory=DIRECTORY, citizens=CITIZENS)
    app = make_app(people, board, writer, config, metrics=metrics,
                   history=FakeHistory(sent_record()))  # fmt: skip
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield Console(client, board, writer, people, metrics)
    finally:
        await client.close()


async def page_text(c: Console, path: str = "/broadcasts") -> str:
    return html.unescape(await (await c.client.get(path)).text())


def section(page: str, bid: str) -> str:
    """The page's section of broadcast ``bid``."""
    found = re.search(rf'<section class="broadcast[^"]*" id="{re.escape(bid)}">(.*?)</section>',
                      page, re.S)  # fmt: skip
    assert found is not None, f"no section of {bid}"
    return found.group(1)


async def post(c: Console, path: str, **data: str) -> Any:
    data["csrf"] = await csrf_of(c.client)
    return await c.client.post(path, data=data, allow_redirects=False)


# -- the texts ----------------------------------------------------------------------


def test_the_texts_are_exactly_what_the_worker_sends_each_language_of_citizens() -> None:
    """The console's texts and the fan-out of the approval stage (citizen_notifications
    with the worker's renderer) agree for every SMS language and the loudspeaker."""
    b = pending_broadcast()
    render = renderer(DIRECTORY)
    audiences = Audiences(AudiencesFile.model_validate({
        "loudspeakers": [{"commune": "bn-vu-ninh", "topic": "loa/bn-vu-ninh"}],
        "subscribers": [{"commune": "bn-vu-ninh", "synthetic": {
            "count": 60, "seed": 1, "langs": {"vi": 1, "en": 1, "km": 1}}}],
    }), Path("."))  # fmt: skip
    notes = citizen_notifications(b.warning, b.communes, b.channels, audiences, render)
    sent = {(n.channel, n.lang, n.body) for n in notes}
    shown = {(x.channel, x.lang, x.body) for x in citizen_texts(b, render)}
    assert shown == sent
    assert {(c, lang) for c, lang, _ in shown} == {
        (Channel.SMS, "vi"), (Channel.SMS, "en"), (Channel.SMS, "km"),
        (Channel.LOUDSPEAKER, "vi"),
    }  # fmt: skip


async def test_a_pending_broadcast_shows_names_time_left_and_each_text(console: Console) -> None:
    await login(console.client, "viewer")
    page = section(await page_text(console), BID)
    assert "Lũ sông – Đáp Cầu" in page  # the hazard and the station by name
    assert "Phường Vũ Ninh" in page and "bn-vu-ninh" not in page.split("<dt>ID")[0]
    assert re.search(r"<strong>(24|25) phút</strong>", page)  # time left, not only the end
    for x in citizen_texts(pending_broadcast(), renderer(DIRECTORY)):
        assert x.body in page
    assert "tiếng Khmer" in page and "Loa truyền thanh" in page


def test_time_left_counts_whole_minutes_up_and_stops_at_zero() -> None:
    b = pending_broadcast()
    assert minutes_left(b, b.expires_at - timedelta(seconds=61)) == 2
    assert minutes_left(b, b.expires_at - timedelta(seconds=1)) == 1
    assert minutes_left(b, b.expires_at + timedelta(minutes=3)) == 0


# -- sent: delivery counts and Cancel -------------------------------------------------


def test_delivery_counts_per_channel_from_the_record() -> None:
    counts = delivery_counts(sent_broadcast(), sent_record().notifications,
                             sent_record().deliveries)  # fmt: skip
    sms, loa = counts.sent
    assert (sms.channel, sms.messages, sms.recipients, sms.delivered, sms.failed,
            sms.delivered_recipients) == ("sms", 2, 560, 1, 1, 500)  # fmt: skip
    assert (loa.channel, loa.messages, loa.delivered) == ("loudspeaker", 1, 1)
    [cancel] = counts.cancel
    assert (cancel.channel, cancel.messages, cancel.waiting) == ("sms", 1, 1)


async def test_a_sent_broadcast_shows_its_delivery_counts(console: Console) -> None:
    await login(console.client, "viewer")
    page = section(await page_text(console), SENT_BID)
    assert "đã phát" in page and "500 / 560" in page
    assert "Hủy tin đã phát" not in page  # a viewer is offered no Cancel


async def test_an_approver_cancels_a_sent_broadcast_with_a_reason(console: Console) -> None:
    await login(console.client, "approver")
    assert "Hủy tin đã phát" in section(await page_text(console), SENT_BID)
    path = f"/broadcasts/{SENT_BID}/decide"
    assert (await post(console, path, decision="cancel", reason=" ")).status == 400
    assert console.writer.approvals == []
    r = await post(console, path, decision="cancel", reason="nhầm trạm đo")
    assert r.status == 303
    [e] = console.writer.approvals
    assert (e.broadcast_id, e.action, e.actor, e.reason) == (
        SENT_BID, ApprovalAction.CANCEL, "approver", "nhầm trạm đo")  # fmt: skip


@pytest.mark.parametrize("role", ["viewer", "engineer", "operator"])
async def test_cancel_needs_the_approver_role(console: Console, role: str) -> None:
    await login(console.client, role)
    r = await post(console, f"/broadcasts/{SENT_BID}/decide", decision="cancel", reason="x")
    assert r.status == 403
    assert console.writer.approvals == []


async def test_cancel_without_the_csrf_token_is_refused(console: Console) -> None:
    await login(console.client, "approver")
    r = await console.client.post(f"/broadcasts/{SENT_BID}/decide",
                                  data={"decision": "cancel", "reason": "x"})  # fmt: skip
    assert r.status == 403
    assert console.writer.approvals == []


async def test_an_expired_broadcast_cannot_be_cancelled(console: Console) -> None:
    b = console.board.broadcasts[SENT_BID]
    console.board.broadcasts[SENT_BID] = b.model_copy(update={"status": BroadcastStatus.EXPIRED})
    await login(console.client, "approver")
    r = await post(console, f"/broadcasts/{SENT_BID}/decide", decision="cancel", reason="x")
    assert r.status == 409
    assert console.writer.approvals == []


# -- requested by an account ------------------------------------------------------------


async def test_an_operator_requests_a_broadcast_and_cannot_be_one_of_its_approvers(
    console: Console,
) -> None:
    w = make_warning(version=5, level=2)
    console.board.apply_warning(w)
    await login(console.client, "approver")
    page = await page_text(console, f"/warnings/{WID}")
    assert "Yêu cầu phát tin cho người dân" in page
    path = f"/warnings/{WID}/broadcast"
    assert (await post(console, path, reason="")).status == 400  # a reason is required
    r = await post(console, path, reason="nước lên nhanh, dân ven sông cần biết")
    assert r.status == 303
    [e] = console.writer.approvals
    assert (e.action, e.actor, e.broadcast_id) == (ApprovalAction.REQUEST, "approver",
                                                   f"{WID}:v5:citizens")  # fmt: skip
    assert e.broadcast is not None and e.broadcast.warning == w
    assert e.broadcast.channels == [Channel.SMS, Channel.LOUDSPEAKER]
    assert e.broadcast.communes == ["bn-vu-ninh"]
    assert e.broadcast.expires_at - e.broadcast.requested_at == timedelta(minutes=30)
    # What the pipeline makes of it (the console reads it back from Kafka):
    console.board.broadcasts[e.broadcast_id] = e.broadcast
    console.board.requesters[e.broadcast_id] = e.actor
    r = await post(console, f"/broadcasts/{e.broadcast_id}/decide", decision="approve")
    assert r.status == 403
    assert console.count("canhbao_console_actions_total", action="approve",
                         outcome="refused_two_person") == 1  # fmt: skip
    # Asked once per state: the page no longer offers it, the server refuses it.
    assert "Yêu cầu phát tin cho người dân" not in await page_text(console, f"/warnings/{WID}")
    assert (await post(console, path, reason="lần nữa")).status == 400
    await login(console.client, "approver-2")
    r = await post(console, f"/broadcasts/{e.broadcast_id}/decide", decision="approve")
    assert r.status == 303


@pytest.mark.parametrize("role", ["viewer", "engineer"])
async def test_requesting_a_broadcast_needs_the_operator_role(console: Console, role: str) -> None:
    await login(console.client, role)
    assert "Yêu cầu phát tin" not in await page_text(console, f"/warnings/{WID}")
    r = await post(console, f"/warnings/{WID}/broadcast", reason="x")
    assert r.status == 403
    assert console.writer.approvals == []


async def test_requesting_a_broadcast_without_the_csrf_token_is_refused(console: Console) -> None:
    await login(console.client, "operator")
    r = await console.client.post(f"/warnings/{WID}/broadcast", data={"reason": "x"})
    assert r.status == 403
    assert console.writer.approvals == []


async def test_a_broadcast_whose_texts_cannot_be_rendered_can_still_be_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A template the worker could not render either (an edited one that drops a
    drill's mark, say): the page says why, and its Reject still works."""
    import console.web

    def refusing(directory: Directory) -> Any:
        def render(*args: Any) -> Any:
            raise RenderError("sms/citizen/vi: an exercise must be marked at the start")

        return render

    monkeypatch.setattr(console.web, "renderer", refusing)
    people = accounts(tmp_path / "console.db", ("approver", Role.APPROVER))
    board = Board()
    board.broadcasts[BID] = pending_broadcast()
    writer = MemoryWriter()
    metrics = Metrics(CollectorRegistry())
    app = make_app(people, board, writer, ConsoleConfig(directory=DIRECTORY), metrics=metrics)
    c = Console(TestClient(TestServer(app)), board, writer, people, metrics)
    await c.client.start_server()
    try:
        await login(c.client, "approver")
        r = await c.client.get("/broadcasts")
        assert r.status == 200
        assert "must be marked" in html.unescape(await r.text())
        r = await post(c, f"/broadcasts/{BID}/decide", decision="cancel", reason="sai mẫu")
        assert r.status == 303 and writer.approvals[0].action is ApprovalAction.CANCEL
    finally:
        await c.client.close()
