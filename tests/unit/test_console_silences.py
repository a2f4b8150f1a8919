"""Silences from the console: the preview of what a silence would hold back (pure),
the form's checks, the page of active and recently ended silences, and the messages
sent: the CLI's silence with the account as author, its tombstone to lift one early,
operator role and CSRF token required."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any
from urllib.parse import quote

import pytest

from alerting.routes import Silence
from console.silences import Entry, SilenceError, listing, make, matchers_of, preview, silenced_by
from tests.console_kit import WID, Console, csrf_of, login, make_warning
from topics.models import Warning

NOW = datetime.now(UTC)


def other(**over: Any) -> Warning:
    return make_warning(warning_id="water.flood.phu-lang-thuong:phu-lang-thuong",
                        rule_id="water.flood.phu-lang-thuong", subject="phu-lang-thuong",
                        **over)  # fmt: skip


def test_the_preview_lists_the_active_warnings_a_silence_would_hold_back() -> None:
    flood, far = make_warning(level=2), other(level=1)
    closed = make_warning(warning_id="w:closed", status="closed")
    cleared = make_warning(warning_id="w:cleared", level=0, transition="cleared")
    warnings = [flood, far, closed, cleared]
    assert preview(['hazard="river_flood"'], warnings) == [flood, far]  # highest level first
    assert preview(['subject="dap-cau"'], warnings) == [flood]
    assert preview(['hazard="river_flood"', "level>=2"], warnings) == [flood]
    assert preview(['area=~"bn-.*"', 'domain="health"'], warnings) == []


def test_the_form_is_checked_before_anything_is_sent() -> None:
    assert matchers_of(' hazard="river_flood"\n\n subject="dap-cau" ') == [
        'hazard="river_flood"', 'subject="dap-cau"',
    ]  # fmt: skip
    with pytest.raises(SilenceError, match="at least one matcher"):
        matchers_of("  \n")
    with pytest.raises(SilenceError, match="is not a matcher"):
        matchers_of("hazard river_flood")
    with pytest.raises(SilenceError, match="reason is required"):
        make('hazard="x"', "2h", "  ", "a", NOW)
    with pytest.raises(SilenceError, match="is not a duration"):
        make('hazard="x"', "soon", "why", "a", NOW)
    with pytest.raises(SilenceError, match="at most 7 days"):
        make('hazard="x"', "8d", "why", "a", NOW)
    s = make('hazard="x"', "90m", " bảo trì trạm ", "truc-ban-a", NOW)
    assert (s.ends_at - s.starts_at, s.created_by, s.comment) == (
        timedelta(minutes=90), "truc-ban-a", "bảo trì trạm",
    )  # fmt: skip


def silence(sid: str, start: datetime, hours: float, *matchers: str) -> Silence:
    return Silence(id=sid, matchers=list(matchers) or ['hazard="river_flood"'],
                   starts_at=start, ends_at=start + timedelta(hours=hours),
                   created_by="truc-ban-a", comment="bảo trì")  # fmt: skip


def test_active_and_recently_ended_silences_are_listed_apart() -> None:
    on = Entry(silence("on", NOW - timedelta(hours=1), 2))
    lifted = Entry(silence("lifted", NOW - timedelta(hours=1), 5), NOW - timedelta(minutes=5),
                   "pho-ban-b")  # fmt: skip
    expired = Entry(silence("expired", NOW - timedelta(hours=3), 1))
    old = Entry(silence("old", NOW - timedelta(days=3), 1))
    active, ended = listing([on, lifted, expired, old], NOW)
    assert [e.silence.id for e in active] == ["on"]
    assert [e.silence.id for e in ended] == ["lifted", "expired"]  # latest ended first
    assert silenced_by([lifted, on], make_warning(), NOW) is on
    assert silenced_by([lifted], make_warning(), NOW) is None


async def test_an_operator_previews_then_silences_with_the_account_as_author(
    console: Console,
) -> None:
    await login(console.client, "operator")
    page = await (await console.client.get(f"/silences?warning={WID}")).text()
    assert 'rule="water.flood.dap-cau"\nsubject="dap-cau"' in unescape(page)  # from the warning
    csrf = await csrf_of(console.client)
    form = {"csrf": csrf, "matchers": 'subject="dap-cau"', "duration": "2h",
            "reason": "trạm đang bảo trì"}  # fmt: skip
    r = await console.client.post("/silences", data={**form, "intent": "preview"})
    shown = await r.text()
    assert r.status == 200 and console.writer.silences == []  # a preview sends nothing
    found = re.search(r'<div class="preview".*?</div>', shown, re.S)
    assert found and f"/warnings/{quote(WID, safe='')}" in found[0]
    r = await console.client.post("/silences", data={**form, "intent": "create"},
                                  allow_redirects=False)  # fmt: skip
    assert r.status == 303
    [s] = console.writer.silences
    assert (s.matchers, s.created_by, s.comment) == (
        ['subject="dap-cau"'], "operator", "trạm đang bảo trì",
    )  # fmt: skip
    assert s.ends_at - s.starts_at == timedelta(hours=2)

    # Once the topic brings it back, the page lists it and the warning says so.
    console.board.apply_silence(s.id, s, NOW)
    page = await (await console.client.get("/silences")).text()
    assert f'id="s-{s.id}"' in page and "trạm đang bảo trì" in page
    row = re.search(rf'<tr id="s-{s.id}">.*?</tr>', page, re.S)
    assert row and "Lũ sông – dap-cau" in row[0]  # what it holds back now
    stream = await (await console.client.get("/")).text()
    row = re.search(rf'<tr id="w-{re.escape(WID)}".*?</tr>', stream, re.S)
    assert row and "đang tạm ngừng thông báo" in row[0]  # marked on the live stream too
    assert "Đang tạm ngừng thông báo đến" in await (
        await console.client.get(f"/warnings/{WID}")).text()  # fmt: skip
    r = await console.client.post(f"/silences/{s.id}/lift", data={"csrf": csrf},
                                  allow_redirects=False)  # fmt: skip
    assert r.status == 303 and console.writer.lifted == [(s.id, "operator")]
    console.board.apply_silence(s.id, None, datetime.now(UTC), "operator")
    page = await (await console.client.get("/silences")).text()
    assert "dỡ bỏ sớm bởi operator" in page


async def test_a_silence_without_a_reason_is_refused_with_the_form_kept(console: Console) -> None:
    await login(console.client, "operator")
    data = {"csrf": await csrf_of(console.client), "matchers": 'subject="dap-cau"',
            "duration": "2h", "reason": "", "intent": "create"}  # fmt: skip
    r = await console.client.post("/silences", data=data)
    assert r.status == 400 and "a reason is required" in await r.text()
    assert 'subject="dap-cau"' in unescape(await r.text()) and console.writer.silences == []


@pytest.mark.parametrize("role", ["viewer", "engineer"])
async def test_silencing_needs_the_operator_role(console: Console, role: str) -> None:
    s = silence("s1", NOW - timedelta(minutes=1), 1)
    console.board.apply_silence("s1", s, NOW)
    await login(console.client, role)
    page = await (await console.client.get("/silences")).text()
    assert 'value="create"' not in page and "/lift" not in page  # nothing offered
    csrf = await csrf_of(console.client)
    r = await console.client.post("/silences", data={
        "csrf": csrf, "matchers": 'hazard="x"', "duration": "1h", "reason": "r",
        "intent": "create"})  # fmt: skip
    assert r.status == 403
    assert (await console.client.post("/silences/s1/lift", data={"csrf": csrf})).status == 403
    assert console.writer.silences == [] and console.writer.lifted == []


async def test_silencing_without_the_csrf_token_is_refused(console: Console) -> None:
    console.board.apply_silence("s1", silence("s1", NOW - timedelta(minutes=1), 1), NOW)
    await login(console.client, "operator")
    r = await console.client.post("/silences", data={
        "matchers": 'hazard="x"', "duration": "1h", "reason": "r", "intent": "create"})  # fmt: skip
    assert r.status == 403
    assert (await console.client.post("/silences/s1/lift", data={"csrf": "forged"})).status == 403
    assert console.writer.silences == [] and console.writer.lifted == []
