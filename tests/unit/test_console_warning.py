"""A warning's page in the console: the readings chart with the rule's levels and the
warning's periods (alerting.chart, shared with the after-action report), the timeline
of states and actions, each delivery per receiver and channel, the CAP message, names
instead of ids, in Vietnamese and English; and the record read by the command's
RecordHistory from a real SQLite record."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from alerting.chart import Period, Point, Threshold, readings_chart, readings_charts
from alerting.directory import Directory
from canhbao.cli import main
from canhbao.console_record import RecordHistory
from canhbao.settings import REPO_ROOT
from console.accounts import Role
from console.board import Board
from console.history import HistoryUnavailable, Level, WarningRecord, deliveries, timeline
from console.web import ConsoleConfig, make_app
from recorder.decode import decode
from recorder.store import Store, connect
from tests.console_kit import WID, MemoryWriter, accounts, login, make_warning
from tests.record_db import incoming
from tests.record_stream import stream
from topics.metrics import Metrics

T0 = datetime(2026, 10, 14, 3, 0, tzinfo=UTC)
LEVELS = [Level(1, "I", 4.3), Level(2, "II", 5.3), Level(3, "III", 6.3)]


def record() -> WarningRecord:
    """Đáp Cầu rising through level I to II, verified, two receivers told."""
    values = [4.0, 4.2, 4.4, 4.9, 5.4]
    points = [Point("dap-cau", "water_level_m", T0 + timedelta(hours=i), v,
                    4.3 if v < 5.3 else 5.3) for i, v in enumerate(values)]  # fmt: skip
    periods = [Period(T0 + timedelta(hours=2), 1, "I", 1, "raised"),
               Period(T0 + timedelta(hours=4), 2, "II", 2, "escalated")]  # fmt: skip
    at = (T0 + timedelta(hours=2, minutes=1)).isoformat()
    notes = [
        {"notification_id": "n1", "receiver_id": "snnmt-webhook", "channel": "webhook",
         "audience": "agency", "warning_version": 1, "created_at": at},
        {"notification_id": "n2", "receiver_id": "ubnd-bn-vu-ninh", "channel": "email",
         "audience": "commune", "warning_version": 1, "created_at": at},
    ]  # fmt: skip
    later = (T0 + timedelta(hours=2, minutes=1, seconds=4)).isoformat()
    tries = [
        {"at": later, "notification_id": "n1", "receiver_id": "snnmt-webhook",
         "channel": "webhook", "attempt": 1, "outcome": "delivered", "error": None},
        {"at": later, "notification_id": "n2", "receiver_id": "ubnd-bn-vu-ninh",
         "channel": "email", "attempt": 1, "outcome": "failed", "error": "550 mailbox full"},
    ]  # fmt: skip
    acts = [{"at": (T0 + timedelta(hours=3)).isoformat(), "actor": "truc-ban-a",
             "kind": "command", "action": "verify", "reason": "", "warning_id": WID},
            {"at": (T0 + timedelta(hours=4, minutes=5)).isoformat(), "actor": "pho-ban-b",
             "kind": "command", "action": "respond", "reason": "", "warning_id": WID}]  # fmt: skip
    return WarningRecord(periods, points, LEVELS, acts, notes, tries)


def test_the_chart_draws_the_rules_levels_and_labels_each_warning_period() -> None:
    r = record()
    lines = [Threshold(lv.value, f"báo động {lv.name}") for lv in LEVELS]
    svg = readings_chart(r.periods, r.points, lines, "vi")
    assert "báo động I 4,3" in svg and "báo động II 5,3" in svg and "báo động III 6,3" in svg
    assert svg.count("<circle") == 5 and svg.count("<rect") == 2
    # Readings just over level I: level III (6.3 m) is far above them and left out
    # rather than squash the readings into a flat line at the bottom.
    low = readings_chart(r.periods[:1], r.points[:3], lines, "vi")
    assert "báo động II 5,3" in low and "báo động III" not in low
    # Each shaded period carries its level's name, not its colour alone.
    assert re.search(r"<text[^>]*>cấp I</text>", svg) and re.search(
        r"<text[^>]*>cấp II</text>", svg
    )
    english = readings_chart(r.periods, r.points, [Threshold(4.3, "alarm level I")], "en")
    assert "alarm level I 4.3" in english and "Vietnam time" in english


def test_without_readings_the_chart_says_so_in_the_pages_language() -> None:
    assert "No reading recorded." in readings_charts([], [], lang="en")
    assert "Không có số đo nào." in readings_charts([], [], lang="vi")


def test_the_timeline_puts_state_changes_and_actions_in_order() -> None:
    r = record()
    events = timeline(r.periods, r.actions)
    assert [(e.kind, e.what, e.actor) for e in events] == [
        ("state", "raised", "canhbao"),
        ("action", "command/verify", "truc-ban-a"),
        ("state", "escalated", "canhbao"),
        ("action", "command/respond", "pho-ban-b"),
    ]


def test_each_notification_shows_its_attempts_outcome_and_delay() -> None:
    r = record()
    found = {d.receiver_id: d for d in deliveries(r.notifications, r.deliveries)}
    ok, failed = found["snnmt-webhook"], found["ubnd-bn-vu-ninh"]
    assert (ok.outcome, ok.attempts, ok.delay_seconds, ok.error) == ("delivered", 1, 4.0, "")
    assert (failed.outcome, failed.delivered_at, failed.error) == (
        "failed", None, "550 mailbox full",
    )  # fmt: skip
    # An attempt whose notification the record has not (yet) got still shows.
    orphan = [{**r.deliveries[0], "notification_id": "n9"}]
    [alone] = deliveries([], orphan)
    assert (alone.notification_id, alone.receiver_id, alone.outcome) == (
        "n9", "snnmt-webhook", "delivered",
    )  # fmt: skip


class FakeHistory:
    def __init__(self, found: WarningRecord | None, broken: str | None = None) -> None:
        self.found, self.broken = found, broken

    async def warning(self, warning_id: str, rule_id: str) -> WarningRecord | None:
        if self.broken:
            raise HistoryUnavailable(self.broken)
        return self.found if warning_id == WID else None


async def page_of(
    tmp_path: Path, history: Any, lang: str = "vi", annotations: dict[str, str] | None = None
) -> str:
    people = accounts(tmp_path / "console.db", ("viewer", Role.VIEWER))
    board = Board()
    extra = {"annotations": annotations} if annotations is not None else {}
    board.apply_warning(make_warning(version=2, level=2, transition="escalated", **extra))
    directory = Directory.load(REPO_ROOT / "config" / "geography.yaml",
                               REPO_ROOT / "config" / "directory.yaml")  # fmt: skip
    app = make_app(people, board, MemoryWriter(), ConsoleConfig(directory=directory),
                   Metrics(CollectorRegistry()), history)  # fmt: skip
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        await login(client, "viewer")
        if lang == "en":
            await client.get("/lang/en?next=/")
        r = await client.get(f"/warnings/{WID}")
        assert r.status == 200
        return await r.text()
    finally:
        await client.close()


async def test_the_warning_page_shows_the_chart_the_timeline_and_each_delivery(
    tmp_path: Path,
) -> None:
    page = await page_of(tmp_path, FakeHistory(record()))
    chart = re.search(r'<svg class="readings-chart".*?</svg>', page, re.S)
    assert chart and "báo động II 5,3" in chart[0]
    timeline_table = re.search(r'<table class="timeline">.*?</table>', page, re.S)
    assert timeline_table and "truc-ban-a" in timeline_table[0]
    assert "tăng cấp" in timeline_table[0] and "Xác minh" in timeline_table[0]
    assert "Tiếp nhận, ứng phó" in timeline_table[0]  # the lifecycle's "respond"
    sent = re.search(r'<table class="deliveries">.*?</table>', page, re.S)
    assert sent and "snnmt-webhook" in sent[0] and "đã nhận" in sent[0]
    assert "550 mailbox full" in sent[0] and "4,0 s" in sent[0]
    # Names, not codes: the hazard, the station, the scope tier, the transition.
    h1 = re.search(r"<h1>.*?</h1>", page, re.S)
    assert h1 and "Lũ sông – Đáp Cầu" in h1[0] and "river_flood" not in h1[0]
    assert "cấp tỉnh" in page and ">province<" not in page and "tăng cấp" in page
    assert "Đáp Cầu</td>" in page  # the evidence's station
    # The CAP message, folded away until asked for.
    assert re.search(r"<details class=\"cap\"><summary>.*?</summary><pre>&lt;\?xml", page)


async def test_the_decisions_recorded_read_as_words_not_field_names(tmp_path: Path) -> None:
    """Who verified, who set the phase and why: in the page's language, not as the
    lifecycle's keys; the summaries (shown above, in every language) are not repeated."""
    decided = {
        "verified_by": "truc-ban-a",
        "phase_set_by": "pho-ban-b",
        "phase_reason": "lũ lên nhanh",
        "summary_km": "សង្ខេប-ខ្មែរ",
        "runbook": "RB-7",
    }
    page = await page_of(tmp_path, FakeHistory(record()), annotations=decided)
    facts = re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", page)
    assert ("đã xác minh: người quyết định", "truc-ban-a") in facts
    assert ("Chuyển giai đoạn: người quyết định", "pho-ban-b") in facts
    assert ("Chuyển giai đoạn: lý do", "lũ lên nhanh") in facts
    assert ("runbook", "RB-7") in facts  # a rule file's own annotation, as written
    assert "verified_by" not in page and "សង្ខេប-ខ្មែរ" not in page
    (tmp_path / "en").mkdir()
    english = await page_of(tmp_path / "en", FakeHistory(record()), lang="en",
                            annotations=decided)  # fmt: skip
    assert ("verified: by", "truc-ban-a") in re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", english)


