"""Each scenario, replayed through the pure engine (the backtest's code, which is the
live pipeline's), raises what it says it does; and its data is consistent with the
shipped geography and rules."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import UTC, datetime, timedelta, timezone

import pytest

from alerting.directory import Directory
from canhbao.demo_report import Tally, describe, summary_text
from feeds.scenarios import DEFAULT, SCENARIOS, Scenario, get
from feeds.scenarios.base import SOURCE
from pipeline.engine import Engine
from pipeline.quality import Check
from pipeline.replay import Replay
from pipeline.rules.loader import RuleSet
from topics.models import Reading, Report, ScopeTier, Transition, Warning

ICT = timezone(timedelta(hours=7))
START = datetime(2026, 9, 14, 6, 0, tzinfo=ICT)  # a Monday in the dengue season
NOTICES = {"sensor_fault", "data_gap"}
CORE = {"water", "environment", "health", "cyber"}


def replay(scenario: Scenario, rules: RuleSet, directory: Directory, start: datetime) -> Replay:
    """What the pipeline does with the scenario, in the order the messages are sent."""
    r = Replay(Engine(rules, directory))
    for m in scenario.events(start):
        if isinstance(m, Reading):
            r.reading(m)
        else:
            r.report(m)
    r.finish(start + scenario.duration)
    return r


@pytest.fixture(scope="module")
def runs(ruleset: RuleSet, directory: Directory) -> dict[str, Replay]:
    return {name: replay(s, ruleset, directory, START) for name, s in SCENARIOS.items()}


def states(run: Replay, rule: str, subject: str | None = None) -> list[Warning]:
    return [w for w in run.warnings if w.rule_id == rule and subject in (None, w.subject)]


def levels(ws: list[Warning]) -> list[tuple[str, int]]:
    return [(w.transition.value, w.level) for w in ws]


def hazards(ws: list[Warning]) -> list[Warning]:
    return [w for w in ws if w.hazard not in NOTICES]


def escalations(ws: list[Warning]) -> list[tuple[str, ScopeTier, ScopeTier]]:
    """(warning, from, to) each time an active warning's scope tier goes up."""
    rank = list(ScopeTier)
    last: dict[str, ScopeTier] = {}
    out = []
    for w in ws:
        before = last.get(w.warning_id)
        if before is not None and w.level and rank.index(w.scope_tier) > rank.index(before):
            out.append((w.warning_id, before, w.scope_tier))
        last[w.warning_id] = w.scope_tier
    return out


# --- the registry and the data ------------------------------------------------------


def test_the_registry_names_six_scenarios_with_two_one_line_descriptions() -> None:
    assert set(SCENARIOS) == {"multi", "flood", "air", "dengue", "cyber", "faulty"}
    assert DEFAULT == "multi"
    for s in SCENARIOS.values():
        assert s.summary_vi and s.summary_en and "\n" not in s.summary_vi + s.summary_en
        assert s.duration > timedelta(0)
    with pytest.raises(KeyError, match="choose from"):
        get("tsunami")


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_messages_fit_the_geography_and_the_rules(
    name: str, ruleset: RuleSet, directory: Directory
) -> None:
    scenario = SCENARIOS[name]
    timeline = scenario.timeline(START)
    assert 50 <= len(timeline) <= 3000
    assert [t.at for t in timeline] == sorted(t.at for t in timeline)
    watched = {(r.selector.metric, r.domain) for r in ruleset.rules if r.selector.metric}
    for t in timeline:
        m = t.message
        assert START <= m.observed_at <= t.at <= START + scenario.duration
        if isinstance(m, Reading):
            assert (m.metric, m.domain) in watched, m
            assert m.metric in ruleset.quality.metrics, m.metric
            if m.station_id.startswith("tyt-"):  # a commune health station reports its area
                assert m.area == m.station_id[4:] and directory.commune(m.area) is not None
            else:
                assert directory.station(m.station_id) is not None, m.station_id
            assert m.source == SOURCE or m.metric in ("failed_login", "ids_alert_high")
        else:
            assert isinstance(m, Report)
            assert all(directory.commune(a) is not None for a in m.areas)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_same_start_gives_the_same_messages(name: str) -> None:
    a = [m.to_bytes() for m in SCENARIOS[name].events(START)]
    b = [m.to_bytes() for m in SCENARIOS[name].events(START.astimezone(UTC))]
    assert a == b


