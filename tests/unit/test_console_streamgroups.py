"""The live stream's groups (console.streamgroups): many warnings of one domain, hazard
and commune collapse into one line with their count; a few stay single rows; the
highest level still comes first."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from console.board import Filter
from console.streamgroups import group_id, group_key, group_stream
from tests.console_kit import Console, login, make_warning
from topics.models import Area, Warning

VU_NINH = Area(code="bn-vu-ninh", name="Vũ Ninh", province="bn")
KINH_BAC = Area(code="bn-kinh-bac", name="Kinh Bắc", province="bn")


def dengue(n: int, level: int = 1, area: Area = VU_NINH, **over: Any) -> Warning:
    fields: dict[str, Any] = {
        "warning_id": f"health.dengue:site-{n}", "rule_id": "health.dengue",
        "subject": f"site-{n}", "domain": "health", "hazard": "dengue", "areas": [area],
        "level_name": "", "severity": "Moderate",
    }  # fmt: skip
    fields.update(over)
    return make_warning(level=level, **fields)


def test_three_warnings_of_one_hazard_and_commune_make_one_group() -> None:
    ws = [dengue(1, 2), dengue(2), dengue(3), dengue(4, area=KINH_BAC)]
    groups = group_stream(ws)
    assert [len(g.warnings) for g in groups] == [3, 1]
    assert groups[0].key == ("health", "dengue", "bn-vu-ninh") and groups[0].level == 2
    assert groups[0].top.warning_id == "health.dengue:site-1"


def test_two_of_a_kind_stay_single_rows_in_the_streams_order() -> None:
    flood = make_warning(level=3)
    ws = [flood, dengue(1), dengue(2)]
    assert [[w.warning_id for w in g.warnings] for g in group_stream(ws)] == [
        [flood.warning_id], ["health.dengue:site-1"], ["health.dengue:site-2"]]  # fmt: skip


def test_a_group_stands_where_its_highest_warning_stands() -> None:
    flood = make_warning(level=2)
    ws = [dengue(1, 3), flood, dengue(2), dengue(3)]  # the stream's order: level first
    groups = group_stream(ws)
    assert [g.top.warning_id for g in groups] == ["health.dengue:site-1", flood.warning_id]


def test_group_ids_are_html_safe_and_stable() -> None:
    key = group_key(dengue(1, subject='x"<'))
    assert re.fullmatch(r"g-[0-9a-f]{12}", group_id(key)) and group_id(key) == group_id(key)


async def test_the_stream_page_folds_a_group_under_a_head_with_its_count(
    console: Console,
) -> None:
    for n in range(1, 5):
        console.board.apply_warning(dengue(n))
    await login(console.client, "viewer")
    page = await (await console.client.get("/")).text()
    gid = group_id(("health", "dengue", "bn-vu-ninh"))
    assert re.search(rf'<tr class="group-head" id="{gid}"', page)
    assert re.search(r'<span class="group-count">4</span> cảnh báo', page)
    folded = re.findall(rf'data-group="{gid}" class="member" hidden>', page)
    assert len(folded) == 4
    # The flood of the fixture is alone of its kind: a row of its own, not folded.
    assert len(console.board.select(Filter())) == 5
    alone = r'id="w-water\.flood\.dap-cau:dap-cau" data-level="2" data-group="g-[0-9a-f]+">'
    assert re.search(alone, page)


async def test_a_group_formed_while_the_page_is_open_is_sent_with_its_head(
    console: Console,
) -> None:
    """The third warning of a kind arrives with its group's head (count 3), so the open
    page folds the group at once; the second alone does not."""
    await login(console.client, "viewer")
    r = await console.client.get("/events")

    async def next_event() -> dict[str, Any]:
        while True:
            line = (await asyncio.wait_for(r.content.readline(), 5)).decode()
            if line.startswith("data: "):
                found: dict[str, Any] = json.loads(line[6:])
                return found

    console.board.apply_warning(dengue(1))
    console.board.apply_warning(dengue(2))
    assert [(await next_event())["group_html"] for _ in range(2)] == [None, None]
    console.board.apply_warning(dengue(3, level=2))
    third = await next_event()
    gid = group_id(("health", "dengue", "bn-vu-ninh"))
    assert f'<tr class="group-head" id="{gid}" data-level="2">' in third["group_html"]
    assert '<span class="group-count">3</span>' in third["group_html"]
    r.close()
