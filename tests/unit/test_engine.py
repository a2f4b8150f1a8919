"""The rule engine (pipeline.engine.Engine) as the pipeline drives it: readings,
clock ticks, warnings of other rules, reports and rule reloads."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from pipeline.engine import Engine, areas_of
from pipeline.quality import Check
from pipeline.rules.loader import RuleSet
from tests.unit.conftest import FLOOD_RULE_YAML, T0
from topics.models import (
    Action,
    LifecycleStatus,
    Reading,
    Report,
    ScopeTier,
    Severity,
    Transition,
    Warning,
)

FLOOD = "water.flood.dap-cau"
FLOOD_WID = f"{FLOOD}:dap-cau"

QUALITY_YAML = """\
quality:
  metrics:
    water_level_m: {max: 30}
    grid_frequency_hz: {min: 45, max: 55}
rules:
"""

GAP_YAML = """\
  - id: water.gap
    domain: water
    hazard: data_gap
    selector: {metric: water_level_m}
    condition: {kind: staleness, silent_for: 30m}
    levels: [{level: 1, name: gap, severity: Minor}]
"""

SOIL_YAML = """\
  - id: geology.soil.dap-cau
    domain: geology
    hazard: soil_saturation
    selector: {station: dap-cau, metric: soil_moisture_pct}
    condition: {kind: threshold}
    levels: [{level: 1, name: wet, value: 80, severity: Moderate}]
    notify: false
"""

LANDSLIDE_YAML = """\
  - id: geology.landslide
    domain: geology
    hazard: landslide
    group_by: area
    condition:
      kind: compound
      all_of:
        - {rule: water.flood.dap-cau}
        - {rule: geology.soil.dap-cau, min_level: 1}
    levels: [{level: 1, name: risk, severity: Severe}]
"""

REPORT_YAML = """\
  - id: water.report.flooding
    domain: water
    hazard: reported_flooding
    group_by: area
    condition: {kind: report, categories: [flooding], min_severity: Moderate}
    levels:
      - {level: 1, name: reported, severity: Moderate}
      - {level: 2, name: serious, severity: Severe}
      - {level: 3, name: extreme, severity: Extreme}
"""

RAIN_AREA_YAML = """\
  - id: water.rain.commune
    domain: water
    hazard: heavy_rain
    selector: {metric: rain_mm}
    group_by: area
    condition: {kind: threshold}
    levels: [{level: 1, name: heavy, value: 50, severity: Moderate}]
"""

DENGUE_YAML = """\
  - id: health.dengue
    domain: health
    hazard: dengue
    selector: {metric: dengue_cases}
    group_by: province
    condition: {kind: endemic_channel, baseline: dengue-baseline.csv}
    levels:
      - {level: 1, name: alert, value: 2, severity: Moderate}
      - {level: 2, name: epidemic, value: 4, severity: Severe}
