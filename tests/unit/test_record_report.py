"""``canhbao report``: one warning's after-action report, a self-contained HTML file
with the readings chart and the delivery timeline."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from canhbao.cli import main
from recorder.decode import decode
from recorder.store import Store
from tests.record_db import incoming
from tests.record_stream import stream


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    db = tmp_path / "record.db"
    monkeypatch.setenv("CANHBAO_DATABASE_URL", f"sqlite+aiosqlite:///{db}")
    assert main(["db", "upgrade"]) == 0

    async def fill() -> None:
        store = Store.open(f"sqlite+aiosqlite:///{db}")
        await store.apply("g", decode(incoming(stream())), {})
        await store.close()

    asyncio.run(fill())
    return db


def test_the_report_shows_the_readings_the_deliveries_and_who_acted(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "aar.html"
    assert main(["report", "water.flood.3:st-3", "--html", str(out)]) == 0
    assert "after-action report of water.flood.3:st-3 (3 states, 7 delivery attempts)" in (
        capsys.readouterr().out
    )
    html = out.read_text(encoding="utf-8")
    # The readings chart: the three evidence readings, their threshold, the levels.
    chart = re.search(r'<svg class="readings-chart".*?</svg>', html, re.S)
    assert chart, "a readings chart"
    assert chart[0].count("<circle") == 3 and "ngưỡng/threshold 4,3" in chart[0]
    assert chart[0].count("<rect") == 3  # a band per state: levels I, II, III
    # The delivery timeline: a row per receiver and channel, a dot per attempt.
    timeline = re.search(r'<svg class="delivery-timeline".*?</svg>', html, re.S)
    assert timeline, "a delivery timeline"
    assert "recv-0 · webhook" in timeline[0] and "recv-1 · email" in timeline[0]
    assert timeline[0].count("<circle") == 7
    assert "an.nguyen" in html and "command/verify" in html  # who acted
    assert "water.flood.3:st-3:v3:citizens" in html and "an.nguyen, binh.tran" in html
    assert "[DIỄN TẬP - KHÔNG PHẢI THẬT]" in html
    # Self-contained: nothing to fetch (the SVG namespace is a name, not a request).
    assert not re.search(r"<script|<link|src=|href=|@import|url\(", html)


def test_a_report_of_an_unrecorded_warning_says_so(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "none.html"
    assert main(["report", "water.nothing:here", "--html", str(out)]) == 1
    assert "nothing recorded about water.nothing:here" in capsys.readouterr().err
    assert not out.exists()
