"""The readings the record keeps (those some rule in force selects), their purge, the
report's chart and the warning's timeline drawn from them; who lifted a silence; the
times people read, in the display time zone."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from canhbao.cli import main
from pipeline.rules.loader import compile_rules
from recorder import migrate
from recorder.decode import Incoming, decode
from recorder.readings import ReadingSelection
from recorder.schema import AuditEntry, ReadingRow, SilenceRow
from recorder.store import Store
from tests.record_db import incoming
from tests.record_stream import RULES, T0, readings, stream
from topics.catalogue import CONTROL_RULES, CONTROL_SILENCES, readings_topic
from topics.models import SILENCE_LIFT_HEADER, Domain, Reading, RuleSetDoc, SilenceLift

RIVER = Reading(
    station_id="st-1", domain=Domain.WATER, metric="water_level_m", value=4.5,
    observed_at=T0, area="bn-dap-cau",
)  # fmt: skip


def _rules(version: str, selector: str, applied_at: datetime) -> RuleSetDoc:
    text = (
        "rules:\n  - id: r\n    domain: water\n    hazard: river_flood\n"
        f"    selector: {selector}\n    condition: {{kind: threshold}}\n"
        '    levels:\n      - {level: 1, name: "I", value: 4.3, severity: Moderate}\n'
    )
    return RuleSetDoc(version=version, sources={"w.yaml": text}, applied_by="chi.le",
                      applied_at=applied_at)  # fmt: skip


# --- which readings (pure) --------------------------------------------------------------


def test_a_reading_is_kept_when_a_rule_in_force_selects_its_station_and_metric() -> None:
    selection = ReadingSelection()
    assert not selection.selects(RIVER)  # no rule set yet: nothing is kept
    assert selection.adopt(_rules("a", "{station: st-1, metric: water_level_m}", T0))
    assert selection.selects(RIVER)
    assert not selection.selects(RIVER.model_copy(update={"station_id": "st-2"}))
    assert not selection.selects(RIVER.model_copy(update={"metric": "rainfall_mm"}))
    assert not selection.selects(RIVER.model_copy(update={"domain": Domain.ENVIRONMENT}))


def test_the_newest_rule_set_is_in_force_and_an_older_one_read_again_does_not_replace_it() -> None:
    selection = ReadingSelection()
    assert selection.adopt(
        _rules("new", "{station: st-2, metric: water_level_m}", T0 + timedelta(days=1))
    )
    # The compacted topic read again from an earlier offset: an older set comes by.
    assert not selection.adopt(_rules("old", "{station: st-1, metric: water_level_m}", T0))
    assert selection.version is not None and not selection.selects(RIVER)
    assert selection.selects(RIVER.model_copy(update={"station_id": "st-2"}))


def test_a_rule_set_that_does_not_compile_leaves_the_set_in_force() -> None:
    selection = ReadingSelection()
    selection.adopt(_rules("good", "{metric: water_level_m}", T0))
    bad = RuleSetDoc(version="bad", sources={"w.yaml": "rules: [{id: x}]"}, applied_by="x",
                     applied_at=T0 + timedelta(hours=1))  # fmt: skip
    assert not selection.adopt(bad)
    assert "bad" in selection.refused and selection.selects(RIVER)


def test_the_batchs_rule_set_is_taken_before_its_readings_whatever_their_order() -> None:
    """A reading and the rule set that selects it, fetched in one batch from two
    partitions: the reading is judged by that set, in either order."""
    r = (readings_topic(Domain.WATER), b"st-1", RIVER.to_bytes())
    doc = (CONTROL_RULES, b"active", RULES.to_bytes())
    for batch in ([r, doc], [doc, r]):
        rows = decode(incoming(batch), ReadingSelection())
        assert [row["station_id"] for row in rows.tables[ReadingRow]] == ["st-1"]
    # Without a selection (no rule set known) no reading is kept, none is lost as
    # unreadable either: readings are the pipeline's, the record keeps what rules watch.
    assert ReadingRow not in decode(incoming([r])).tables


def test_readings_of_the_stream_that_rules_watch_are_kept_and_the_others_not() -> None:
    rows = decode(incoming(stream(3)), ReadingSelection())
    kept = rows.tables[ReadingRow]
    assert len(kept) == 12  # four water levels of three stations; their rain is not watched
    assert {r["metric"] for r in kept} == {"water_level_m"}
    assert kept[0] == {
        "station_id": "st-0", "metric": "water_level_m", "observed_at": T0,
        "area": "bn-vu-ninh", "domain": "water", "value": 4.0, "unit": "m",
        "source": "test", "drill": False,
    }  # fmt: skip


# --- exactly once, purge ----------------------------------------------------------------


async def _count(store: Store, table: Any) -> int:
    async with store.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_readings_read_again_after_a_crash_are_one_row_each_and_old_ones_are_purged(
    tmp_path: Path,
) -> None:
    store = Store.open(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    try:
        await migrate.upgrade(store.engine)
        records = incoming(readings(5))
        await store.apply("g", decode(records, ReadingSelection(compile_rules(RULES.sources))), {})
        # The same records again (the second line of defence behind the offsets).
        await store.apply("g2", decode(records, ReadingSelection(compile_rules(RULES.sources))), {})
        assert await _count(store, ReadingRow) == 20
        # Station n's readings are at T0 + n minutes: keep those from T0 + 2 min on.
        purged = await store.purge(T0 + timedelta(minutes=2))
        assert purged == {"readings": 8, "evidence_readings": 0}
        assert await _count(store, ReadingRow) == 12
    finally:
        await store.close()


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The scenario recorded with its rule set's readings, through the command line."""
    db = tmp_path / "record.db"
    monkeypatch.setenv("CANHBAO_DATABASE_URL", f"sqlite+aiosqlite:///{db}")
    monkeypatch.delenv("CANHBAO_DISPLAY_TIMEZONE", raising=False)
    assert main(["db", "upgrade"]) == 0

    async def fill() -> None:
        store = Store.open(f"sqlite+aiosqlite:///{db}")
        await store.apply("g", decode(incoming(stream()), ReadingSelection()), {})
        await store.close()

    asyncio.run(fill())
    return db