@pytest.mark.parametrize("name", ["multi", "flood"])
def test_gauges_report_as_real_ones_do(name: str) -> None:
    times: dict[str, list[datetime]] = defaultdict(list)
    for m in SCENARIOS[name].events(START):
        if isinstance(m, Reading) and m.metric == "water_level_m":
            times[m.station_id].append(m.observed_at)
    assert len(times) == 6
    for ts in times.values():
        gaps = {b - a for a, b in itertools.pairwise(ts)}
        assert gaps and all(timedelta(minutes=15) <= g <= timedelta(hours=1) for g in gaps)


@pytest.mark.parametrize("name", ["multi", "flood", "air", "dengue", "cyber"])
def test_realistic_data_passes_the_quality_gate(name: str, runs: dict[str, Replay]) -> None:
    run = runs[name]
    assert run.rejected == {} and run.errors == []
    assert not [w for w in run.warnings if w.hazard in NOTICES]


# --- what each scenario raises ---------------------------------------------------------


def test_flood_reaches_level_three_at_dap_cau_and_clears(runs: dict[str, Replay]) -> None:
    run = runs["flood"]
    dap_cau = states(run, "water.flood.dap-cau")
    steps = [(t, lv) for t, lv in levels(dap_cau) if t != "updated"]
    assert steps == [
        ("raised", 1), ("escalated", 2), ("escalated", 3),
        ("deescalated", 2), ("deescalated", 1), ("cleared", 0),
    ]  # fmt: skip
    peak = max(e.value for w in dap_cau for e in w.evidence)
    assert peak > 6.30
    assert dap_cau[0].scope_tier is ScopeTier.PROVINCE and dap_cau[0].lead_agency.code == "snnmt"
    # The other rivers of the basin rise too, the Red River stations stay below level I.
    raised = {w.rule_id for w in run.warnings if w.transition is Transition.RAISED}
    assert {"water.flood.phu-lang-thuong", "water.flood.luc-nam", "water.flood.pha-lai"} <= raised
    assert not raised & {"water.flood.ha-noi", "water.flood.thuong-cat"}
    assert "water.rain.24h" in raised and "water.rise.rivers" in raised
    # Every river warning is over at the end.
    last = {w.warning_id: w for w in run.warnings}
    assert all(w.level == 0 for w in last.values() if w.rule_id.startswith("water.flood."))
    # The People's Committee's report corroborates the flood warning (no warning of its own).
    assert any(w.transition is Transition.UPDATED for w in dap_cau)
    assert "water.report.flooding" not in raised


def test_air_raises_environment_warnings_up_to_very_bad_and_clears(
    runs: dict[str, Replay],
) -> None:
    run = runs["air"]
    assert run.warnings and {w.domain.value for w in run.warnings} == {"environment"}
    aqi = states(run, "env.aqi.yen-phong")
    assert [lv for t, lv in levels(aqi) if t in ("raised", "escalated")] == [1, 2, 3]
    assert aqi[-1].transition is Transition.CLEARED
    assert max(lv for _, lv in levels(states(run, "env.pm25.24h"))) == 2
    assert {w.lead_agency.code for w in run.warnings} == {"snnmt"}


@pytest.mark.parametrize(
    "start",
    [
        START,
        datetime(2026, 3, 2, 8, 0, tzinfo=ICT),  # low season: small counts, SD below 1
        datetime(2026, 11, 22, 21, 42, tzinfo=ICT),  # a Sunday night, weeks start mid-way
        datetime(2027, 7, 5, 0, 0, tzinfo=UTC),
        # ISO week 53 has no baseline: its counts are dated in week 52, sent late
        datetime(2026, 12, 24, 10, 0, tzinfo=ICT),
    ],
)
def test_dengue_scope_rises_from_commune_to_province_then_clears(
    start: datetime, ruleset: RuleSet, directory: Directory
) -> None:
    run = replay(SCENARIOS["dengue"], ruleset, directory, start)
    dengue = states(run, "health.dengue.endemic", "bac-ninh")
    first = dengue[0]
    assert (first.transition, first.level, first.scope_tier) == (
        Transition.RAISED, 1, ScopeTier.COMMUNE,
    )  # fmt: skip
    assert [a.code for a in first.areas] == ["bn-vu-ninh"]
    assert escalations(dengue)[0][1:] == (ScopeTier.COMMUNE, ScopeTier.PROVINCE)
    assert max(w.level for w in dengue) == 2
    assert max(len(w.areas) for w in dengue) == 4
    assert dengue[-1].transition is Transition.CLEARED
    assert {w.lead_agency.code for w in run.warnings} == {"syt"}


