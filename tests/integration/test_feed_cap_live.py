"""CAP ingest on a real broker: it checks reports against the rule set the workers use
(the one last applied on ``canhbao.control.rules``, else the rule files), so a typhoon
warning is dead-lettered while no rule takes storm reports, and reaches the ingest topic
- valid for the pipeline - once an engineer applies a rule that does."""

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
from pipeline.validate import validate_report
from tests.conftest import Broker
from tests.integration.helpers import collect, ensure_topics
from topics.catalogue import DEADLETTER, INGEST_REPORTS
from topics.models import DeadLetter, Domain, Report

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TYPHOON = REPO / "tests" / "data" / "cap" / "cap12_typhoon.xml"
NOW = datetime(2025, 11, 10, 9, 0, tzinfo=timezone(timedelta(hours=7)))
STORM_RULE = """\
rules:
  - id: water.report.storm
    domain: water
    hazard: storm_report
    group_by: area
    condition: {kind: report, categories: [storm], min_severity: Severe}
    levels:
      - {level: 1, name: "bão", severity: Severe}
      - {level: 2, name: "bão rất mạnh", severity: Extreme}
    annotations:
      summary_vi: "Bão (cảnh báo của cơ quan khí tượng)"
      summary_en: "Typhoon (weather service warning)"
"""


async def test_reports_are_checked_against_the_rules_the_workers_use(broker: Broker) -> None:
    await ensure_topics(broker.bootstrap)
    directory = Directory.load(
        REPO / "config" / "geography.yaml", REPO / "config" / "directory.yaml"
    )
    files = await rules_in_force(broker.bootstrap, REPO / "rules", None)
    assert files is not None and (Domain.WATER, "flooding") in files.takes
    async with KafkaSink(broker.bootstrap) as sink:
        ingest = CapIngest(
            sink,
            Areas.of(directory),
            config=load_config(REPO / "config" / "cap_ingest.yaml"),
            rules=files,
            clock=lambda: NOW,
        )
        [(outcome, _)] = await ingest.ingest_file(TYPHOON)
        assert outcome is Outcome.REJECTED

        sources = read_sources(REPO / "rules") | {"rules/storm.yaml": STORM_RULE}
        await control.publish(broker.bootstrap, compile_rules(sources), actor="test")
        applied = await rules_in_force(broker.bootstrap, REPO / "rules", files)
        assert applied is not None and applied.version != files.version
        assert (Domain.WATER, "storm") in applied.takes
        ingest.rules = applied
        [(outcome, _)] = await ingest.ingest_file(TYPHOON)
        assert outcome is Outcome.SENT

    (letter,) = [
        DeadLetter.model_validate_json(v)
        for v in await collect(broker.bootstrap, DEADLETTER, lambda v: len(v) >= 1)
    ]
    assert "no rule takes water reports of category 'storm'" in letter.reason
    (raw,) = await collect(broker.bootstrap, INGEST_REPORTS, lambda v: len(v) >= 1)
    report = validate_report(raw, source_topic=INGEST_REPORTS)
    assert isinstance(report, Report), report
    assert (report.category, report.severity.value) == ("storm", "Extreme")
    assert report.areas == ["bn-vu-ninh", "bn-kinh-bac", "bn-hap-linh", "bn-bac-giang"]
