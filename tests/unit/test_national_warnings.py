"""A national typhoon or earthquake warning reaches the people who act on it (issue 15,
item 5): the CAP alert becomes a report (feeds/cap_ingest.py), the shipped report rules
raise a warning at the level of its CAP severity in each commune it names, and the
shipped routes send it to the lead agency of natural disasters, the communes' People's
Committees and the coordinating forces, in words they read (never "storm")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from alerting.audiences import Audiences
from alerting.directory import Directory
from alerting.messages import renderer
from alerting.notify import Plan, plan
from alerting.render import render
from alerting.routes import RoutingConfig, load_routing
from feeds.cap_alerts import Areas, ReportRules, load_config
from feeds.cap_ingest import CapIngest, Outcome
from feeds.sink import MemorySink
from pipeline.engine import Engine
from pipeline.replay import Replay
from pipeline.rules.loader import RuleSet
from topics.catalogue import INGEST_REPORTS
from topics.models import Channel, Report, Transition, Warning

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "cap"
NOW = datetime(2025, 11, 10, 9, 0, tzinfo=timezone(timedelta(hours=7)))
NOON = datetime(2025, 11, 10, 5, 0, tzinfo=UTC)  # 12:00 in Vietnam: no quiet hours


@pytest.fixture(scope="module")
def routing() -> RoutingConfig:
    return load_routing(REPO / "config" / "routes.yaml")


@pytest.fixture(scope="module")
def audiences() -> Audiences:
    return Audiences.load(REPO / "config" / "audiences.yaml")


async def _warnings(
    path: Path, ruleset: RuleSet, directory: Directory
) -> tuple[list[Report], list[Warning]]:
    """The alerts of ``path`` through CAP ingest, then the engine, as the pipeline runs
    them, with the shipped config and rules."""
    sink = MemorySink()
    ingest = CapIngest(
        sink,
        Areas.of(directory),
        config=load_config(REPO / "config" / "cap_ingest.yaml"),
        rules=ReportRules.of(ruleset),
        clock=lambda: NOW,
    )
    results = await ingest.ingest_file(path)
    assert all(o is Outcome.SENT for o, _ in results), results
    reports = [Report.model_validate_json(v) for v in sink.on(INGEST_REPORTS)]
    replay = Replay(Engine(ruleset, directory))
    for report in reports:
        replay.report(report)
    return reports, replay.warnings


def _plan(w: Warning, routing: RoutingConfig, directory: Directory, aud: Audiences) -> Plan:
    return plan(w, routing, directory, aud, renderer(directory), active=[], silences=[], now=NOON)


async def test_a_national_typhoon_warning_reaches_the_lead_agency_and_each_commune(
    ruleset: RuleSet, directory: Directory, routing: RoutingConfig, audiences: Audiences
) -> None:
    (report,), warnings = await _warnings(DATA / "cap12_typhoon.xml", ruleset, directory)
    assert (report.domain.value, report.category, report.severity.value) == (
        "water",
        "storm",
        "Extreme",
    )
    assert sorted(w.subject for w in warnings) == sorted(report.areas)
    for w in warnings:
        assert (w.rule_id, w.transition, w.level) == ("water.report.storm", Transition.RAISED, 3)
        assert (w.severity.value, w.lead_agency.code) == ("Extreme", "snnmt")
        p = _plan(w, routing, directory, audiences)
        to = {(n.receiver_id, n.channel) for n in p.notifications}
        assert {
            ("snnmt-webhook", Channel.WEBHOOK),
            ("snnmt-email", Channel.EMAIL),
            (f"ubnd-{w.subject}", Channel.WEBHOOK),
            ("bchqs-webhook", Channel.WEBHOOK),  # search and rescue
            ("svhttdl-webhook", Channel.WEBHOOK),  # media and loudspeakers
        } <= to
        assert not p.suppressed
    vu_ninh = next(w for w in warnings if w.subject == "bn-vu-ninh")
    vi = render(vu_ninh, Channel.SMS, "vi").text
    assert "Tin bão, áp thấp nhiệt đới" in vi and "báo cáo bão, mức độ cực kỳ nghiêm trọng" in vi
    assert "storm" not in vi.replace("water.report.storm", "")
    assert "a report of storm" not in render(vu_ninh, Channel.EMAIL, "en").text
    km = render(vu_ninh, Channel.SMS, "km").text
    assert "ព្យុះ" in km and "storm" not in km.replace("water.report.storm", "")


async def test_a_national_earthquake_bulletin_reaches_the_lead_agency_and_the_commune(
    ruleset: RuleSet, directory: Directory, routing: RoutingConfig, audiences: Audiences
) -> None:
    """The EDXL-DE sample: a dam release (flooding) and a felt earthquake at Lục Nam."""
    reports, warnings = await _warnings(DATA / "edxl_de_1_0_two_alerts.xml", ruleset, directory)
    assert [(r.domain.value, r.category) for r in reports] == [
        ("water", "flooding"),
        ("geology", "earthquake"),
    ]
    (quake,) = [w for w in warnings if w.rule_id == "geology.report.earthquake"]
    assert (quake.subject, quake.level, quake.severity.value) == ("bn-luc-nam", 1, "Moderate")
    assert quake.lead_agency.code == "snnmt"
    to = {n.receiver_id for n in _plan(quake, routing, directory, audiences).notifications}
    assert {"snnmt-webhook", "snnmt-email", "ubnd-bn-luc-nam", "bchqs-webhook"} <= to
    vi = render(quake, Channel.WEBHOOK, "vi").text
    assert "Tin động đất, sóng thần" in vi and "báo cáo động đất, mức độ trung bình" in vi
