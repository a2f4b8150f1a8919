"""The operator console in a real browser (Debian's chromium, driven by Playwright) on
a real broker: log in, see a warning appear on the live stream when it is produced to
``canhbao.warnings``, open it, verify it, and find the Command on ``canhbao.commands``
with the account as actor. Screenshots of each page go to ``artifacts/``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import pytest

from alerting.routes import Silence
from tests.conftest import Broker
from tests.integration.helpers import (
    REPO,
    collect,
    console_process,
    ensure_topics,
    producer,
    run_canhbao,
    running_worker,
    worker_env,
)
from tests.servers import require
from topics.catalogue import (
    COMMANDS,
    CONTROL_SILENCES,
    INGEST_READINGS,
    RECEIPTS,
    WARNINGS,
    notifications_topic,
)
from topics.models import (
    Agency,
    Area,
    Channel,
    Command,
    DeliveryReceipt,
    Evidence,
    Notification,
    Warning,
)

pytestmark = pytest.mark.integration
T = TypeVar("T")

ARTIFACTS = REPO / "artifacts"
PASSWORD = "mật khẩu đủ dài 123"
WID = "water.flood.dap-cau:dap-cau"
ACCOUNTS = {"truc-ban-a": "operator", "pho-ban-b": "approver", "pho-ban-c": "approver",
            "pho-ban-d": "approver"}  # fmt: skip


# The shipped rule water.flood.dap-cau (rules/water.yaml): level I from 4.30 m, II from
# 5.30 m, III from 6.30 m. Each state's evidence is a reading of its own level.
LEVEL_AT = {1: 4.30, 2: 5.30, 3: 6.30}
START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3, minutes=30)


def flood(level: int, version: int | None = None) -> Warning:
    """Đáp Cầu's warning at ``level``: raised at level I, escalated to II, then to III
    (version = level), each state an hour after the one before, with the reading of
    its level as evidence."""
    version = version or level
    at = START + timedelta(hours=level)
    return Warning(
        warning_id=WID, version=version, rule_id="water.flood.dap-cau", domain="water",
        hazard="river_flood", subject="dap-cau",
        transition="raised" if version == 1 else "escalated", level=level,
        level_name=["", "I", "II", "III"][level], previous_level=level - 1 if version > 1 else 0,
        severity=["", "Moderate", "Severe", "Extreme"][level], scope_tier="province",
        areas=[Area(code="bn-vu-ninh", name="Vũ Ninh", province="bn")],
        lead_agency=Agency(code="snnmt", name_vi="Sở Nông nghiệp và Môi trường",
                           name_en="Department of Agriculture and Environment"),
        evidence=[Evidence(station_id="dap-cau", metric="water_level_m",
                           value=LEVEL_AT[level] + 0.11, observed_at=at,
                           threshold=LEVEL_AT[level])],
        labels={"river": "Cầu", "station_name": "Đáp Cầu"},
        annotations={"summary_vi": "Mực nước sông Cầu tại Đáp Cầu",
                     "summary_en": "River Cầu water level at Đáp Cầu"},
        raised_at=START + timedelta(hours=1), updated_at=at,
        previous_updated_at=None if version == 1 else at - timedelta(hours=1),
    )  # fmt: skip


def outbreak(n: int) -> Warning:
    """Dengue at site ``n`` of Kinh Bắc: many of them make a group on the stream."""
    return Warning.model_validate({**flood(level=1).model_dump(), **{
        "warning_id": f"health.dengue:site-{n}", "rule_id": "health.dengue",
        "domain": "health", "hazard": "dengue", "subject": f"site-{n}", "level_name": "",
        "areas": [Area(code="bn-kinh-bac", name="Kinh Bắc", province="bn")],
        "labels": {}, "annotations": {},
    }})  # fmt: skip


def recorded() -> list[tuple[str, bytes | None, bytes | None]]:
    """What the recorder would have written of the flood: its three states, a notification
    to the lead agency and one to the commune per state, and their delivery receipts
    (the commune's first attempt failed and was retried)."""
    out: list[tuple[str, bytes | None, bytes | None]] = []
    for level in (1, 2, 3):
        w, version = flood(level), level
        out.append((WARNINGS, WID.encode(), w.to_bytes()))
        for receiver, audience in (("snnmt-webhook", "agency"), ("ubnd-bn-vu-ninh", "commune")):
            nid = f"{WID}:v{version}:{receiver}:webhook"
            note = Notification(
                notification_id=nid,
                warning_id=WID,
                warning_version=version,
                receiver_id=receiver,
                channel=Channel.WEBHOOK,
                audience=audience,
                address="http://127.0.0.1/hook",
                body="Mực nước sông Cầu tại Đáp Cầu",
                created_at=w.updated_at,
            )
            out.append((notifications_topic(Channel.WEBHOOK), receiver.encode(), note.to_bytes()))
            outcomes = ["retrying", "delivered"] if audience == "commune" else ["delivered"]
            for k, outcome in enumerate(outcomes, start=1):
                receipt = DeliveryReceipt(
                    notification_id=nid, warning_id=WID, receiver_id=receiver,
                    channel=Channel.WEBHOOK, attempt=k, outcome=outcome,
                    status_code=200 if outcome == "delivered" else 503,
                    error=None if outcome == "delivered" else "HTTP 503",
                    latency_seconds=0.2, at=w.updated_at + timedelta(seconds=1.5 * k),
                )  # fmt: skip
                out.append((RECEIPTS, nid.encode(), receipt.to_bytes()))
    return out


def record_of(tmp_path: Path) -> str:
    """The record's database of the console the ``console`` fixture started."""
    return f"sqlite+aiosqlite:///{tmp_path / 'record.db'}"


async def fill_record(url: str) -> None:
    from recorder.decode import decode
    from recorder.store import Store
    from tests.record_db import incoming

    store = Store.open(url)
    try:
        await store.apply("test", decode(incoming(recorded())), {})
    finally:
        await store.close()


def in_thread(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end in a thread of its own: Playwright's sync API keeps an
    event loop running in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def produce(bootstrap: str, w: Warning) -> None:
    async with producer(bootstrap) as p:
        await p.send_and_wait(WARNINGS, w.to_bytes(), key=w.warning_id.encode())


@pytest.fixture
def console(broker: Broker, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """``canhbao console`` as a user starts it, with the ACCOUNTS; its URL."""
    asyncio.run(ensure_topics(broker.bootstrap))
    record_url = record_of(tmp_path)
    env = {**os.environ, "CANHBAO_DATA_DIR": str(tmp_path), "CANHBAO_KAFKA_BOOTSTRAP":
           broker.bootstrap, "CANHBAO_CONSOLE_SESSION_SECRET": "s" * 32,
           "CANHBAO_LOG_LEVEL": "info", "CANHBAO_DATABASE_URL": record_url}  # fmt: skip
    # The threat record the warning pages read their history from: made by the test
    # that needs one (fill_record); the others' pages say the record cannot be read.
    for name, role in ACCOUNTS.items():
        added = subprocess.run(
            [sys.executable, "-m", "canhbao", "users", "add", name, "--role", role,
             "--password-stdin"],
            input=PASSWORD + "\n", env=env, cwd=REPO, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
    listed = run_canhbao("users", "list", env=env)
    assert "truc-ban-a" in listed.stdout and "operator" in listed.stdout
    with console_process(env, ARTIFACTS / f"console-{request.node.name}.log") as url:
        yield url


@pytest.mark.server("chromium")
def test_an_operator_sees_a_warning_arrive_opens_its_record_verifies_and_silences_it(
    broker: Broker, console: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=require("chromium"), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.goto(console + "/")
            expect(page.locator("h1")).to_have_text("Đăng nhập")  # sent to log in first
            page.get_by_label("Tài khoản").fill("truc-ban-a")
            page.get_by_label("Mật khẩu").fill(PASSWORD)
            page.get_by_role("button", name="Đăng nhập").click()
            expect(page.locator("#live")).to_have_text("Đang nhận trực tiếp", timeout=15_000)
            expect(page.locator("#empty")).to_be_visible()
            page.screenshot(path=ARTIFACTS / "console-stream-empty.png", full_page=True)

            # Produced after the page loaded: only the server-sent events can bring it.
            in_thread(produce(broker.bootstrap, flood(level=2)))
            row = page.locator(f"tr[id='w-{WID}']")
            expect(row).to_contain_text("cấp 2 · báo động II", timeout=30_000)
            in_thread(produce(broker.bootstrap, flood(level=3)))
            expect(row).to_contain_text("cấp 3 · báo động III", timeout=30_000)
            expect(row).to_contain_text("Đáp Cầu")  # the station by name, not its id
            expect(page.locator("#empty")).to_be_hidden()
            page.screenshot(path=ARTIFACTS / "console-stream-live.png", full_page=True)

            # Many of one kind at once fold into a group as they arrive, without a
            # reload: two stay rows, the third makes the group and folds all three
            # under its head; a fourth joins it, folded; Expand shows them all.
            head = page.locator("tr.group-head")
            for n in range(1, 5):
                in_thread(produce(broker.bootstrap, outbreak(n)))
                expect(page.locator(f"tr[id='w-health.dengue:site-{n}']")).to_have_count(1)
                if n == 2:
                    expect(head).to_have_count(0)
                    expect(page.locator("tr.member")).to_have_count(0)
                if n == 3:
                    expect(head).to_contain_text("3 cảnh báo")
                    expect(page.locator("tr.member")).to_have_count(3)
                    expect(page.locator("tr.member").first).to_be_hidden()
            expect(head).to_contain_text("4 cảnh báo")
            expect(page.locator("tr.member:visible")).to_have_count(0)
            page.reload()  # the page as served shows the same group
            expect(head).to_contain_text("4 cảnh báo")
            head.get_by_role("button", name="Mở rộng").click()
            expect(page.locator("tr.member:visible")).to_have_count(4)
            page.screenshot(path=ARTIFACTS / "console-stream-group.png", full_page=True)

            # The warning's page: the evidence, its chart from the record with the
            # rule's levels, the timeline, each delivery, the CAP message.
            url = record_of(tmp_path)
            made = run_canhbao("db", "upgrade", env={**os.environ, "CANHBAO_DATABASE_URL": url})
            assert made.returncode == 0, made.stderr
            in_thread(fill_record(url))
            row.get_by_role("link", name="Lũ sông").click()
            expect(page.locator("h1")).to_contain_text("Lũ sông – Đáp Cầu")
            expect(page.locator("table.evidence")).to_contain_text("6,41")
            chart = page.locator("svg.readings-chart")
            expect(chart).to_be_visible()
            for line in ("báo động I 4,3", "báo động II 5,3", "báo động III 6,3"):
                expect(chart).to_contain_text(line)
            expect(page.locator("table.timeline")).to_contain_text("tăng cấp")
            deliveries = page.locator("table.deliveries")
            expect(deliveries).to_contain_text("snnmt-webhook")
            expect(deliveries).to_contain_text("ubnd-bn-vu-ninh")
            expect(deliveries.locator("tr", has_text="ubnd-bn-vu-ninh").first).to_contain_text("2")
            expect(page.locator("dl.facts").first).to_contain_text("cấp tỉnh")
            page.get_by_text("Xem bản tin CAP (XML)").click()
            expect(page.locator("details.cap pre")).to_contain_text("<event>Lũ sông</event>")
            page.screenshot(path=ARTIFACTS / "console-warning.png", full_page=True)
            page.get_by_role("button", name="Xác minh", exact=True).click()
            expect(page.locator("p.ok")).to_contain_text("Đã gửi lệnh")

            values = in_thread(collect(broker.bootstrap, COMMANDS, lambda v: len(v) >= 1))
            command = Command.model_validate_json(values[0])
            assert (command.warning_id, command.action.value, command.actor) == (
                WID, "verify", "truc-ban-a",
            )  # fmt: skip

            # Silence it: from its page, a preview of what the silence would hold back,
            # then the silence, read back from canhbao.control.silences.
            page.get_by_role("link", name="Tạm ngừng thông báo của cảnh báo này…").click()
            page.get_by_label("Lý do").fill("đã báo trực tiếp cho UBND xã")
            page.get_by_role("button", name="Xem trước").click()
            expect(page.locator("div.preview")).to_contain_text("Lũ sông – Đáp Cầu")
            page.screenshot(path=ARTIFACTS / "console-silence-preview.png", full_page=True)
            page.get_by_role("button", name="Tạm ngừng", exact=True).click()
            expect(page.locator("p.ok")).to_contain_text("Đã gửi lệnh tạm ngừng")
            reload_until(page, "đã báo trực tiếp cho UBND xã</td>")
            silences = in_thread(collect(broker.bootstrap, CONTROL_SILENCES, lambda v: len(v) >= 1))
            silence = Silence.model_validate_json(silences[0])
            assert (silence.created_by, silence.matchers) == (
                "truc-ban-a", ['rule="water.flood.dap-cau"', 'subject="dap-cau"'],
            )  # fmt: skip
            # What it holds back now, by name.
            expect(page.locator(f"tr[id='s-{silence.id}']")).to_contain_text("Lũ sông – Đáp Cầu")
            page.screenshot(path=ARTIFACTS / "console-silences.png", full_page=True)
            page.goto(f"{console}/warnings/{quote(WID, safe='')}")
            expect(page.locator("p.silenced")).to_contain_text("Đang tạm ngừng thông báo đến")

            page.get_by_role("link", name="English").click()
            expect(page.locator("h1")).to_contain_text("River flood – Đáp Cầu")
            expect(page.locator("h1")).to_contain_text("level 3 · alarm level III")
            expect(page.locator("h2").first).to_have_text("Evidence")
            expect(page.locator("dl.facts").first).to_contain_text("province")
            expect(page.locator("table.timeline")).to_contain_text("escalated")
            expect(page.locator("svg.readings-chart")).to_contain_text("alarm level II 5.3")
            page.screenshot(path=ARTIFACTS / "console-warning-en.png", full_page=True)

            page.set_viewport_size({"width": 390, "height": 844})  # a phone
            page.screenshot(path=ARTIFACTS / "console-warning-phone.png", full_page=True)
            page.goto(console + "/silences")
            page.get_by_role("button", name=f"Lift now {silence.id}").click()
            reload_until(page, "lifted early by truc-ban-a")
            page.screenshot(path=ARTIFACTS / "console-silences-phone.png", full_page=True)
            page.goto(console + "/")
            page.screenshot(path=ARTIFACTS / "console-stream-phone.png", full_page=True)
        finally:
            browser.close()


@pytest.mark.server("chromium")
def test_a_reading_raises_a_warning_the_operator_sees_verifies_and_sees_verified(
    broker: Broker, console: str, request: pytest.FixtureRequest
) -> None:
    """The whole path with the real worker: a reading above Đáp Cầu's level I shows on
    the live stream; the operator's verify goes through the worker, whose new state
    comes back to the same page, verified by the account."""
    from playwright.sync_api import expect, sync_playwright

    from tests.integration.test_end_to_end import reading

    ARTIFACTS.mkdir(exist_ok=True)
    env = worker_env(broker.bootstrap, broker.kind)
    with (
        running_worker(env, ARTIFACTS / f"worker-{request.node.name}.log") as worker,
        sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(executable_path=require("chromium"), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.goto(console + "/")
            page.get_by_label("Tài khoản").fill("truc-ban-a")
            page.get_by_label("Mật khẩu").fill(PASSWORD)
            page.get_by_role("button", name="Đăng nhập").click()
            expect(page.locator("#live")).to_have_text("Đang nhận trực tiếp", timeout=15_000)

            async def readings() -> None:
                async with producer(broker.bootstrap) as p:
                    for hour, level in enumerate([3.9, 4.45]):
                        await p.send_and_wait(INGEST_READINGS, reading(level, hour),
                                              key=b"dap-cau")  # fmt: skip

            in_thread(readings())
            row = page.locator("#rows tr", has_text="Đáp Cầu")
            # The worker starts, reads, decides and publishes: generous, not a speed test.
            expect(row).to_contain_text("cấp 1", timeout=90_000)
            page.screenshot(path=ARTIFACTS / "console-worker-raised.png", full_page=True)
            row.get_by_role("link").first.click()
            page.get_by_role("button", name="Xác minh", exact=True).click()
            expect(page.locator("p.ok")).to_contain_text("Đã gửi lệnh")
            page.goto(console + "/")
            expect(page.locator("#rows tr", has_text="Đáp Cầu")).to_contain_text(
                "đã xác minh", timeout=90_000
            )
            page.locator("#rows tr", has_text="Đáp Cầu").get_by_role("link").first.click()
            expect(page.locator("dl.facts").last).to_contain_text("truc-ban-a")
            page.screenshot(path=ARTIFACTS / "console-worker-verified.png", full_page=True)
            assert worker.poll() is None, "the worker died"
        finally:
            browser.close()


def log_in(page: Any, console: str, name: str) -> None:
    page.goto(console + "/login")
    page.get_by_label("Tài khoản").fill(name)
    page.get_by_label("Mật khẩu").fill(PASSWORD)
    page.get_by_role("button", name="Đăng nhập").click()
    page.wait_for_url(console + "/")


def reload_until(page: Any, text: str, seconds: float = 60) -> None:
    """The broadcasts page is not live: reload it until ``text`` shows."""
    deadline = time.monotonic() + seconds
    while text not in page.content():
        assert time.monotonic() < deadline, f"{text!r} did not show in {seconds:g} s"
        page.wait_for_timeout(500)
        page.reload()


@pytest.fixture
def tansu_only(request: pytest.FixtureRequest) -> None:
    """Skip on Apache Kafka before any broker starts: browsers run on the embedded
    broker (issue 10); approvals on Apache Kafka are test_alerting_live's and
    test_console_live's."""
    if request.node.callspec.params.get("broker") != "tansu":
        pytest.skip("this browser test runs on the embedded broker only")


@pytest.mark.server("chromium")
def test_an_account_requests_a_broadcast_it_cannot_approve_two_others_send_it_and_cancel_it(
    tansu_only: None, broker: Broker, console: str, request: pytest.FixtureRequest
) -> None:
    """The two-person rule by account, end to end through the real worker: an approver
    asks from the warning's page to warn the citizens of a level-II flood (the routing
    broadcasts only level III by itself); the page shows the SMS citizens would get,
    but no Approve for its requester (nor does the server take one); two other
    approvers approve it, the worker sends exactly that SMS, and one cancels it."""
    from playwright.sync_api import expect, sync_playwright

    from alerting.directory import Directory
    from alerting.messages import renderer
    from topics.models import Audience

    w = flood(level=2)
    bid = f"{WID}:v2:citizens"
    directory = Directory.load(REPO / "config" / "geography.yaml",
                               REPO / "config" / "directory.yaml")  # fmt: skip
    sms_vi = renderer(directory)(w, Channel.SMS, "vi", Audience.CITIZEN).body

    ARTIFACTS.mkdir(exist_ok=True)
    env = worker_env(broker.bootstrap, broker.kind)
    with (
        running_worker(env, ARTIFACTS / f"worker-{request.node.name}.log") as worker,
        sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(executable_path=require("chromium"), headless=True)
        try:
            in_thread(produce(broker.bootstrap, w))
            requester = browser.new_page(viewport={"width": 1366, "height": 768})
            log_in(requester, console, "pho-ban-b")
            requester.goto(console + f"/warnings/{quote(WID, safe='')}")
            reload_until(requester, "Yêu cầu phát tin cho người dân")
            requester.locator("form[action$='/broadcast'] input[name=reason]").fill(
                "nước lên nhanh, dân ven sông cần biết"
            )
            requester.get_by_role("button", name="Yêu cầu phát tin cho người dân").click()
            reload_until(requester, bid, seconds=90)  # the worker starts and stores it
            mine = requester.locator("section.broadcast", has_text=bid)
            expect(mine).to_contain_text("Bạn đã yêu cầu tin này")
            expect(mine).to_contain_text("pho-ban-b")
            expect(mine).to_contain_text("phút")  # the time left
            expect(mine).to_contain_text(sms_vi)
            expect(mine.get_by_role("button", name="Phê duyệt")).to_have_count(0)
            requester.screenshot(path=ARTIFACTS / "console-broadcast-requester.png",
                                 full_page=True)  # fmt: skip
            requester.set_viewport_size({"width": 390, "height": 844})
            requester.screenshot(path=ARTIFACTS / "console-broadcast-phone.png", full_page=True)

            for n, name in enumerate(["pho-ban-c", "pho-ban-d"], start=1):
                page = browser.new_page(viewport={"width": 1366, "height": 768})
                log_in(page, console, name)
                page.goto(console + "/broadcasts")
                reload_until(page, bid)
                if n == 2:  # the first approval is on record, by the first account
                    reload_until(page, "pho-ban-c (1/2)")
                page.get_by_role("button", name="Phê duyệt").click()
                expect(page.locator("p.ok")).to_contain_text("Đã gửi lệnh")
            reload_until(page, 'class="bstatus">đã phát')
            sent = page.locator("section.broadcast", has_text=bid)
            expect(sent).to_contain_text("pho-ban-c, pho-ban-d")
            assert sms_vi in sent.locator("pre").all_text_contents()  # folded, still there
            page.screenshot(path=ARTIFACTS / "console-broadcast-sent.png", full_page=True)

            def citizens_sms(values: list[bytes]) -> bool:
                return any(bid.removesuffix(":citizens") in v.decode() and '"citizen"' in
                           v.decode() for v in values)  # fmt: skip

            notes = in_thread(collect(broker.bootstrap, notifications_topic(Channel.SMS),
                                      citizens_sms))  # fmt: skip
            bodies = {Notification.model_validate_json(v).body for v in notes
                      if '"citizen"' in v.decode()}  # fmt: skip
            assert sms_vi in bodies  # what the page showed is what went out

            sent.locator("input[name=reason]").fill("diễn biến đã khác, phát lại sau")
            sent.get_by_role("button", name="Hủy tin đã phát").click()
            expect(page.locator("p.ok")).to_contain_text("Đã gửi lệnh")
            reload_until(page, 'class="bstatus">đã hủy')
            expect(page.locator("section.broadcast", has_text=bid)).to_contain_text("pho-ban-d")
            assert worker.poll() is None, "the worker died"
        finally:
            browser.close()