async def test_the_english_page_reads_english(tmp_path: Path) -> None:
    page = await page_of(tmp_path, FakeHistory(record()), lang="en")
    assert "River flood – Đáp Cầu" in page and "alarm level II 5.3" in page
    assert ">province<" in page.replace("<dd>province</dd>", ">province<")
    shown = re.sub(r"<details.*?</details>", "", page, flags=re.S)  # CAP: every language
    for vi in ("cấp tỉnh", "tăng cấp", "đã nhận", "Lũ sông"):
        assert vi not in shown, vi
    assert "escalated" in page and "delivered" in page


@pytest.mark.parametrize(
    ("history", "says"),
    [
        (FakeHistory(None), "Hồ sơ sự kiện chưa ghi nhận gì về cảnh báo này"),
        (None, "không được nối với hồ sơ sự kiện"),
        (FakeHistory(None, broken="no such table: warning_versions"),
         "Không đọc được hồ sơ sự kiện: no such table: warning_versions"),
    ],
)  # fmt: skip
async def test_a_warning_the_record_holds_nothing_of_says_so_plainly(
    tmp_path: Path, history: Any, says: str
) -> None:
    page = await page_of(tmp_path, history)
    assert says in page
    assert "<svg" not in page and "Cảnh báo" in page  # the warning itself still shows


