"""Which warnings a report corroborates (``corroborates`` of a report rule): a national
typhoon or earthquake warning is a hazard of its own, so it must raise its own warning
beside a flood warning, not become that flood warning's update at the flood's level."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from pipeline.engine import Engine
from tests.unit.conftest import FLOOD_RULE_YAML, T0
from topics.models import Action, Reading, Report, Transition

REPORTS_YAML = """\
  - id: water.report.flooding
    domain: water
    hazard: flood_report
    group_by: area
    condition: {kind: report, categories: [flooding]}
    levels: [{level: 1, name: reported, severity: Moderate}]
  - id: water.report.dike
    domain: water
    hazard: dike_report
    group_by: area
    condition: {kind: report, categories: [dike_breach], corroborates: [river_flood]}
    levels: [{level: 1, name: reported, severity: Moderate}]
  - id: water.report.rain
    domain: water
    hazard: rain_report
    group_by: area
    condition: {kind: report, categories: [downpour], corroborates: [heavy_rain]}
    levels: [{level: 1, name: reported, severity: Moderate}]
  - id: water.report.storm
    domain: water
    hazard: storm_report
    group_by: area
    condition: {kind: report, categories: [storm], corroborates: []}
    levels:
      - {level: 1, name: watch, severity: Moderate}
      - {level: 3, name: emergency, severity: Extreme}
"""


def _report(category: str, severity: str = "Extreme") -> Report:
    return Report(
        report_id=f"rp-{category}",
        domain="water",
        category=category,
        severity=severity,
        areas=["bn-vu-ninh"],
        observed_at=T0 + timedelta(minutes=10),
        reporter="cap@nchmf.gov.vn",
    )


@pytest.fixture
def flooding(make_engine: Callable[..., Engine]) -> tuple[Engine, dict[str, Any]]:
    """Đáp Cầu at level I: a flood warning in force in Vũ Ninh."""
    engine = make_engine(FLOOD_RULE_YAML + REPORTS_YAML)
    store: dict[str, Any] = {}
    reading = Reading(
        station_id="dap-cau", domain="water", metric="water_level_m", value=4.5, observed_at=T0
    )
    (flood,) = engine.on_reading(reading, store).warnings
    engine.on_warning(flood, "bn-vu-ninh", store, flood.updated_at)
    return engine, store


@pytest.mark.parametrize(
    ("category", "corroborates"),
    [
        ("flooding", True),  # unset: any hazard warning of the domain (as before)
        ("dike_breach", True),  # river_flood is listed
        ("downpour", False),  # only heavy_rain is listed: raises its own
        ("storm", False),  # []: always its own warning
    ],
)
def test_a_report_corroborates_only_the_hazards_its_rule_names(
    flooding: tuple[Engine, dict[str, Any]], category: str, corroborates: bool
) -> None:
    engine, store = flooding
    out = engine.on_report(_report(category), "bn-vu-ninh", store)
    if corroborates:
        assert out.warnings == []
        (cmd,) = out.commands
        assert (cmd.action, cmd.warning_id) == (Action.CORROBORATE, "water.flood.dap-cau:dap-cau")
    else:
        assert out.commands == []
        (own,) = out.warnings
        assert own.transition is Transition.RAISED
        assert own.warning_id.endswith(":bn-vu-ninh")


def test_an_extreme_typhoon_during_a_level_one_flood_is_an_extreme_warning(
    flooding: tuple[Engine, dict[str, Any]],
) -> None:
    engine, store = flooding
    (typhoon,) = engine.on_report(_report("storm"), "bn-vu-ninh", store).warnings
    assert (typhoon.rule_id, typhoon.level, typhoon.severity.value) == (
        "water.report.storm",
        3,
        "Extreme",
    )
