"""``canhbao bench`` runs every phase on a real broker and reports every figure.

Figures are checked for being measured (present, positive, consistent), never against
speed goals: those belong to the benchmark's own output, not to a timed test."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from canhbao.broker import embedded_env
from tests.conftest import Broker
from tests.integration.helpers import run_canhbao
from tests.servers import require, skip_reason

pytestmark = pytest.mark.integration


def test_bench_measures_every_phase_against_the_same_broker(broker: Broker, tmp_path: Path) -> None:
    env = {**os.environ, "CANHBAO_KAFKA_BOOTSTRAP": broker.bootstrap}
    if broker.kind == "tansu":
        env.update(embedded_env())
    # Alertmanager side by side when Debian's package is there (CI requires it).
    peer = "none" if skip_reason("alertmanager") else "alertmanager"
    if peer == "alertmanager":
        require("alertmanager")
    chart = tmp_path / "latency.svg"
    done = run_canhbao(
        "bench", "--quick", "--json", "--peer", peer, "--chart", str(chart), env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads(done.stdout)
    assert r["broker"] == "existing" and r["readings"] == 2000 and r["stations"] == 200
    assert r["baseline_readings_per_second"] > 0 and r["pipeline_readings_per_second"] > 0
    ratio = r["pipeline_readings_per_second"] / r["baseline_readings_per_second"]
    assert r["ratio_to_baseline"] == pytest.approx(ratio, abs=0.001)
    assert [x["offered_per_second"] for x in r["latency"]] == [100, 200]
    for load in r["latency"]:
        # Every probe reading became a warning state delivered to the local receiver,
        # and the worker's own counter saw the offered readings.
        assert load["probes"] > 0 and load["delivered"] == load["probes"], load
        assert 0 < load["p50_ms"] <= load["p95_ms"] <= load["p99_ms"] <= load["max_ms"]
        assert load["evaluated_per_second"] > 0 and load["kept_up"] is not None
    assert r["capacity_readings_per_second"] > 0
    assert chart.read_text().startswith("<svg") and "p99" in chart.read_text()
    if peer == "alertmanager":
        # The same burst through both, every warning counted once at the one receiver.
        for side in ("canhbao", "alertmanager"):
            s = r["peer"][side]
            assert s["alerts"] == s["delivered"] == 100 and s["alerts_per_second"] > 0, s
    else:
        assert "skipped" in r["peer"]
    assert r["fanout"]["subscribers"] >= 2000 - 9 and r["fanout"]["notifications"] > 0
    assert r["worker_peak_rss_mb"] > 0
    assert r["scale"]["stations"] == 300 and r["scale"]["worker_peak_rss_mb"] > 0
    # The engine alone, on the same readings, against the same baseline.
    assert r["engine_readings_per_second"] > 0
    engine_ratio = r["engine_readings_per_second"] / r["baseline_readings_per_second"]
    assert r["engine_ratio_to_baseline"] == pytest.approx(engine_ratio, abs=0.001)
    # `canhbao rules backtest` over the generated history, in its own process.
    b = r["backtest"]
    assert b["readings"] == 1000 and b["stations"] == 100 and b["file_mb"] > 0
    assert b["readings_per_second"] > 0 and b["peak_rss_mb"] > 0
    # Every goal of the issue is judged (met, missed, or not measured and why).
    assert {g["goal"] for g in r["goals"]} == {1, 2, 3, 4, 5, 6}