def test_db_purge_says_how_many_readings_it_removed(
    recorded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["db", "purge", "--days", "36500"]) == 0  # nothing is a century old
    assert "removed 0 reading(s)" in capsys.readouterr().out
    assert main(["db", "purge"]) == 0  # the scenario is from 2025: older than 30 days
    out = capsys.readouterr().out
    assert "removed 84 reading(s) observed before" in out  # 48 readings, 36 evidence
    assert "48 from readings, 36 from evidence_readings" in out
    assert "(30 days)" in out


# --- the report's chart and the timeline --------------------------------------------------


def test_the_reports_chart_draws_every_reading_the_rules_selected_between_state_changes(
    recorded: Path, tmp_path: Path
) -> None:
    out = tmp_path / "aar.html"
    assert main(["report", "water.flood.3:st-3", "--html", str(out)]) == 0
    chart = re.search(r'<svg class="readings-chart".*?</svg>', out.read_text("utf-8"), re.S)
    assert chart
    # The three readings given as evidence (one at 10:03:00 is also a selected reading)
    # and the three other selected readings of st-3 between them: six points.
    assert chart[0].count("<circle") == 6
    assert "14/10/2025 10:03:45" in chart[0]  # a reading no state gave as evidence
    assert "ngưỡng/threshold 4,3" in chart[0] and "Asia/Ho_Chi_Minh" in chart[0]