def test_cyber_raises_brute_force_intrusion_and_ddos_warnings(runs: dict[str, Replay]) -> None:
    run = runs["cyber"]
    assert {w.domain.value for w in run.warnings} == {"cyber"}
    assert {w.lead_agency.code for w in run.warnings} == {"ca-tinh"}
    for rule, subject in (
        ("cyber.bruteforce.failed-login", "203.0.113.7"),
        ("cyber.ids.high-severity", "soc-bac-ninh"),
        ("cyber.ddos.http-rate", "portal-bac-ninh"),
    ):
        ws = states(run, rule, subject)
        assert max(w.level for w in ws) == 2, rule
        assert ws[-1].transition is Transition.CLEARED, rule
    # Users who mistype a password now and then are not an attack.
    assert {w.subject for w in states(run, "cyber.bruteforce.failed-login")} == {"203.0.113.7"}
    # The police's report corroborates the IDS warning instead of raising its own.
    assert any(w.transition is Transition.UPDATED for w in states(run, "cyber.ids.high-severity"))
    assert not states(run, "cyber.report.incident")


def test_multi_covers_every_core_domain_and_escalates_a_scope(runs: dict[str, Replay]) -> None:
    run = runs["multi"]
    domains = {w.domain.value for w in hazards(run.warnings) if w.level}
    assert CORE | {"energy", "geology"} <= domains
    assert ("health.dengue.endemic:bac-ninh", ScopeTier.COMMUNE, ScopeTier.PROVINCE) in (
        escalations(run.warnings)
    )
    assert max(w.level for w in states(run, "water.flood.dap-cau")) == 3
    # Flood at level II and dengue in the same wards: the Dept. of Health's compound warning.
    compound = states(run, "health.multi.flood-dengue")
    assert {w.subject for w in compound} == {"bn-vu-ninh", "bn-kinh-bac"}
    assert {w.lead_agency.code for w in compound} == {"syt"}
    assert states(run, "geology.landslide.risk")[0].level == 1


def test_multi_covers_every_core_domain_in_iso_week_53_too(
    ruleset: RuleSet, directory: Directory
) -> None:
    run = replay(SCENARIOS["multi"], ruleset, directory, datetime(2026, 12, 29, 9, 0, tzinfo=ICT))
    assert {w.domain.value for w in hazards(run.warnings) if w.level} >= CORE
    assert escalations(run.warnings)


def test_faulty_sensors_raise_notices_and_no_hazard_warning(runs: dict[str, Replay]) -> None:
    run = runs["faulty"]
    assert hazards(run.warnings) == []
    raised = {(w.rule_id, w.subject) for w in run.warnings if w.transition is Transition.RAISED}
    assert raised == {
        ("quality.stuck", "pha-lai"),
        ("quality.spike", "luc-nam"),
        ("water.gap.rivers", "phu-lang-thuong"),
        ("quality.out_of_range", "bn-aqi-yen-phong"),
        ("quality.out_of_range", "grid-bac-ninh"),
    }
    last = {w.warning_id: w for w in run.warnings}
    assert all(w.level == 0 for w in last.values())  # every sensor is fine again
    # Re-sent and back-dated readings are set aside quietly.
    assert run.rejected.get(Check.DUPLICATE) == 1 and run.rejected.get(Check.OUT_OF_ORDER) == 1
    # The notices go to the station's owner.
    assert {w.lead_agency.code for w in run.warnings} == {"snnmt", "sct"}


def test_the_checks_can_fail(runs: dict[str, Replay]) -> None:
    """The predicates above tell scenarios apart: the flood is not 'faulty', the faulty
    day escalates no scope, and the air episode covers one domain, not four."""
    assert hazards(runs["flood"].warnings)
    assert escalations(runs["faulty"].warnings) == []
    assert not {w.domain.value for w in runs["air"].warnings} >= CORE
    assert escalations(runs["flood"].warnings) == []


def test_the_demo_summary_of_the_default_scenario_shows_four_domains(
    runs: dict[str, Replay],
) -> None:
    """What ``canhbao demo --json`` counts, from the same warning states."""
    tally = Tally()
    for w in runs[DEFAULT].warnings:
        describe(w, tally, START)
    s = tally.summary("none", 0.0)
    assert s["warnings"]["total"] == len(runs[DEFAULT].warnings)
    assert set(s["warnings"]["by_domain"]) >= CORE
    assert sum(s["warnings"]["by_level"].values()) == s["warnings"]["total"]
    assert (
        "health.dengue.endemic:bac-ninh: commune → province" in s["warnings"]["scope_escalations"]
    )
    assert {"ok", "failed"} <= set(s["deliveries"])
    text = summary_text(s)
    assert "scope escalation: health.dengue.endemic:bac-ninh" in text and "cyber" in text
