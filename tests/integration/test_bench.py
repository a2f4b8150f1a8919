"""``canhbao bench`` runs every phase on a real broker and reports every figure.

Figures are checked for being measured (present, positive, consistent), never against
speed goals: those belong to the benchmark's own output, not to a timed test."""

from __future__ import annotations

import json
import os

import pytest

from canhbao.broker import embedded_env
from tests.conftest import Broker
from tests.integration.helpers import run_canhbao

pytestmark = pytest.mark.integration


def test_bench_measures_every_phase_against_the_same_broker(broker: Broker) -> None:
    env = {**os.environ, "CANHBAO_KAFKA_BOOTSTRAP": broker.bootstrap}
    if broker.kind == "tansu":
        env.update(embedded_env())
    args = ["--readings", "600", "--stations", "60", "--loads", "100,200"]
    args += ["--seconds", "2", "--subscribers", "900", "--backtest-readings", "2000", "--json"]
    done = run_canhbao("bench", *args, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads(done.stdout)
    assert r["broker"] == "existing" and r["readings"] == 600 and r["stations"] == 60
    assert r["baseline_readings_per_second"] > 0 and r["pipeline_readings_per_second"] > 0
    ratio = r["pipeline_readings_per_second"] / r["baseline_readings_per_second"]
    assert r["ratio_to_baseline"] == pytest.approx(ratio, abs=0.001)
    assert [x["offered_per_second"] for x in r["latency"]] == [100, 200]
    for load in r["latency"]:
        # Every probe reading became a warning state delivered to the local receiver.
        assert load["probes"] > 0 and load["delivered"] == load["probes"], load
        assert 0 < load["p50_ms"] <= load["p95_ms"] <= load["p99_ms"] <= load["max_ms"]
    assert r["fanout"]["subscribers"] >= 900 - 9 and r["fanout"]["notifications"] > 0
    assert r["worker_peak_rss_mb"] > 0
    # The engine alone, on the same readings, against the same baseline.
    assert r["engine_readings_per_second"] > 0
    engine_ratio = r["engine_readings_per_second"] / r["baseline_readings_per_second"]
    assert r["engine_ratio_to_baseline"] == pytest.approx(engine_ratio, abs=0.001)
    # `canhbao rules backtest` over the generated history, in its own process.
    b = r["backtest"]
    assert b["readings"] == 2000 and b["stations"] == 100 and b["file_mb"] > 0
    assert b["readings_per_second"] > 0 and b["peak_rss_mb"] > 0
