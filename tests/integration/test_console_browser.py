"""The operator console in a real browser (Debian's chromium, driven by Playwright) on
a real broker: log in, see a warning appear on the live stream when it is produced to
``canhbao.warnings``, open it, verify it, and find the Command on ``canhbao.commands``
with the account as actor. Screenshots of each page go to ``artifacts/``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from canhbao.broker import free_port
from tests.conftest import Broker
from tests.integration.helpers import REPO, collect, ensure_topics, producer, run_canhbao
from tests.servers import require, wait_for_port
from topics.catalogue import COMMANDS, WARNINGS
from topics.models import Agency, Area, Command, Evidence, Warning

pytestmark = pytest.mark.integration
T = TypeVar("T")

ARTIFACTS = REPO / "artifacts"
PASSWORD = "mật khẩu đủ dài 123"
WID = "water.flood.dap-cau:dap-cau"


def flood(level: int, version: int) -> Warning:
    now = datetime.now(UTC)
    return Warning(
        warning_id=WID, version=version, rule_id="water.flood.dap-cau", domain="water",
        hazard="river_flood", subject="dap-cau",
        transition="raised" if version == 1 else "escalated", level=level,
        level_name=f"báo động {level}", previous_level=level - 1 if version > 1 else 0,
        severity="Severe", scope_tier="province",
        areas=[Area(code="bn-vu-ninh", name="Vũ Ninh", province="bn")],
        lead_agency=Agency(code="snnmt", name_vi="Sở Nông nghiệp và Môi trường",
                           name_en="Department of Agriculture and Environment"),
        evidence=[Evidence(station_id="dap-cau", metric="water_level_m", value=4.41,
                           observed_at=now, threshold=4.3)],
        raised_at=now, updated_at=now,
    )  # fmt: skip


def in_thread(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end in a thread of its own: Playwright's sync API keeps an
    event loop running in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def produce(bootstrap: str, w: Warning) -> None:
    async with producer(bootstrap) as p:
        await p.send_and_wait(WARNINGS, w.to_bytes(), key=w.warning_id.encode())


@pytest.fixture
def console(broker: Broker, tmp_path: Path) -> Iterator[str]:
    """``canhbao console`` as a user starts it, with an operator account; its URL."""
    asyncio.run(ensure_topics(broker.bootstrap))
    env = {**os.environ, "CANHBAO_DATA_DIR": str(tmp_path), "CANHBAO_KAFKA_BOOTSTRAP":
           broker.bootstrap, "CANHBAO_CONSOLE_SESSION_SECRET": "s" * 32}  # fmt: skip
    added = subprocess.run(
        [sys.executable, "-m", "canhbao", "users", "add", "truc-ban-a", "--role", "operator",
         "--password-stdin"],
        input=PASSWORD + "\n", env=env, cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    listed = run_canhbao("users", "list", env=env)
    assert "truc-ban-a" in listed.stdout and "operator" in listed.stdout
    port = free_port()
    log = open(tmp_path / "console.log", "wb")  # noqa: SIM115 -- closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "canhbao", "console", "--port", str(port)],
        env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for_port(port, proc, "canhbao console", timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.mark.server("chromium")
def test_an_operator_sees_a_warning_arrive_and_verifies_it(broker: Broker, console: str) -> None:
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
            in_thread(produce(broker.bootstrap, flood(level=2, version=1)))
            row = page.locator(f"tr[id='w-{WID}']")
            expect(row).to_contain_text("cấp 2 – rủi ro trung bình", timeout=30_000)
            in_thread(produce(broker.bootstrap, flood(level=3, version=2)))
            expect(row).to_contain_text("cấp 3 – rủi ro lớn", timeout=30_000)
            expect(page.locator("#empty")).to_be_hidden()
            page.screenshot(path=ARTIFACTS / "console-stream-live.png", full_page=True)

            row.get_by_role("link", name="river_flood").click()
            expect(page.locator("h1")).to_contain_text("river_flood – dap-cau")
            expect(page.locator("table.evidence")).to_contain_text("4.41")
            page.screenshot(path=ARTIFACTS / "console-warning.png", full_page=True)
            page.get_by_role("button", name="Xác minh", exact=True).click()
            expect(page.locator("p.ok")).to_contain_text("Đã gửi lệnh")

            values = in_thread(collect(broker.bootstrap, COMMANDS, lambda v: len(v) >= 1))
            command = Command.model_validate_json(values[0])
            assert (command.warning_id, command.action.value, command.actor) == (
                WID, "verify", "truc-ban-a",
            )  # fmt: skip

            page.get_by_role("link", name="English").click()
            expect(page.locator("h2").first).to_have_text("Evidence")
            page.screenshot(path=ARTIFACTS / "console-warning-en.png", full_page=True)
            page.set_viewport_size({"width": 390, "height": 844})  # a phone
            page.goto(console + "/")
            page.screenshot(path=ARTIFACTS / "console-stream-phone.png", full_page=True)
        finally:
            browser.close()