@pytest.fixture
def record_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'record.db'}"
    monkeypatch.setenv("CANHBAO_DATABASE_URL", url)
    assert main(["db", "upgrade"]) == 0

    async def fill() -> None:
        store = Store.open(url)
        await store.apply("g", decode(incoming(stream())), {})
        await store.close()

    asyncio.run(fill())
    return url


async def test_the_console_reads_a_warnings_history_from_the_record(record_db: str) -> None:
    history = RecordHistory(connect(record_db), REPO_ROOT / "rules")
    try:
        found = await history.warning("water.flood.3:st-3", "water.flood.dap-cau")
        assert found is not None
        assert len(found.points) == 3 and len(found.periods) == 3
        assert any(a["actor"] == "an.nguyen" for a in found.actions)
        assert len(found.deliveries) == 7 and found.notifications
        # The rule set in force then (on record) has no such rule: no level lines
        # (the chart then draws the thresholds the readings were compared with).
        assert found.levels == []
        assert await history.warning("water.nothing:here", "x") is None
    finally:
        await history.engine.dispose()
    # No rule set on record at all: the levels of the rule in the rule files.
    with sqlite3.connect(record_db.split(":///", 1)[1]) as db:
        db.execute("delete from rule_sets")
    history = RecordHistory(connect(record_db), REPO_ROOT / "rules")
    try:
        found = await history.warning("water.flood.3:st-3", "water.flood.dap-cau")
        assert found is not None
        assert [(lv.name, lv.value) for lv in found.levels] == [
            ("I", 4.3), ("II", 5.3), ("III", 6.3)
        ]  # fmt: skip
    finally:
        await history.engine.dispose()


async def test_a_record_not_made_yet_is_said_not_crashed_on(tmp_path: Path) -> None:
    history = RecordHistory(connect(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"))
    try:
        # The database's words, and what to do about them.
        with pytest.raises(HistoryUnavailable, match=r"no such table.*canhbao db upgrade"):
            await history.warning(WID, "water.flood.dap-cau")
    finally:
        await history.engine.dispose()
