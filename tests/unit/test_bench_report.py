"""``canhbao bench``'s table: every figure beside its goal (no timing here)."""

from __future__ import annotations

from typing import Any

from canhbao.bench.report import table


def _result(**over: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "machine": {"cpus": 2, "memory_gib": 23.5, "python": "3.11.7", "platform": "Linux"},
        "broker": "tansu",
        "stations": 10_000,
        "baseline_readings_per_second": 180_000,
        "pipeline_readings_per_second": 5_000,
        "ratio_to_baseline": 0.028,
        "engine_readings_per_second": 160_000,
        "engine_ratio_to_baseline": 0.889,
        "latency": [],
        "p99_ms_at_2000": None,
        "fanout": {"subscribers": 100, "notifications": 1, "seconds": 0.2},
        "worker_peak_rss_mb": 100.0,
        "backtest": {
            "readings": 3_504_000, "stations": 100, "file_mb": 203.4, "seconds": 100.0,
            "readings_per_second": 35_040, "cpu_seconds": 70.0,
            "readings_per_cpu_second": 50_057, "peak_rss_mb": 80.0,
        },
    }  # fmt: skip
    return {**r, **over}


def test_the_table_shows_the_engine_and_the_backtest_against_their_goals() -> None:
    text = table(_result())
    assert "engine alone (Engine.on_reading)" in text and "160,000 /s" in text
    assert "0.89 × baseline; meets goal ≥ 150,000" in text
    assert "backtest (3,504,000 readings, 100 stations, 203.4 MB CSV): 100.0 s" in text
    assert "35,040 readings/s   misses goal ≥ 50,000" in text
    assert "peak RSS 80 MB   meets goal ≤ 500" in text


def test_a_run_without_the_backtest_phase_leaves_it_out() -> None:
    assert "backtest (" not in table(_result(backtest=None))


def test_the_table_shows_the_workers_rate_per_cpu_second_when_measured() -> None:
    # The figure to compare two versions of the worker by on a shared machine.
    text = table(_result(pipeline_readings_per_cpu_second=6_175))
    assert "per second of the worker's CPU time        6,175 /s" in text
    # A run too short to measure it (or an older result file) shows a dash.
    assert "per second of the worker's CPU time            — /s" in table(_result())
