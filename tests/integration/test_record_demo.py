"""The demo records its run: after ``canhbao demo --json``, ``canhbao history`` on the
database it printed lists every warning state the summary counted and every broadcast
request it made, and ``canhbao indicators`` reads the same warnings."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import Broker
from tests.integration.helpers import run_canhbao

pytestmark = pytest.mark.integration


def test_history_lists_every_warning_state_and_request_the_demo_counted(
    broker: Broker, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANHBAO_")}
    if broker.kind != "tansu":
        env |= {"CANHBAO_KAFKA_BOOTSTRAP": broker.bootstrap}
    run = run_canhbao("demo", "--json", "--duration", "30", env=env, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout)
    found = re.search(r"The threat record of this run: (\S+)", run.stderr)
    assert found, run.stderr[-2000:]
    record = {**env, "CANHBAO_DATABASE_URL": f"sqlite+aiosqlite:///{found[1]}"}

    listed = run_canhbao("history", "warnings", "--json", env=record)
    assert listed.returncode == 0, listed.stderr
    states = json.loads(listed.stdout)
    assert len(states) == summary["warnings"]["total"]
    assert Counter(s["domain"] for s in states) == summary["warnings"]["by_domain"]
    assert Counter(s["transition"] for s in states) == summary["warnings"]["by_transition"]

    acted = run_canhbao("history", "actions", "--json", env=record)
    assert acted.returncode == 0, acted.stderr
    requests = [
        a for a in json.loads(acted.stdout) if (a["kind"], a["action"]) == ("approval", "request")
    ]
    assert len(requests) == summary["citizen_broadcasts_requested"]

    delivered = run_canhbao("history", "deliveries", "--json", env=record)
    ok = [d for d in json.loads(delivered.stdout) if d["outcome"] == "delivered"]
    assert len(ok) == summary["deliveries"]["ok"]

    days = sorted({s["raised_at"][:7] for s in states})
    shown = run_canhbao("indicators", "--period", days[0], env=record)
    assert shown.returncode == 0, shown.stderr
    assert "warning → delivered to the lead agency: median" in shown.stdout

    # The after-action report of the level-III flood at Đáp Cầu.
    flood = "water.flood.dap-cau:dap-cau"
    assert any(s["warning_id"] == flood and s["level"] == 3 for s in states)
    out = tmp_path / "dap-cau.html"
    made = run_canhbao("report", flood, "--html", str(out), env=record)
    assert made.returncode == 0, made.stderr
    html = out.read_text(encoding="utf-8")
    chart = re.search(r'<svg class="readings-chart".*?</svg>', html, re.S)
    assert chart and "dap-cau · water_level_m" in chart[0] and "<polyline" in chart[0]
    # Every reading the rules selected, not only the states' evidence: the river
    # between two state changes is drawn.
    flood_states = [s for s in states if s["warning_id"] == flood]
    assert chart[0].count("<circle") > len(flood_states), "only the evidence is charted"
    timeline = re.search(r'<svg class="delivery-timeline".*?</svg>', html, re.S)
    assert timeline and "snnmt-webhook · webhook" in timeline[0]
