"""CAP ingest on a real broker: it checks reports against the rule set the workers use
(the one last applied on ``canhbao.control.rules``, else the rule files). With the
shipped rules a national typhoon warning reaches the ingest topic, as a report the
pipeline's validate stage takes; a warning of a kind no rule takes (a cold spell) is
dead-lettered with the reason, and reaches the ingest topic once an engineer applies a
rule that takes it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from alerting.directory import Directory
from canhbao import control
from feeds.cap_alerts import Areas, load_config
from feeds.cap_ingest import CapIngest, Outcome, rules_in_force
from feeds.sink import KafkaSink
from pipeline.rules.loader import compile_rules, read_sources
from pipeline.validate import TimePolicy, validate_report
from tests.conftest import Broker
from tests.integration.helpers import collect, ensure_topics
from topics.catalogue import DEADLETTER, INGEST_REPORTS
from topics.models import DeadLetter, Domain, Report

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TYPHOON = REPO / "tests" / "data" / "cap" / "cap12_typhoon.xml"
NOW = datetime(2025, 11, 10, 9, 0, tzinfo=timezone(timedelta(hours=7)))
# A national cold-spell warning (Met: water by config/cap_ingest.yaml); its English
# event gives the report category severe_cold_spell, which no shipped rule takes.
COLD_SPELL = (
    '<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">'
    "<identifier>VN-NCHMF-2025-11-10-0100</identifier><sender>cap@nchmf.gov.vn</sender>"
    "<sent>2025-11-10T08:50:00+07:00</sent><status>Actual</status><msgType>Alert</msgType>"
    "<scope>Public</scope>"
    "<info><language>vi-VN</language><category>Met</category><event>Rét hại</event>"
    "<urgency>Expected</urgency><severity>Severe</severity><certainty>Likely</certainty>"
    "<headline>Rét hại, nhiệt độ thấp nhất 6-8 độ C</headline><area><areaDesc>Lục Nam</areaDesc>"
    "<geocode><valueName>VN-commune</valueName><value>99006</value></geocode></area></info>"
    "<info><language>en-US</language><category>Met</category><event>Severe cold spell</event>"
    "<urgency>Expected</urgency><severity>Severe</severity><certainty>Likely</certainty>"
    "<area><areaDesc>Luc Nam</areaDesc>"
    "<geocode><valueName>VN-commune</valueName><value>99006</value></geocode></area></info>"
    "</alert>"
).encode()
COLD_RULE = """\
rules:
  - id: water.report.cold
    domain: water
    hazard: cold_spell_report
    group_by: area
    condition: {kind: report, categories: [severe_cold_spell], min_severity: Severe}
    levels:
      - {level: 1, name: "rét hại", severity: Severe}
    annotations:
      summary_vi: "Rét hại (tin của cơ quan khí tượng thủy văn)"
      summary_en: "Severe cold spell (weather service warning)"
"""


async def test_reports_are_checked_against_the_rules_the_workers_use(broker: Broker) -> None:
    await ensure_topics(broker.bootstrap)
    directory = Directory.load(
        REPO / "config" / "geography.yaml", REPO / "config" / "directory.yaml"
    )
    files = await rules_in_force(broker.bootstrap, REPO / "rules", None)
    assert files is not None
    assert {(Domain.WATER, "storm"), (Domain.GEOLOGY, "earthquake")} <= set(files.takes)
    async with KafkaSink(broker.bootstrap) as sink:
        ingest = CapIngest(
            sink,
            Areas.of(directory),
            config=load_config(REPO / "config" / "cap_ingest.yaml"),
            rules=files,
            clock=lambda: NOW,
        )
        [(outcome, why)] = await ingest.ingest_file(TYPHOON)
        assert outcome is Outcome.SENT, why
        [(outcome, _)] = await ingest.ingest(COLD_SPELL, "cold.xml")
        assert outcome is Outcome.REJECTED

        sources = read_sources(REPO / "rules") | {"rules/cold.yaml": COLD_RULE}
        await control.publish(broker.bootstrap, compile_rules(sources), actor="test")
        applied = await rules_in_force(broker.bootstrap, REPO / "rules", files)
        assert applied is not None and applied.version != files.version
        assert (Domain.WATER, "severe_cold_spell") in applied.takes
        ingest.rules = applied
        [(outcome, why)] = await ingest.ingest(COLD_SPELL, "cold.xml")
        assert outcome is Outcome.SENT, why

    (letter,) = [
        DeadLetter.model_validate_json(v)
        for v in await collect(broker.bootstrap, DEADLETTER, lambda v: len(v) >= 1)
    ]
    assert "no rule takes water reports of category 'severe_cold_spell'" in letter.reason
    assert letter.original == COLD_SPELL
    raws = await collect(broker.bootstrap, INGEST_REPORTS, lambda v: len(v) >= 2)
    # What the worker's validate stage would do with them, at the same moment.
    judged = [
        validate_report(
            raw, source_topic=INGEST_REPORTS, now=NOW, policy=TimePolicy(), directory=directory
        )
        for raw in raws
    ]
    assert all(isinstance(r, Report) for r in judged), judged
    # (keyed by commune: the two may come from different partitions, in either order)
    cold, typhoon = sorted((r for r in judged if isinstance(r, Report)), key=lambda r: r.category)
    assert (typhoon.category, typhoon.severity.value) == ("storm", "Extreme")
    assert typhoon.areas == ["bn-vu-ninh", "bn-kinh-bac", "bn-hap-linh", "bn-bac-giang"]
    assert (cold.category, cold.areas) == ("severe_cold_spell", ["bn-luc-nam"])
