"""The official disaster risk level (Decision 18/2021/QĐ-TTg) on warnings: the tables
(alerting.risk), the level on each warning state (pipeline.lifecycle), the operator's
raise under Article 4 clause 4 (``raise_risk``), and the palette of Appendix XII.

The boundaries of Article 45 for a station of each zone are also rule tests
(rules/risk.test.yaml), through the whole engine behind the quality gate."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from alerting import palette
from alerting.directory import ConfigError, Directory
from alerting.risk import RiskDataError, RiskTable, StationAttributes, adjusted, table
from pipeline.engine import Engine
from pipeline.rules.loader import RuleSet
from tests.unit.conftest import REPO, T0
from topics.models import Command, Reading, Transition, Warning

ALARM = {1: 4.30, 2: 5.30, 3: 6.30}  # Đáp Cầu, Lục Nam, Phủ Lạng Thương
PEAK = 7.60


def _flood(zone: int, level: int, value: float, previous: int | None = None) -> int | None:
    found = table().assess(
        "river_flood",
        level,
        ALARM,
        [("water_level_m", value)],
        StationAttributes(zone, PEAK),
        hysteresis=0.10,
        previous=previous,
    )
    return found.level if found else None


# (alarm level reached by the rule, water level) -> risk level, per zone: Article 45.
STEPS = [(1, 4.30), (2, 5.30), (3, 6.30), (3, 6.59), (3, 6.60), (3, 7.29), (3, 7.30),
         (3, 7.60), (3, 7.61)]  # fmt: skip
EXPECTED = {
    1: [1, 1, 2, 2, 2, 2, 3, 3, 3],  # clause 1a, 1b, 2c, 3
    2: [1, 2, 2, 2, 2, 2, 3, 3, 3],  # clause 1a, 2b, 2c, 3
    3: [1, 2, 3, 3, 3, 3, 3, 3, 3],  # clause 1a, 2b, 3b
    4: [2, 3, 3, 3, 4, 4, 4, 4, 5],  # clause 2a, 3a, 4 (from III + 0.3 m), 5 (above the peak)
}


@pytest.mark.parametrize("zone", [1, 2, 3, 4])
def test_article_45_gives_each_zone_its_level_at_each_point(zone: int) -> None:
    assert [_flood(zone, lv, v) for lv, v in STEPS] == EXPECTED[zone]


def test_every_level_cites_its_article_and_clause() -> None:
    t = table()
    station = StationAttributes(4, PEAK)
    basis = [
        t.assess("river_flood", lv, ALARM, [("water_level_m", v)], station)
        for lv, v in [(1, 4.5), (2, 5.5), (3, 6.7), (3, 7.7)]
    ]
    assert [b.basis if b else None for b in basis] == [
        "QĐ 18/2021/QĐ-TTg Điều 45 khoản 2 điểm a",
        "QĐ 18/2021/QĐ-TTg Điều 45 khoản 3 điểm a",
        "QĐ 18/2021/QĐ-TTg Điều 45 khoản 4",
        "QĐ 18/2021/QĐ-TTg Điều 45 khoản 5",
    ]


def test_the_alarm_level_the_rule_holds_decides_below_iii_not_the_raw_value() -> None:
    # 6.25 m is below III (6.30 m), but the rule holds level III within its hysteresis:
    # the risk level is III's, as the bulletin's "báo động III" is.
    assert _flood(3, 3, 6.25) == 3
    assert _flood(4, 3, 6.25) == 3


def test_above_iii_a_level_is_left_only_hysteresis_below_its_point() -> None:
    assert _flood(4, 3, 6.55, previous=4) == 4  # 6.55 + 0.10 still reaches III + 0.3 m
    assert _flood(4, 3, 6.49, previous=4) == 3
    assert _flood(4, 3, 6.55, previous=None) == 3  # rising, the value itself decides
    assert _flood(4, 3, 7.55, previous=5) == 5  # within 0.10 m of the peak
    assert _flood(4, 3, 7.45, previous=5) == 4


def test_no_level_without_the_stations_zone_or_an_alarm_scale() -> None:
    t = table()
    assert t.assess("river_flood", 2, ALARM, [("water_level_m", 5.5)], None) is None
    no_zone = StationAttributes(None, PEAK)
    assert t.assess("river_flood", 2, ALARM, [("water_level_m", 5.5)], no_zone) is None
    # a "river_flood" rule whose levels are not I, II and III
    only_two = {1: 4.3, 2: 5.3}
    zone = StationAttributes(3, PEAK)
    assert t.assess("river_flood", 2, only_two, [("water_level_m", 5.5)], zone) is None
    assert t.assess("river_flood", 0, ALARM, [("water_level_m", 3.0)], zone) is None


def test_no_historical_peak_means_level_5_is_never_reached() -> None:
    found = table().assess(
        "river_flood", 3, ALARM, [("water_level_m", 99.0)], StationAttributes(4, None)
    )
    assert found is not None and found.level == 4


def test_heavy_rain_from_100_mm_in_24_hours_is_level_1_article_44() -> None:
    t = table()

    def rain(mm: float, metric: str = "rain_mm:sum_86400s") -> int | None:
        found = t.assess("heavy_rain", 2, {1: 50, 2: 100}, [(metric, mm)])
        return found.level if found else None

    assert rain(99.9) is None
    assert rain(100) == 1
    assert rain(180) == 1
    # another quantity (a 72-hour total) is not what Article 44 reads
    assert rain(300, "rain_mm:sum_259200s") is None
    assert t.assess("heavy_rain", 2, {}, [("rain_mm:sum_86400s", 120)]).basis == (  # type: ignore[union-attr]
        "QĐ 18/2021/QĐ-TTg Điều 44 khoản 1"
    )


def test_hazards_outside_the_decisions_tables_have_no_level() -> None:
    t = table()
    for hazard in ("air_pollution", "dengue_outbreak", "ddos", "river_rise", "data_gap"):
        assert t.assess(hazard, 3, {1: 1.0}, [("x", 500.0)], StationAttributes(4, 1.0)) is None


def test_adjustment_is_capped_at_5() -> None:
    assert adjusted(3, 1) == 4
    assert adjusted(3, 2) == 5
    assert adjusted(4, 2) == 5


def test_a_broken_table_is_refused_with_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "risk.yaml"
    bad.write_text(
        "decision: x\nhazards:\n  river_flood:\n    article: 45\n    zones:\n"
        "      5:\n        - {from: I, level: 1, clause: k1}\n"
    )
    with pytest.raises(RiskDataError, match=r"risk.yaml: hazards.river_flood: .*zones 1 to 4"):
        RiskTable.load(bad)
    bad.write_text(
        "decision: x\nhazards:\n  river_flood:\n    article: 45\n    zones:\n"
        "      1:\n        - {from: IV, level: 1, clause: k1}\n"
    )
    with pytest.raises(RiskDataError, match="'IV' is not I, II, III"):
        RiskTable.load(bad)


def test_geography_station_risk_must_name_known_stations(tmp_path: Path) -> None:
    text = (REPO / "config" / "geography.yaml").read_text(encoding="utf-8")
    geo = tmp_path / "geography.yaml"
    geo.write_text(text + "  no-such-gauge: {flood_zone: 2}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="station_risk: no-such-gauge: unknown station"):
        Directory.load(geo, REPO / "config" / "directory.yaml")
    geo.write_text(text.replace("dap-cau: {flood_zone: 3", "dap-cau: {flood_zone: 5"), "utf-8")
    with pytest.raises(ConfigError, match=r"station_risk.dap-cau.flood_zone"):
        Directory.load(geo, REPO / "config" / "directory.yaml")


# --- on the warnings: pipeline.lifecycle -------------------------------------------------

WID = "water.flood.thuong-cat:thuong-cat"  # zone 4 (sample), alarm levels 9 / 10 / 11 m


@pytest.fixture
def engine(directory: Directory, ruleset: RuleSet) -> Engine:
    return Engine(RuleSet(tuple(r for r in ruleset.rules if r.id == "water.flood.thuong-cat")),
                  directory)  # fmt: skip


def _level(engine: Engine, store: dict[str, Any], value: float, minutes: float) -> list[Warning]:
    reading = Reading(
        station_id="thuong-cat",
        domain="water",
        metric="water_level_m",
        value=value,
        observed_at=T0 + timedelta(minutes=minutes),
    )
    return engine.on_reading(reading, store).warnings


def _raise(by: int, minutes: float, reason: str = "lũ và sạt lở đất cùng lúc") -> Command:
    return Command(
        command_id=f"r{by}-{minutes}",
        warning_id=WID,
        action="raise_risk",
        actor="Trực ban A",
        reason=reason,
        risk_by=by,
        at=T0 + timedelta(minutes=minutes),
    )


def test_each_warning_state_carries_its_risk_level_and_basis(engine: Engine) -> None:
    store: dict[str, Any] = {}
    (w,) = _level(engine, store, 9.5, 0)
    assert (w.level, w.risk_level) == (1, 2)
    assert w.risk_basis == "QĐ 18/2021/QĐ-TTg Điều 45 khoản 2 điểm a"
    (w,) = _level(engine, store, 10.2, 60)
    assert (w.transition, w.level, w.risk_level) == (Transition.ESCALATED, 2, 3)


def test_a_new_risk_level_at_the_same_alarm_level_is_an_update(engine: Engine) -> None:
    store: dict[str, Any] = {}
    _level(engine, store, 11.1, 0)
    assert _level(engine, store, 11.2, 10) == []  # same level, same risk level: nothing new
    (w,) = _level(engine, store, 11.35, 20)
    assert (w.transition, w.level, w.risk_level, w.version) == (Transition.UPDATED, 3, 4, 2)


def test_the_all_clear_has_no_risk_level(engine: Engine) -> None:
    store: dict[str, Any] = {}
    _level(engine, store, 9.5, 0)
    (w,) = _level(engine, store, 8.0, 60)
    assert w.transition is Transition.CLEARED
    assert (w.risk_level, w.risk_basis, w.risk_adjustment) == (None, None, None)


def test_raise_risk_is_recorded_with_who_and_why_and_carried_until_the_all_clear(
    engine: Engine,
) -> None:
    store: dict[str, Any] = {}
    _level(engine, store, 9.5, 0)  # risk level 2
    out = engine.on_command(_raise(1, 5), store)
    assert out.errors == []
    (w,) = out.warnings
    assert (w.risk_level, w.transition, w.version) == (3, Transition.UPDATED, 2)
    adj = w.risk_adjustment
    assert adj is not None
    assert (adj.by, adj.from_level, adj.actor, adj.reason) == (
        1, 2, "Trực ban A", "lũ và sạt lở đất cùng lúc"
    )  # fmt: skip
    assert w.risk_basis == "QĐ 18/2021/QĐ-TTg Điều 45 khoản 2 điểm a"  # the tables' own
    # The river rises to II: the Decision gives 3, the raise makes it 4.
    (w,) = _level(engine, store, 10.1, 60)
    assert (w.level, w.risk_level) == (2, 4)
    assert w.risk_adjustment is not None and w.risk_adjustment.from_level == 3
    # Above the peak: 5 raised by 1 is still 5, the highest.
    _level(engine, store, 11.0, 120)
    (w,) = _level(engine, store, 12.9, 180)
    assert w.risk_level == 5
    (w,) = _level(engine, store, 8.5, 240)
    assert w.transition is Transition.CLEARED and w.risk_adjustment is None
    # a new episode starts from the tables again
    (w,) = _level(engine, store, 9.5, 300)
    assert (w.transition, w.risk_level, w.risk_adjustment) == (Transition.RAISED, 2, None)


def test_raise_risk_by_two_and_withdrawing_it(engine: Engine) -> None:
    store: dict[str, Any] = {}
    _level(engine, store, 10.1, 0)  # risk level 3
    serious = _raise(2, 5, "nguy cơ thiệt hại nghiêm trọng về người")
    (w,) = engine.on_command(serious, store).warnings
    assert w.risk_level == 5
    (w,) = engine.on_command(_raise(0, 6, "lũ quét đã qua"), store).warnings
    assert (w.risk_level, w.risk_adjustment) == (3, None)


@pytest.mark.parametrize(
    ("setup", "command", "why"),
    [
        ([10.1], _raise(0, 5), "was not raised; nothing to withdraw"),
        ([12.9], _raise(1, 5), "at risk level 5, the highest"),
        ([10.1, 8.0], _raise(1, 70), "is not active"),
    ],
)
def test_raise_risk_refused_with_the_reason(
    engine: Engine, setup: list[float], command: Command, why: str
) -> None:
    store: dict[str, Any] = {}
    for i, value in enumerate(setup):
        if value > 12:
            _level(engine, store, 11.0, i * 60 - 30)  # reach III first (a spike otherwise)
        _level(engine, store, value, i * 60)
    out = engine.on_command(command, store)
    assert out.warnings == [] and len(out.errors) == 1 and why in out.errors[0]


def test_raise_risk_refused_twice_the_same_and_without_a_risk_level(
    directory: Directory, ruleset: RuleSet, engine: Engine
) -> None:
    store: dict[str, Any] = {}
    _level(engine, store, 10.1, 0)
    engine.on_command(_raise(1, 5), store)
    out = engine.on_command(_raise(1, 6), store)
    assert "already raised by 1" in out.errors[0]
    # 60 mm of rain in 24 hours is a heavy-rain warning, but below Article 44's 100 mm.
    rain = Engine(RuleSet(tuple(r for r in ruleset.rules if r.id == "water.rain.24h")), directory)
    reading = Reading(station_id="rg-son-dong", domain="water", metric="rain_mm",
                      value=60, observed_at=T0)  # fmt: skip
    (w,) = rain.on_reading(reading, store).warnings
    assert (w.level, w.risk_level) == (1, None)
    cmd = Command(command_id="x", warning_id=w.warning_id, action="raise_risk", actor="op",
                  reason="mưa và lũ", risk_by=1, at=T0)  # fmt: skip
    out = rain.on_command(cmd, store)
    assert "has no disaster risk level to raise" in out.errors[0]


def test_raise_risk_needs_a_reason_and_a_step() -> None:
    base = {"command_id": "c", "warning_id": WID, "action": "raise_risk", "actor": "op"}
    with pytest.raises(ValidationError, match="needs a reason"):
        Command(**base, risk_by=1)
    with pytest.raises(ValidationError, match="needs risk_by"):
        Command(**base, reason="hai thiên tai")
    with pytest.raises(ValidationError):
        Command(**base, reason="hai thiên tai", risk_by=3)
    with pytest.raises(ValidationError, match="only for raise_risk"):
        Command(command_id="c", warning_id=WID, action="verify", actor="op", risk_by=1)


# --- the contract: schema version 1 stays readable ------------------------------------------


def test_a_warning_without_a_risk_level_serialises_as_before() -> None:
    path = REPO / "examples" / "warnings" / "dap-cau-level3.json"
    w = Warning.model_validate_json(path.read_text(encoding="utf-8"))
    plain = w.model_copy(update={"risk_level": None, "risk_basis": None})
    assert "risk" not in plain.model_dump_json()
    assert w.schema_version == 1


def test_risk_fields_must_agree() -> None:
    path = REPO / "examples" / "warnings" / "dap-cau-level3.json"
    data = Warning.model_validate_json(path.read_text(encoding="utf-8")).model_dump(mode="json")
    data["risk_adjustment"] = {"by": 1, "from_level": 3, "actor": "a", "reason": "r",
                               "at": T0.isoformat()}  # fmt: skip
    data["risk_level"] = 3
    with pytest.raises(ValidationError, match="is not 3 raised by 1"):
        Warning.model_validate(data)
    data["risk_level"] = None
    with pytest.raises(ValidationError, match="need a risk_level"):
        Warning.model_validate(data)


# --- the palette of Appendix XII ------------------------------------------------------------


def test_the_palette_has_each_levels_colour_number_and_name() -> None:
    assert [palette.of(n).colour_en for n in palette.LEVELS] == [
        "light blue", "light yellow", "orange", "red", "purple",
    ]  # fmt: skip
    assert [palette.of(n).name_vi for n in palette.LEVELS] == [
        "rủi ro thấp", "rủi ro trung bình", "rủi ro lớn", "rủi ro rất lớn",
        "rủi ro ở mức thảm họa",
    ]  # fmt: skip
    badge = str(palette.badge_html(3, "vi"))
    assert palette.colour(3) in badge and "cấp 3 – rủi ro lớn" in badge
    assert "level 5 – catastrophic" in str(palette.badge_html(5, "en"))
    with pytest.raises(ValueError, match="does not exist"):
        palette.of(6)
