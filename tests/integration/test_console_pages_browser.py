"""The console's area map, rules, health and indicators pages in a real browser
(Debian's chromium, Playwright) on a real broker and a real record: a warning produced
to ``canhbao.warnings`` colours its commune on the map with its level written; a click
on the commune lists its warnings and leads to the stream filtered by that commune;
the rules, health and indicators pages show what Kafka and the record hold.
Screenshots at 1366×768 and at a phone's width go to ``artifacts/``."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from canhbao.control import publish
from console.accounts import Accounts, Role
from pipeline.rules.loader import load_rules
from recorder import migrate
from recorder.decode import decode
from recorder.store import Store
from tests.conftest import Broker
from tests.integration.helpers import REPO, console_process, ensure_topics
from tests.integration.test_console_browser import ARTIFACTS, flood, in_thread, produce
from tests.record_db import incoming
from tests.record_stream import stream
from tests.servers import REQUIRED_ENV, require
from topics.catalogue import DEADLETTER, WARNINGS
from topics.models import Area, DeadLetter

pytestmark = pytest.mark.integration

PASSWORD = "mật khẩu đủ dài 456"
LAGGING = "canhbao.test-lagging"  # a consumer group that read nothing of canhbao.warnings


async def prepare(bootstrap: str, record_url: str) -> None:
    """The record with a scenario's rows and a dead letter of a minute ago; a rule set
    in force; a consumer group behind on canhbao.warnings."""
    await ensure_topics(bootstrap)
    store = Store.open(record_url)
    await migrate.upgrade(store.engine)  # as canhbao db upgrade does
    now = datetime.now(UTC) - timedelta(minutes=1)
    letter = DeadLetter(source_topic="canhbao.ingest.readings", partition=0, offset=9,
                        key=b"dap-cau", original=b"{", stage="validate", at=now,
                        reason="not valid JSON: Expecting value: line 1 column 2")  # fmt: skip
    fresh = [dataclasses.replace(r, offset=10_000) for r in
             incoming([(DEADLETTER, b"canhbao.ingest.readings", letter.to_bytes())])]  # fmt: skip
    try:
        await store.apply("test", decode(incoming(stream()) + fresh), {})
    finally:
        await store.close()
    await publish(bootstrap, load_rules(REPO / "rules"), "ky-su-lan", "ngưỡng mùa lũ")
    kinh_bac = [Area(code="bn-kinh-bac", name="Kinh Bắc", province="bac-ninh")]
    for level in (1, 2):  # two warnings elsewhere, before the page opens
        old = flood(level, 1).model_copy(update={"warning_id": f"old-{level}", "areas": kinh_bac})
        await produce(bootstrap, old)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=LAGGING,
                                enable_auto_commit=False)  # fmt: skip
    await consumer.start()
    try:
        tps = [TopicPartition(WARNINGS, p) for p in range(3)]
        consumer.assign(tps)
        await consumer.commit({tp: 0 for tp in tps})
    finally:
        await consumer.stop()


def leaflet_missing() -> None:
    """Skip (fail in CI, as for a missing server) without the map library ``make setup``
    installs with npm."""
    if (REPO / "node_modules" / "leaflet" / "dist" / "leaflet.js").is_file():
        return
    reason = "Leaflet is not installed: install npm (sudo apt-get install npm), then make setup"
    if os.environ.get(REQUIRED_ENV) == "required":
        pytest.fail(f"{reason}; {REQUIRED_ENV}=required", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def console(broker: Broker, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    env = {**os.environ, "CANHBAO_DATA_DIR": str(tmp_path), "CANHBAO_KAFKA_BOOTSTRAP":
           broker.bootstrap, "CANHBAO_CONSOLE_SESSION_SECRET": "s" * 32}  # fmt: skip
    # In this process, not by two more commands: the same files, seconds less of CI.
    in_thread(prepare(broker.bootstrap, f"sqlite+aiosqlite:///{tmp_path / 'record.db'}"))
    Accounts(tmp_path / "console.db", b"s" * 32).add("xem-a", Role.VIEWER, PASSWORD)
    with console_process(env, ARTIFACTS / f"console-{request.node.name}.log") as url:
        yield url


@pytest.mark.server("chromium")
def test_the_map_colours_a_commune_and_the_other_pages_show_real_data(
    broker: Broker, console: str
) -> None:
    from playwright.sync_api import expect, sync_playwright

    leaflet_missing()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=require("chromium"), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.goto(console + "/map")
            page.get_by_label("Tài khoản").fill("xem-a")
            page.get_by_label("Mật khẩu").fill(PASSWORD)
            page.get_by_role("button", name="Đăng nhập").click()
            expect(page.locator("#live")).to_have_text("Đang nhận trực tiếp", timeout=15_000)
            vu_ninh = page.locator("path.area-bn-vu-ninh")
            expect(vu_ninh).to_be_visible()

            # Produced after the page loaded: only the live stream can bring it.
            in_thread(produce(broker.bootstrap, flood(level=3, version=1)))
            label = page.locator(".leaflet-tooltip.area-label", has_text="Phường Vũ Ninh")
            expect(label).to_have_text("Phường Vũ Ninh: cấp 3", timeout=30_000)
            expect(label).to_have_class("leaflet-tooltip area-label lvl-3 leaflet-zoom-animated"
                                        " leaflet-tooltip-center")  # fmt: skip
            row = page.locator("#area-rows tr[data-code='bn-vu-ninh']")
            expect(row).to_contain_text("cấp 3 · báo động III")
            page.screenshot(path=ARTIFACTS / "console-map.png")

            vu_ninh.click()
            detail = page.locator("#area-detail")
            expect(detail).to_be_visible()
            expect(detail.locator("h2")).to_have_text("Phường Vũ Ninh")
            expect(detail.locator("li").first).to_contain_text("cấp 3 · báo động III")
            expect(detail.locator("li").first).to_contain_text("river_flood – dap-cau")
            page.screenshot(path=ARTIFACTS / "console-map-commune.png")
            detail.get_by_role("link", name="Xem trên luồng cảnh báo").click()
            page.wait_for_url("**/?status=active&area=bn-vu-ninh")
            expect(page.locator("#rows tr")).to_have_count(1)  # the other warnings are elsewhere
            expect(page.locator("#rows tr").first).to_contain_text("cấp 3 · báo động III")

            page.goto(console + "/rules")
            expect(page.locator("dl.facts")).to_contain_text("ky-su-lan")
            expect(page.locator("tr[id='rule-water.flood.dap-cau']")).to_contain_text("≥ 6.3 (III)")
            page.screenshot(path=ARTIFACTS / "console-rules.png", full_page=True)

            page.goto(console + "/health")
            lagging = page.locator("#lag tr", has_text=LAGGING)
            expect(lagging).to_contain_text("canhbao.warnings 3")  # two old states and the new
            expect(page.locator("#dead-letters")).to_contain_text("not valid JSON")
            page.screenshot(path=ARTIFACTS / "console-health.png", full_page=True)

            page.goto(console + "/indicators?period=2025-10")
            expect(page.locator("#ind-total")).to_contain_text("cảnh báo")
            assert int(page.locator("#ind-total").inner_text().split()[0]) > 0
            expect(page.locator("figure svg").first).to_be_visible()
            page.screenshot(path=ARTIFACTS / "console-indicators.png", full_page=True)

            page.set_viewport_size({"width": 390, "height": 844})  # a phone
            page.goto(console + "/map")
            expect(label).to_have_text("Phường Vũ Ninh: cấp 3", timeout=15_000)
            page.screenshot(path=ARTIFACTS / "console-map-phone.png", full_page=True)
            page.goto(console + "/health")
            page.screenshot(path=ARTIFACTS / "console-health-phone.png", full_page=True)
        finally:
            browser.close()