def test_a_warnings_timeline_lists_its_readings_in_the_display_time_zone(
    recorded: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    capsys.readouterr()
    assert main(["history", "warning", "water.flood.3:st-3"]) == 0
    text = capsys.readouterr().out
    # Scenario time 03:03:45 UTC is 10:03:45 in Vietnam.
    assert "2025-10-14 10:03:45 +07  READING   st-3 (bn-tien-du) water_level_m 4.3 m" in text
    assert "2025-10-14 10:03:20 +07  STATE     v1 raised" in text
    assert main(["history", "warning", "water.flood.3:st-3", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [r["observed_at"] for r in found["readings"]][-1] == "2025-10-14T03:03:45+00:00"
    monkeypatch.setenv("CANHBAO_DISPLAY_TIMEZONE", "UTC")
    assert main(["history", "warning", "water.flood.3:st-3"]) == 0
    assert "2025-10-14 03:03:45 UTC  READING" in capsys.readouterr().out


def test_history_text_shows_local_time_and_json_and_csv_keep_iso_8601_with_the_offset(
    recorded: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    capsys.readouterr()
    assert main(["history", "actions", "--actor", "dung.pham"]) == 0
    assert capsys.readouterr().out.startswith("2025-10-14 10:00:00 +07  dung.pham")
    assert main(["history", "actions", "--actor", "dung.pham", "--json"]) == 0
    # (the silence was set when the broker logged it: a fraction of a second past 03:00)
    assert re.fullmatch(
        r"2025-10-14T03:00:00\.\d+\+00:00", json.loads(capsys.readouterr().out)[0]["at"]
    )
    assert main(["history", "warnings", "--csv", "--latest"]) == 0
    assert ",2025-10-14T03:01:00+00:00," in capsys.readouterr().out
    # A time without an offset on the command line is in the display time zone too:
    # 10:00:30 in Vietnam is after the silence was set (03:00 UTC), 10:00 UTC is not.
    assert main(["history", "actions", "--actor", "dung.pham", "--since",
                 "2025-10-14T10:00:30"]) == 0  # fmt: skip
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("CANHBAO_DISPLAY_TIMEZONE", "UTC")
    assert main(["history", "actions", "--actor", "dung.pham", "--since",
                 "2025-10-14T02:59"]) == 0  # fmt: skip
    assert capsys.readouterr().out.startswith("2025-10-14 03:00:00 UTC  dung.pham")


def test_a_display_time_zone_that_does_not_exist_is_refused_with_what_to_give() -> None:
    from pydantic import ValidationError

    from canhbao.settings import Settings

    with pytest.raises(ValidationError, match="not an IANA time zone"):
        Settings(display_timezone="Asia/Hanoi City")


# --- who lifted a silence ---------------------------------------------------------------


def _tombstone(headers: tuple[tuple[str, bytes], ...]) -> Incoming:
    return Incoming(CONTROL_SILENCES, 0, 7, b"maint-st-2", None, 1_760_410_800_000, headers)


def test_a_silence_lifted_early_is_recorded_with_who_lifted_it_and_why() -> None:
    lift = SilenceLift(silence_id="maint-st-2", actor="dung.pham", reason="trạm đã sửa xong",
                       at=datetime(2025, 10, 14, 4, 0, tzinfo=UTC))  # fmt: skip
    rows = decode([_tombstone((lift.header(),))])
    (entry,) = rows.tables[AuditEntry]
    assert (entry["action"], entry["actor"], entry["reason"]) == (
        "remove", "dung.pham", "trạm đã sửa xong"
    )  # fmt: skip
    assert entry["at"] == lift.at
    (silence,) = rows.tables[SilenceRow]
    assert (silence["removed_by"], silence["removed_at"]) == ("dung.pham", lift.at)


def test_a_lift_from_before_lifts_carried_their_operator_is_still_recorded() -> None:
    (entry,) = decode([_tombstone(())]).tables[AuditEntry]
    assert entry["actor"] == "(not recorded)"
    bad = decode([_tombstone(((SILENCE_LIFT_HEADER, b'{"actor": ""}'),))])
    (entry,) = bad.tables[AuditEntry]
    assert entry["actor"].startswith("(unreadable lift header:")
    assert not bad.skipped  # the lift itself stands: every consumer lifted the silence


def test_unsilence_needs_who_lifts_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["alerts", "unsilence", "maint-st-2"])
    assert "--actor" in capsys.readouterr().err


# --- migrations ---------------------------------------------------------------------------


async def test_upgrading_a_recorded_database_from_0001_keeps_its_rows(tmp_path: Path) -> None:
    store = Store.open(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    try:
        await migrate.upgrade(store.engine, "0001")
        async with store.engine.begin() as conn:
            await conn.exec_driver_sql(
                "INSERT INTO silences (silence_id, matchers, created_by, comment, position) "
                "VALUES ('s1', '[]', 'dung.pham', 'bảo trì', 3)"
            )
        await migrate.upgrade(store.engine)
        async with store.engine.connect() as conn:
            row = (await conn.execute(select(SilenceRow))).one()
        assert (row.silence_id, row.created_by, row.removed_by) == ("s1", "dung.pham", None)
        assert await _count(store, ReadingRow) == 0
    finally:
        await store.close()
