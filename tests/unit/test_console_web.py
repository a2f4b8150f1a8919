"""The console's web application (console.web) against an in-memory board and writer:
login, cookies, CSRF, role checks, the commands and approval events it sends, the
live stream's pages and server-sent events."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from console.accounts import MAX_FAILURES, Role
from console.board import Board
from console.web import ConsoleConfig, make_app
from tests.console_kit import (
    BID,
    PASSWORD,
    WID,
    Console,
    MemoryWriter,
    accounts,
    csrf_of,
    login,
    make_warning,
)
from topics.metrics import Metrics
from topics.models import (
    Action,
    ApprovalAction,
    Phase,
)


async def act(c: Console, data: dict[str, str], csrf: bool = True) -> Any:
    if csrf:
        data = {**data, "csrf": await csrf_of(c.client)}
    return await c.client.post(f"/warnings/{WID}/action", data=data, allow_redirects=False)


async def test_pages_need_a_login(console: Console) -> None:
    r = await console.client.get("/", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"].startswith("/login")
    r = await console.client.post(f"/warnings/{WID}/action", data={"action": "verify"})
    assert r.status == 401
    assert console.writer.commands == []


async def test_login_sets_a_strict_httponly_session_cookie(console: Console) -> None:
    r = await login(console.client, "operator")
    assert r.status == 303
    cookie = next(h for h in r.headers.getall("Set-Cookie") if h.startswith("canhbao_session="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain http here; Secure when served over https
    page = await (await console.client.get("/")).text()
    assert "operator (operator)" in page


async def test_login_without_the_login_pages_token_is_refused(console: Console) -> None:
    r = await console.client.post("/login", data={"name": "operator", "password": PASSWORD})
    assert r.status == 403
    assert (await console.client.get("/", allow_redirects=False)).status == 303


async def test_five_wrong_passwords_throttle_the_login(console: Console) -> None:
    statuses = [(await login(console.client, "operator", "guess")).status
                for _ in range(MAX_FAILURES)]  # fmt: skip
    assert statuses == [401] * (MAX_FAILURES - 1) + [429]
    r = await login(console.client, "operator")
    assert r.status == 429
    assert "5" in await r.text()  # says when to try again


async def test_a_state_change_without_the_csrf_token_is_refused(console: Console) -> None:
    await login(console.client, "operator")
    r = await act(console, {"action": "verify"}, csrf=False)
    assert r.status == 403
    r = await console.client.post(
        f"/warnings/{WID}/action", data={"action": "verify", "csrf": "forged"}
    )
    assert r.status == 403
    assert console.writer.commands == []


@pytest.mark.parametrize("role", ["viewer", "engineer"])
async def test_an_action_without_the_role_is_refused(console: Console, role: str) -> None:
    await login(console.client, role)
    r = await act(console, {"action": "verify"})
    assert r.status == 403
    page = await (await console.client.get(f"/warnings/{WID}")).text()
    assert 'value="verify"' not in page  # and no button offers it
    assert console.writer.commands == []


async def test_verify_sends_the_clis_command_with_the_account_as_actor(console: Console) -> None:
    await login(console.client, "operator")
    r = await act(console, {"action": "verify"})
    assert r.status == 303
    [c] = console.writer.commands
    assert (c.warning_id, c.action, c.actor, c.subject) == (WID, Action.VERIFY, "operator",
                                                            "dap-cau")  # fmt: skip
    r = await act(console, {"action": "acknowledge"})
    assert console.writer.commands[-1].action is Action.RESPOND


async def test_a_phase_change_needs_a_reason(console: Console) -> None:
    await login(console.client, "operator")
    r = await act(console, {"action": "set_phase", "phase": "2", "reason": "  "})
    assert r.status == 400 and "reason" in await r.text()
    assert console.writer.commands == []
    r = await act(console, {"action": "set_phase", "phase": "2", "reason": "đê vỡ, sơ tán"})
    assert r.status == 303
    [c] = console.writer.commands
    assert (c.action, c.phase, c.reason) == (Action.SET_PHASE, Phase.SECURITY, "đê vỡ, sơ tán")


async def test_a_false_alarm_closes_the_warning_saying_so(console: Console) -> None:
    await login(console.client, "operator")
    assert (await act(console, {"action": "false_alarm"})).status == 400
    await act(console, {"action": "false_alarm", "reason": "cảm biến hỏng"})
    [c] = console.writer.commands
    assert c.action is Action.CLOSE and "false alarm" in c.reason and "cảm biến hỏng" in c.reason


async def decide(c: Console, decision: str, reason: str = "") -> Any:
    csrf = await csrf_of(c.client)
    return await c.client.post(
        f"/broadcasts/{BID}/decide",
        data={"decision": decision, "csrf": csrf, "reason": reason},
        allow_redirects=False,
    )


async def test_only_approvers_approve_broadcasts(console: Console) -> None:
    await login(console.client, "operator")
    assert (await decide(console, "approve")).status == 403
    assert console.writer.approvals == []
    await login(console.client, "approver")
    assert (await decide(console, "approve")).status == 303
    [e] = console.writer.approvals
    assert (e.broadcast_id, e.action, e.actor) == (BID, ApprovalAction.APPROVE, "approver")


async def test_the_account_that_requested_a_broadcast_cannot_approve_it(
    console: Console,
) -> None:
    console.board.requesters[BID] = "approver"
    await login(console.client, "approver")
    page = await (await console.client.get("/broadcasts")).text()
    assert "someone else must approve" in page or "người khác phải phê duyệt" in page
    r = await decide(console, "approve")
    assert r.status == 403
    assert console.writer.approvals == []
    await login(console.client, "approver-2")
    assert (await decide(console, "approve")).status == 303


async def test_an_account_counts_once_among_the_approvers(console: Console) -> None:
    b = console.board.broadcasts[BID]
    console.board.broadcasts[BID] = b.model_copy(update={"approvals": ["approver"]})
    await login(console.client, "approver")
    assert (await decide(console, "approve")).status == 403
    assert console.writer.approvals == []


async def test_rejecting_needs_a_reason(console: Console) -> None:
    await login(console.client, "approver")
    assert (await decide(console, "cancel")).status == 400
    assert (await decide(console, "cancel", "nhầm trạm")).status == 303
    assert console.writer.approvals[0].action is ApprovalAction.CANCEL


async def test_the_stream_shows_a_label_beside_each_colour_and_filters(console: Console) -> None:
    await login(console.client, "viewer")
    page = await (await console.client.get("/")).text()
    assert 'class="badge lvl-2"' in page and "cấp 2 · báo động II" in page
    assert "Luồng cảnh báo" in page  # Vietnamese by default
    assert WID in page
    assert WID not in await (await console.client.get("/?domain=health")).text()
    assert WID not in await (await console.client.get("/?level=3")).text()
    await console.client.get("/lang/en?next=/")
    page = await (await console.client.get("/")).text()
    assert "Live stream" in page and "level 2 · alarm level II" in page


async def test_text_from_the_pipeline_is_escaped(console: Console) -> None:
    console.board.apply_warning(make_warning(version=2, hazard="<script>alert(1)</script>"))
    await login(console.client, "viewer")
    page = await (await console.client.get("/")).text()
    assert "<script>alert" not in page and "&lt;script&gt;" in page


async def test_the_warning_page_shows_evidence_beside_thresholds(console: Console) -> None:
    await login(console.client, "viewer")
    page = await (await console.client.get(f"/warnings/{WID}")).text()
    for text in ("5,41", "5,3", "Sở Nông nghiệp và Môi trường", "cấp tỉnh", "Vũ Ninh"):
        assert text in page
    assert (await console.client.get("/warnings/nope:none")).status == 404


async def read_event(r: Any) -> str:
    """The next event of a server-sent-event stream (comments skipped)."""
    lines: list[str] = []
    while True:
        line = (await asyncio.wait_for(r.content.readline(), 5)).decode()
        if line == "\n" and lines:
            return "".join(lines)
        if line.strip() and not line.startswith(":"):
            lines.append(line)


async def test_server_sent_events_push_each_new_state(console: Console) -> None:
    await login(console.client, "viewer")
    r = await console.client.get("/events?status=active")
    assert r.headers["Content-Type"].startswith("text/event-stream")
    console.board.apply_warning(make_warning(version=2, level=3, transition="escalated",
                                             previous_level=2))  # fmt: skip
    event = await read_event(r)
    assert "event: warning" in event and "cấp 3 · báo động III" in event
    assert '"escalated": true' in event
    console.board.apply_warning(make_warning(version=3, level=0, transition="cleared"))
    assert "event: remove" in await read_event(r)
    r.close()


async def test_a_state_that_comes_between_the_page_and_its_stream_is_not_missed(
    console: Console,
) -> None:
    """The operator's verify comes back while the page loads: the stream the page then
    opens starts with it, instead of the row showing the old state until a reload."""
    await login(console.client, "viewer")
    console.board.apply_warning(make_warning(version=1, level=2))
    page = await (await console.client.get("/")).text()
    events = re.search(r'data-events="([^"]+)"', page)
    assert events is not None and "since=" in events.group(1)
    console.board.apply_warning(make_warning(version=2, level=2, status="verified"))
    r = await console.client.get(events.group(1).replace("&amp;", "&"))
    event = await read_event(r)
    assert event.startswith("id: ") and "event: warning" in event
    assert "đã xác minh" in event
    # What comes next follows, once.
    console.board.apply_warning(make_warning(version=3, level=3, transition="escalated",
                                             previous_level=2, status="verified"))  # fmt: skip
    assert "cấp 3" in await read_event(r)
    r.close()


async def test_a_browser_that_reconnects_gets_what_it_missed_and_only_that(
    console: Console,
) -> None:
    await login(console.client, "viewer")
    console.board.apply_warning(make_warning(version=1, level=2))
    r = await console.client.get("/events?status=active&since=" + console.board.cursor())
    console.board.apply_warning(make_warning(version=2, level=3, transition="escalated",
                                             previous_level=2))  # fmt: skip
    first = await read_event(r)
    last_id = first.split("\n")[0].removeprefix("id: ")
    r.close()
    # Gone for a while: two states of another warning come meanwhile.
    other = "water.flood.dap-cau:other"
    for v in (1, 2):
        console.board.apply_warning(make_warning(version=v, level=v, warning_id=other))
    # The browser sends back the last event's id (EventSource does, as Last-Event-ID).
    r = await console.client.get("/events?status=active&since=stale",
                                 headers={"Last-Event-ID": last_id})  # fmt: skip
    missed = await read_event(r)
    assert f'"id": "{other}"' in missed and '"level": 2' in missed
    r.close()
    # A cursor of a console since restarted: everything known is sent again.
    r = await console.client.get("/events?status=active&since=0000-999")
    ids = {(await read_event(r)).count(WID) > 0 for _ in range(2)}
    assert ids == {True, False}
    r.close()


async def test_a_second_login_page_keeps_the_first_forms_token(console: Console) -> None:
    # A browser fetching /favicon.ico, or a second tab, must not spoil the form shown.
    first = await (await console.client.get("/login")).text()
    await console.client.get("/login?next=/broadcasts")
    nonce = re.search(r'name="nonce" value="([^"]+)"', first)
    assert nonce is not None
    r = await console.client.post(
        "/login", data={"name": "operator", "password": PASSWORD, "nonce": nonce.group(1)},
        allow_redirects=False,
    )  # fmt: skip
    assert r.status == 303


async def test_the_warning_page_offers_only_the_steps_still_possible(console: Console) -> None:
    console.board.apply_warning(make_warning(version=2, status="verified",
                                             annotations={"verified_by": "operator"}))  # fmt: skip
    await login(console.client, "operator")
    page = await (await console.client.get(f"/warnings/{WID}")).text()
    assert 'value="verify"' not in page and 'value="acknowledge"' in page
    assert "<dt>đã xác minh: người quyết định</dt><dd>operator</dd>" in page
    console.board.apply_warning(make_warning(version=3, status="closed"))
    page = await (await console.client.get(f"/warnings/{WID}")).text()
    assert 'name="action"' not in page  # a closed warning takes no step, no phase


async def test_logins_and_actions_are_counted_by_outcome(console: Console) -> None:
    await login(console.client, "viewer", "guess")
    await login(console.client, "viewer")
    await act(console, {"action": "verify"})
    await act(console, {"action": "<script>"}, csrf=False)
    await login(console.client, "operator")
    await act(console, {"action": "verify"})
    await login(console.client, "approver")
    console.board.requesters[BID] = "approver"
    await decide(console, "approve")
    c = console.count
    assert c("canhbao_console_logins_total", outcome="wrong") == 1
    assert c("canhbao_console_logins_total", outcome="ok") == 3
    assert c("canhbao_console_actions_total", action="verify", outcome="refused_role") == 1
    assert c("canhbao_console_actions_total", action="other", outcome="refused_csrf") == 1
    assert c("canhbao_console_actions_total", action="verify", outcome="sent") == 1
    assert c("canhbao_console_actions_total", action="approve",
             outcome="refused_two_person") == 1  # fmt: skip


async def test_a_live_stream_ends_when_its_account_is_disabled(
    console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("console.web.HEARTBEAT_SECONDS", 0.05)
    await login(console.client, "viewer")
    r = await console.client.get("/events")
    assert (await r.content.readline()).startswith(b": connected")
    console.accounts.disable("viewer")
    rest = await asyncio.wait_for(r.content.read(), 5)  # the server closes the stream
    assert b"event:" not in rest
    assert console.count("canhbao_console_streams") == 0


async def test_behind_an_https_proxy_the_cookies_are_secure(tmp_path: Path) -> None:
    people = accounts(tmp_path / "console.db", ("operator", Role.OPERATOR))
    app = make_app(people, Board(), MemoryWriter(), ConsoleConfig(behind_https=True),
                   Metrics(CollectorRegistry()))  # fmt: skip
    async with TestClient(TestServer(app)) as client:
        first = await client.get("/login")
        assert "Secure" in first.headers["Set-Cookie"]
        # (the test client keeps no Secure cookie over http: the login form's token is
        # sent by hand, as a browser over https would)
        page = await first.text()
        nonce = re.search(r'name="nonce" value="([^"]+)"', page)
        assert nonce is not None
        r = await client.post("/login", data={"name": "operator", "password": PASSWORD,
                                              "nonce": nonce.group(1)},
                              cookies={"canhbao_login": nonce.group(1)},
                              allow_redirects=False)  # fmt: skip
        cookie = next(h for h in r.headers.getall("Set-Cookie") if "canhbao_session=" in h)
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie


async def test_people_read_the_hazards_name_and_translated_words_not_codes(
    console: Console,
) -> None:
    """Seen in the screenshots: the hazard was shown as ``river_flood``, the scope tier
    and the transition in English on the Vietnamese page."""
    await login(console.client, "viewer")
    stream = await (await console.client.get("/")).text()
    assert ">Lũ sông</a>" in stream and ">river_flood<" not in stream
    page = await (await console.client.get(f"/warnings/{WID}")).text()
    h1 = re.search(r"<h1>.*?</h1>", page, re.S)
    assert h1 and "Lũ sông – dap-cau" in h1[0]
    assert "<dd>cấp tỉnh</dd>" in page and "phát sinh" in page
    assert ">province<" not in page and "· raised" not in page
    await console.client.get("/lang/en?next=/")
    page = await (await console.client.get(f"/warnings/{WID}")).text()
    assert "River flood – dap-cau" in page and "<dd>province</dd>" in page and "· raised" in page