"""

DENGUE_BASELINE = """\
area,year,week,count
bn-vu-ninh,2022,41,10
bn-vu-ninh,2023,41,14
bn-vu-ninh,2024,41,12
bn-kinh-bac,2022,41,10
bn-kinh-bac,2023,41,14
bn-kinh-bac,2024,41,12
"""


def _level(value: float, minutes: float = 0, **kw: Any) -> Reading:
    fields: dict[str, Any] = {
        "station_id": "dap-cau",
        "domain": "water",
        "metric": "water_level_m",
        "value": value,
        "observed_at": T0 + timedelta(minutes=minutes),
    }
    fields.update(kw)
    return Reading(**fields)


def _soil(value: float, minutes: float) -> Reading:
    return _level(value, minutes, domain="geology", metric="soil_moisture_pct")


def _report(severity: str, area: str, minutes: float = 0, **kw: Any) -> Report:
    fields: dict[str, Any] = {
        "report_id": "rp-1",
        "domain": "water",
        "category": "flooding",
        "severity": severity,
        "areas": [area],
        "observed_at": T0 + timedelta(minutes=minutes),
        "reporter": "citizen-app",
        "text": "Nước ngập đến đầu gối",
    }
    fields.update(kw)
    return Report(**fields)


def _at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _stored(store: dict[str, Any], wid: str) -> Warning | None:
    raw = store.get(f"w|{wid}")
    return None if raw is None else Warning.model_validate(raw)


MakeEngine = Callable[..., Engine]


# --- the quality gate in front of the rules ---


def test_faulty_reading_raises_a_sensor_fault_notice_and_no_flood_warning(
    make_engine: MakeEngine,
) -> None:
    engine = make_engine(QUALITY_YAML + FLOOD_RULE_YAML)
    store: dict[str, Any] = {}
    assert engine.on_reading(_level(4.0, 0), store).warnings == []

    out = engine.on_reading(_level(99.0, 10), store)
    assert [c for c, _ in out.rejected] == [Check.OUT_OF_RANGE]
    (notice,) = out.warnings
    assert notice.warning_id == "quality.out_of_range:dap-cau"
    assert notice.transition is Transition.RAISED
    assert notice.hazard == "sensor_fault"
    assert notice.severity is Severity.MINOR
    assert notice.lead_agency.code == "snnmt"  # the station's owner
    assert [a.code for a in notice.areas] == ["bn-vu-ninh"]  # the station's own commune
    assert notice.labels["check"] == "out_of_range"
    assert notice.labels["metric"] == "water_level_m"
    assert notice.evidence[0].value == 99.0
    assert "99" in notice.annotations["note"]
    assert _stored(store, FLOOD_WID) is None  # 99 m never reached the flood rule

    out = engine.on_reading(_level(4.1, 20), store)
    (cleared,) = out.warnings
    assert cleared.warning_id == "quality.out_of_range:dap-cau"
    assert cleared.transition is Transition.CLEARED
    assert cleared.level == 0
    assert _stored(store, FLOOD_WID) is None


def test_good_reading_after_a_fault_is_evaluated_by_the_rules(make_engine: MakeEngine) -> None:
    engine = make_engine(QUALITY_YAML + FLOOD_RULE_YAML)
    store: dict[str, Any] = {}
    engine.on_reading(_level(99.0, 0), store)
    out = engine.on_reading(_level(4.5, 10), store)
    by_id = {w.warning_id: w for w in out.warnings}
    assert by_id["quality.out_of_range:dap-cau"].transition is Transition.CLEARED
    assert by_id[FLOOD_WID].transition is Transition.RAISED


def test_sensor_fault_notice_is_led_by_the_station_owner_not_the_domain_lead(
    make_engine: MakeEngine,
) -> None:
    engine = make_engine(QUALITY_YAML + FLOOD_RULE_YAML)
    reading = _level(70.0, 0, domain="energy", metric="grid_frequency_hz")
    (notice,) = engine.on_reading(reading, {}).warnings
    assert notice.domain.value == "energy"
    assert notice.lead_agency.code == "snnmt"  # owner of dap-cau; energy is led by sct


def test_repeated_faults_do_not_repeat_the_notice(make_engine: MakeEngine) -> None:
    engine = make_engine(QUALITY_YAML + FLOOD_RULE_YAML)
    store: dict[str, Any] = {}
    assert len(engine.on_reading(_level(99.0, 0), store).warnings) == 1
    out = engine.on_reading(_level(98.0, 10), store)
    assert out.warnings == []
    assert [c for c, _ in out.rejected] == [Check.OUT_OF_RANGE]


def test_duplicates_are_counted_without_a_notice(make_engine: MakeEngine) -> None:
    engine = make_engine(QUALITY_YAML + FLOOD_RULE_YAML)
    store: dict[str, Any] = {}
    engine.on_reading(_level(4.5, 0), store)
    out = engine.on_reading(_level(4.5, 0), store)
    assert [c for c, _ in out.rejected] == [Check.DUPLICATE]
    assert out.warnings == []


# --- staleness ---


def test_silent_station_raises_a_data_gap_on_tick_and_clears_on_the_next_reading(
    make_engine: MakeEngine,
) -> None:
    engine = make_engine(FLOOD_RULE_YAML + GAP_YAML)
    store: dict[str, Any] = {}
    engine.on_reading(_level(4.0, 0), store)
    assert engine.on_tick(_at(29), store).warnings == []
    assert engine.on_tick(_at(30), store).warnings == []  # exactly silent_for: not yet

    (gap,) = engine.on_tick(_at(31), store).warnings
    assert gap.warning_id == "water.gap:dap-cau"
    assert gap.transition is Transition.RAISED
    assert gap.updated_at == _at(31)
    assert gap.lead_agency.code == "snnmt"
    assert [a.code for a in gap.areas] == ["bn-vu-ninh"]
    assert gap.evidence[0].value == pytest.approx(31.0)  # minutes of silence

    assert engine.on_tick(_at(45), store).warnings == []  # raised once

    out = engine.on_reading(_level(4.0, 50), store)
    (cleared,) = [w for w in out.warnings if w.rule_id == "water.gap"]
    assert cleared.transition is Transition.CLEARED
    assert cleared.updated_at == _at(50)


def test_staleness_only_for_stations_the_rule_selects(make_engine: MakeEngine) -> None:
    engine = make_engine(FLOOD_RULE_YAML + GAP_YAML)
    store: dict[str, Any] = {}
    engine.on_reading(_level(10.0, 0, metric="rain_mm"), store)
    assert engine.on_tick(_at(120), store).warnings == []


# --- rules grouped by province: the endemic channel ---


def test_province_rule_grows_its_areas_and_scope(make_engine: MakeEngine) -> None:
    engine = make_engine(DENGUE_YAML, files={"dengue-baseline.csv": DENGUE_BASELINE})
    store: dict[str, Any] = {}

    def cases(value: float, area: str, minutes: float) -> Reading:
        return Reading(
            station_id=f"tyt-{area}",
            domain="health",
            metric="dengue_cases",
            value=value,
            observed_at=_at(minutes),
            area=area,
        )

    (first,) = engine.on_reading(cases(17, "bn-vu-ninh", 0), store).warnings  # z = 2.5
    assert first.warning_id == "health.dengue:bac-ninh"
    assert first.transition is Transition.RAISED
    assert first.level == 1
    assert [a.code for a in first.areas] == ["bn-vu-ninh"]
    assert first.scope_tier is ScopeTier.COMMUNE
    assert first.lead_agency.code == "syt"

    (second,) = engine.on_reading(cases(16.5, "bn-kinh-bac", 60), store).warnings  # z = 2.25
    assert second.warning_id == first.warning_id
    assert second.transition is Transition.UPDATED
    assert second.level == 1
    assert sorted(a.code for a in second.areas) == ["bn-kinh-bac", "bn-vu-ninh"]
    assert second.scope_tier is ScopeTier.PROVINCE

    # A commune below the channel does not join the warning.
    assert engine.on_reading(cases(12, "bn-hap-linh", 120), store).warnings == []


# --- compound rules ---


def test_compound_raised_when_both_components_are_active_and_cleared_when_one_clears(
    make_engine: MakeEngine,
) -> None:
    engine = make_engine(FLOOD_RULE_YAML + SOIL_YAML + LANDSLIDE_YAML)
    store: dict[str, Any] = {}

    (flood,) = engine.on_reading(_level(4.5, 0), store).warnings
    assert engine.on_warning(flood, "bn-vu-ninh", store, flood.updated_at).warnings == []

    (soil,) = engine.on_reading(_soil(85, 10), store).warnings
    (compound,) = engine.on_warning(soil, "bn-vu-ninh", store, soil.updated_at).warnings
    assert compound.warning_id == "geology.landslide:bn-vu-ninh"
    assert compound.transition is Transition.RAISED
    assert compound.severity is Severity.SEVERE
    assert [a.code for a in compound.areas] == ["bn-vu-ninh"]
    assert {e.note for e in compound.evidence} == {
        f"component {FLOOD_WID}",
        "component geology.soil.dap-cau:dap-cau",
    }

    # The other commune the station warns for has only the flood so far.
    assert engine.on_warning(flood, "bn-kinh-bac", store, flood.updated_at).warnings == []

    (flood_clear,) = engine.on_reading(_level(4.0, 20), store).warnings
    (compound_clear,) = engine.on_warning(
        flood_clear, "bn-vu-ninh", store, flood_clear.updated_at
    ).warnings
    assert compound_clear.warning_id == compound.warning_id
    assert compound_clear.transition is Transition.CLEARED


def test_compound_warning_does_not_feed_itself(make_engine: MakeEngine) -> None:
    engine = make_engine(FLOOD_RULE_YAML + SOIL_YAML + LANDSLIDE_YAML)
    store: dict[str, Any] = {}
    (flood,) = engine.on_reading(_level(4.5, 0), store).warnings
    engine.on_warning(flood, "bn-vu-ninh", store, flood.updated_at)
    (soil,) = engine.on_reading(_soil(85, 10), store).warnings
    (compound,) = engine.on_warning(soil, "bn-vu-ninh", store, soil.updated_at).warnings
    assert engine.on_warning(compound, "bn-vu-ninh", store, compound.updated_at).warnings == []
    assert compound.warning_id not in store["x|bn-vu-ninh"]


def test_notify_false_rules_carry_the_label(make_engine: MakeEngine) -> None:
    engine = make_engine(FLOOD_RULE_YAML + SOIL_YAML)
    store: dict[str, Any] = {}
    (soil,) = engine.on_reading(_soil(85, 0), store).warnings
    (flood,) = engine.on_reading(_level(4.5, 5), store).warnings
    assert soil.labels["notify"] == "false"
    assert flood.labels["notify"] == "true"


# --- reports ---


def test_report_corroborates_an_active_warning_of_its_domain(make_engine: MakeEngine) -> None:
    engine = make_engine(FLOOD_RULE_YAML + REPORT_YAML)
    store: dict[str, Any] = {}
    (flood,) = engine.on_reading(_level(4.5, 0), store).warnings
    engine.on_warning(flood, "bn-vu-ninh", store, flood.updated_at)

    out = engine.on_report(_report("Severe", "bn-vu-ninh", 10), "bn-vu-ninh", store)
    assert out.warnings == []
    (cmd,) = out.commands
    assert cmd.action is Action.CORROBORATE
    assert cmd.warning_id == FLOOD_WID
    assert cmd.actor == "citizen-app"
    assert cmd.evidence[0].metric == "report:flooding"
    assert _stored(store, "water.report.flooding:bn-vu-ninh") is None

    (corroborated,) = engine.on_command(cmd, store).warnings
    assert corroborated.labels["corroborated"] == "true"
    assert corroborated.evidence[-1].metric == "report:flooding"
    assert corroborated.level == 1


@pytest.mark.parametrize(("severity", "level"), [("Moderate", 1), ("Severe", 2), ("Extreme", 3)])
def test_report_without_a_warning_raises_its_own_at_the_matching_level(
    make_engine: MakeEngine, severity: str, level: int
) -> None:
    engine = make_engine(FLOOD_RULE_YAML + REPORT_YAML)
    out = engine.on_report(_report(severity, "bn-hap-linh"), "bn-hap-linh", {})
    assert out.commands == []
    (w,) = out.warnings
    assert w.warning_id == "water.report.flooding:bn-hap-linh"
    assert w.transition is Transition.RAISED
    assert w.level == level
    assert w.severity.value == severity
    assert [a.code for a in w.areas] == ["bn-hap-linh"]


def test_report_during_a_data_gap_still_raises_a_report_warning(
    make_engine: MakeEngine,
) -> None:
    engine = make_engine(FLOOD_RULE_YAML + GAP_YAML + REPORT_YAML)
    store: dict[str, Any] = {}
    engine.on_reading(_level(4.0, 0), store)
    (gap,) = engine.on_tick(_at(60), store).warnings  # the gauge went silent
    engine.on_warning(gap, "bn-vu-ninh", store, gap.updated_at)
    out = engine.on_report(_report("Severe", "bn-vu-ninh", 90), "bn-vu-ninh", store)
    assert [c.warning_id for c in out.commands] == []
    (w,) = out.warnings
    assert w.warning_id == "water.report.flooding:bn-vu-ninh"
    assert w.level == 2


def test_reports_below_min_severity_or_of_other_categories_are_ignored(
    make_engine: MakeEngine,
) -> None:
    engine = make_engine(FLOOD_RULE_YAML + REPORT_YAML)
    store: dict[str, Any] = {}
    assert engine.on_report(_report("Minor", "bn-hap-linh"), "bn-hap-linh", store).warnings == []
    other = _report("Extreme", "bn-hap-linh", category="landslide")
    assert engine.on_report(other, "bn-hap-linh", store).warnings == []
    health = _report("Extreme", "bn-hap-linh", domain="health")
    assert engine.on_report(health, "bn-hap-linh", store).warnings == []


def test_a_milder_report_does_not_lower_the_report_warning(make_engine: MakeEngine) -> None:
    engine = make_engine(FLOOD_RULE_YAML + REPORT_YAML)
    store: dict[str, Any] = {}
    engine.on_report(_report("Extreme", "bn-hap-linh", 0), "bn-hap-linh", store)
    (w,) = engine.on_report(
        _report("Moderate", "bn-hap-linh", 30, report_id="rp-2"), "bn-hap-linh", store
    ).warnings
    assert w.level == 3
    assert w.transition == "updated"
    assert w.version == 2
    assert w.updated_at == _at(30)
    assert [e.metric for e in w.evidence] == ["report:flooding", "report:flooding"]


def test_a_repeated_report_yields_a_proper_transition(make_engine: MakeEngine) -> None:
    engine = make_engine(FLOOD_RULE_YAML + REPORT_YAML)
    store: dict[str, Any] = {}
    engine.on_report(_report("Severe", "bn-hap-linh", 0), "bn-hap-linh", store)
    (w,) = engine.on_report(
        _report("Severe", "bn-hap-linh", 30, report_id="rp-2"), "bn-hap-linh", store
    ).warnings
    assert w.transition is Transition.UPDATED
    assert w.transition.value == "updated"  # what the evaluate agent and backtests call


def test_report_warning_expires_on_tick(make_engine: MakeEngine) -> None:
    engine = make_engine(FLOOD_RULE_YAML + REPORT_YAML)
    store: dict[str, Any] = {}
    engine.on_report(_report("Severe", "bn-hap-linh", 0), "bn-hap-linh", store)
    assert engine.on_tick(_at(24 * 60 - 1), store).warnings == []
    (w,) = engine.on_tick(_at(24 * 60 + 1), store).warnings
    assert w.transition is Transition.CLEARED
    assert w.annotations["note"] == "no new report; expired"


# --- hot reload ---


def test_removed_rule_is_cleared_on_the_next_tick(
    make_engine: MakeEngine, compile_yaml: Callable[..., RuleSet]
) -> None:
    engine = make_engine(QUALITY_YAML + FLOOD_RULE_YAML + RAIN_AREA_YAML)
    store: dict[str, Any] = {}
    engine.on_reading(_level(4.5, 0), store)
    engine.on_reading(_level(99.0, 5), store)  # a sensor-fault notice, not a rule's warning
    engine.rules = compile_yaml(RAIN_AREA_YAML)

    out = engine.on_tick(_at(60), store)
    (cleared,) = out.warnings
    assert cleared.warning_id == FLOOD_WID
    assert cleared.transition is Transition.CLEARED
    assert cleared.annotations["note"] == "rule removed from the active rule set"
    assert cleared.updated_at == _at(60)
    assert cleared.severity is Severity.MODERATE  # the all-clear repeats the last level
    assert [a.code for a in cleared.areas] == ["bn-vu-ninh", "bn-kinh-bac"]
    assert engine.on_tick(_at(120), store).warnings == []


# --- identity and versions ---


def test_versions_strictly_increase_across_episodes(make_engine: MakeEngine) -> None:
    engine = make_engine(FLOOD_RULE_YAML)
    store: dict[str, Any] = {}
    got: list[Warning] = []
    for i, v in enumerate([4.5, 5.5, 4.0, 3.9, 4.6, 4.0]):
        got += engine.on_reading(_level(v, 10 * i), store).warnings
    assert [w.transition for w in got] == [
        Transition.RAISED,
        Transition.ESCALATED,
        Transition.CLEARED,
        Transition.RAISED,
        Transition.CLEARED,
    ]
    assert {w.warning_id for w in got} == {FLOOD_WID}
    versions = [w.version for w in got]
    assert versions == sorted(set(versions))
    assert versions == [1, 2, 3, 4, 5]
    second = got[3]
    assert second.raised_at == _at(40)  # a new episode has its own raise time
    assert second.status is LifecycleStatus.NEW


def test_older_reading_does_not_undo_a_newer_decision(make_engine: MakeEngine) -> None:
    """Two rain gauges in one commune: a late, older low reading from the second
    gauge must not clear the warning the first one raised."""
    engine = make_engine(RAIN_AREA_YAML)
    store: dict[str, Any] = {}
    (raised,) = engine.on_reading(
        _level(60.0, 10, metric="rain_mm", station_id="gauge-a", area="bn-kinh-bac"), store
    ).warnings
    assert raised.transition is Transition.RAISED
    late = _level(5.0, 5, metric="rain_mm", station_id="gauge-b", area="bn-kinh-bac")
    assert engine.on_reading(late, store).warnings == []
    stored = _stored(store, "water.rain.commune:bn-kinh-bac")
    assert stored is not None and stored.level == 1


def test_same_station_older_reading_is_out_of_order(make_engine: MakeEngine) -> None:
    engine = make_engine(FLOOD_RULE_YAML)
    store: dict[str, Any] = {}
    engine.on_reading(_level(4.5, 10), store)
    out = engine.on_reading(_level(3.0, 5), store)
    assert out.warnings == []
    assert [c for c, _ in out.rejected] == [Check.OUT_OF_ORDER]


# --- pipeline modes ---


def test_station_mode_forwards_grouped_rules_instead_of_evaluating_them(
    make_engine: MakeEngine,
) -> None:
    engine = make_engine(FLOOD_RULE_YAML + RAIN_AREA_YAML)
    store: dict[str, Any] = {}
    rain = _level(60.0, 0, metric="rain_mm")  # no area: the station's commune
    out = engine.on_reading(rain, store, mode="station")
    assert out.warnings == []
    assert out.forwards == [("bn-vu-ninh", rain)]

    flood = engine.on_reading(_level(4.5, 0), store, mode="station")
    assert [w.warning_id for w in flood.warnings] == [FLOOD_WID]  # station rules run here
    assert flood.forwards == []


def test_grouped_mode_evaluates_the_rules_of_its_key_only(make_engine: MakeEngine) -> None:
    engine = make_engine(FLOOD_RULE_YAML + RAIN_AREA_YAML)
    rain = _level(60.0, 0, metric="rain_mm", area="bn-kinh-bac")
    assert engine.on_reading(rain, {}, mode="grouped", key="bn-vu-ninh").warnings == []
    (w,) = engine.on_reading(rain, {}, mode="grouped", key="bn-kinh-bac").warnings
    assert w.warning_id == "water.rain.commune:bn-kinh-bac"
    assert areas_of(w) == ["bn-kinh-bac"]
    # Station rules are not evaluated again on the grouped side.
    flood = _level(4.5, 0)
    assert engine.on_reading(flood, {}, mode="grouped", key="dap-cau").warnings == []


def test_grouped_mode_skips_the_quality_gate(make_engine: MakeEngine) -> None:
    engine = make_engine(FLOOD_RULE_YAML + RAIN_AREA_YAML)
    store: dict[str, Any] = {}
    rain = _level(60.0, 0, metric="rain_mm", area="bn-kinh-bac")
    engine.on_reading(rain, store, mode="station")  # the gate has seen it once
    out = engine.on_reading(rain, store, mode="grouped", key="bn-kinh-bac")
    assert out.rejected == []
    assert len(out.warnings) == 1
