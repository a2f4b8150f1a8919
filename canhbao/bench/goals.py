"""Issue 12's goals, judged from one run's figures: pure functions, no I/O.

Every goal is a figure the bench measured, its goal, and where a throughput is
concerned its ratio to the raw-consumer baseline of the same run (absolute figures
move with the machine's load; ratios within one run much less)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# Offered loads of the latency curve, as shares of the backlog drain rate: below,
# around and beyond 80 % of capacity, then beyond capacity to show the knee.
LOAD_SHARES = (0.25, 0.5, 0.65, 0.8, 0.95, 1.1, 1.3)
# When the worker still kept up at the last share, the ramp goes on by this factor.
RAMP_FACTOR = 1.25
RAMP_EXTRA_STEPS = 3
HEADROOM = 0.8  # goal 2: no cliff up to 80 % of capacity

WORKER_GOAL = 25_000.0
WORKER_RATIO_GOAL = 0.13
P99_GOAL_MS = 250.0
ENGINE_GOAL = 150_000.0
PEER_RATE_FACTOR = 2.0
PEER_P99_GOAL_MS = 1000.0
FANOUT_GOAL_S = 5.0
SCALE_RSS_GOAL_MB = 500.0
BACKTEST_RATE_GOAL = 50_000.0
BACKTEST_RSS_GOAL_MB = 500.0
BACKTEST_SECONDS_GOAL = 120.0


def load_plan(drain_rate: float, shares: tuple[float, ...] = LOAD_SHARES) -> list[int]:
    """Offered readings/s for the latency curve, from the measured drain rate."""
    out: list[int] = []
    for share in shares:
        rate = max(10, round(drain_rate * share / 10) * 10)
        if rate not in out:
            out.append(rate)
    return out


def capacity(drain_rate: float, loads: list[dict[str, Any]]) -> tuple[float, str]:
    """The worker's capacity and how it was found.

    Where an offered load outran the worker, its capacity is the most it evaluated per
    second while falling behind (a live measurement, probes and all). When it kept up
    with every load, it is at least the highest load it kept up with, and at least the
    rate at which it drained the throughput phase's backlog."""
    behind = [x["evaluated_per_second"] for x in loads if x.get("kept_up") is False]
    if behind:
        return float(max(behind)), "fell behind"
    kept = [float(x["offered_per_second"]) for x in loads if x.get("kept_up")]
    return max([drain_rate, *kept]), "never fell behind (at least)"


@dataclass
class Goal:
    goal: int  # the numbering
    figure: str
    target: str
    measured: str
    ratio_to_baseline: float | None
    met: bool | None  # None: not measured in this run (and why is in `measured`)


def _fmt(x: float) -> str:
    return f"{x:,.0f}"


def _latency_goal(r: dict[str, Any]) -> Goal:
    cap = r.get("capacity_readings_per_second")
    under = [x for x in r["latency"] if cap and x["offered_per_second"] <= HEADROOM * cap]
    if not cap or not under:
        return Goal(2, "p99 produce → webhook up to 80 % of capacity",
                    f"≤ {P99_GOAL_MS:g} ms", "no load at or below 80 % of capacity", None,
                    None)  # fmt: skip
    worst = max(under, key=lambda x: x["p99_ms"] if x["p99_ms"] == x["p99_ms"] else 1e12)
    lost = any(x["delivered"] < x["probes"] for x in under)
    p99 = worst["p99_ms"]
    text = f"worst p99 {p99:g} ms at {worst['offered_per_second']:,}/s"
    if lost:
        text += " (probes undelivered)"
    ok = p99 == p99 and p99 <= P99_GOAL_MS and not lost
    return Goal(2, f"p99 produce → webhook up to 80 % of capacity ({_fmt(HEADROOM * cap)}/s)",
                f"≤ {P99_GOAL_MS:g} ms", text, None, ok)  # fmt: skip


def _peer_goals(r: dict[str, Any]) -> list[Goal]:
    peer = r.get("peer")
    if not peer or peer.get("skipped"):
        why = (peer or {}).get("skipped") or "not run (--peer none)"
        return [Goal(4, "alerts/s against Alertmanager", f"≥ {PEER_RATE_FACTOR:g}×",
                     f"skipped: {why}", None, None)]  # fmt: skip
    c, a = peer["canhbao"], peer["alertmanager"]
    factor = c["alerts_per_second"] / a["alerts_per_second"] if a["alerts_per_second"] else 0.0
    return [
        Goal(4, f"alerts/s, canhbao against Alertmanager ({peer['alerts']:,}-warning burst)",
             f"≥ {PEER_RATE_FACTOR:g}×",
             f"{_fmt(c['alerts_per_second'])}/s against {_fmt(a['alerts_per_second'])}/s "
             f"({factor:.2f}×)", None,
             factor >= PEER_RATE_FACTOR and c["delivered"] == c["alerts"]),
        Goal(4, "canhbao p99, first arrival of each warning", f"≤ {PEER_P99_GOAL_MS:g} ms",
             f"{c['p99_ms']:g} ms (Alertmanager {a['p99_ms']:g} ms)", None,
             c["p99_ms"] <= PEER_P99_GOAL_MS and c["delivered"] == c["alerts"]),
    ]  # fmt: skip


def _scale_goals(r: dict[str, Any], base: float) -> list[Goal]:
    f = r["fanout"]
    out = [
        Goal(5, f"fan-out to {f['subscribers']:,} subscribers", f"≤ {FANOUT_GOAL_S:g} s "
             "for 1,000,000", f"{f['seconds']:.2f} s, peak RSS {f.get('peak_rss_mb', 0):.0f} MB",
             None, f["seconds"] <= FANOUT_GOAL_S if f["subscribers"] >= 999_000 else None),
    ]  # fmt: skip
    s = r.get("scale")
    if s:
        out.append(Goal(5, f"worker peak RSS with {s['stations']:,} stations",
                        f"≤ {SCALE_RSS_GOAL_MB:g} MB with 100,000",
                        f"{s['worker_peak_rss_mb']:.0f} MB", None,
                        s["worker_peak_rss_mb"] <= SCALE_RSS_GOAL_MB
                        if s["stations"] >= 100_000 else None))  # fmt: skip
    two = r.get("two_workers")
    if two and "readings_per_second" in two:
        factor = two["readings_per_second"] / max(1.0, r["pipeline_readings_per_second"])
        out.append(Goal(5, "two workers against one (Apache Kafka)", "printed, no goal",
                        f"{_fmt(two['readings_per_second'])}/s against "
                        f"{_fmt(r['pipeline_readings_per_second'])}/s "
                        f"({factor:.2f}×)",
                        round(two["readings_per_second"] / base, 3), None))  # fmt: skip
    elif two:
        why = f"skipped: {two['skipped']}" if "skipped" in two else "failed (see its output)"
        out.append(Goal(5, "two workers against one", "printed, no goal", why, None, None))
    return out


def _backtest_goals(r: dict[str, Any]) -> list[Goal]:
    b = r.get("backtest")
    if not b:
        return [Goal(6, "backtest", "≥ 50,000/s, ≤ 500 MB", "not run", None, None)]
    year = b["readings"] >= 3_500_000
    return [
        Goal(6, f"backtest, {b['readings']:,} readings", f"≥ {_fmt(BACKTEST_RATE_GOAL)}/s",
             f"{_fmt(b['readings_per_second'])}/s wall ({_fmt(b['readings_per_cpu_second'])} "
             f"per CPU-second), {b['seconds']:.0f} s", None,
             b["readings_per_second"] >= BACKTEST_RATE_GOAL
             and (not year or b["seconds"] <= BACKTEST_SECONDS_GOAL)),
        Goal(6, "backtest peak RSS", f"≤ {BACKTEST_RSS_GOAL_MB:g} MB",
             f"{b['peak_rss_mb']:.0f} MB", None, b["peak_rss_mb"] <= BACKTEST_RSS_GOAL_MB),
    ]  # fmt: skip


def judge(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Every goal of the issue against this run's figures, in the issue's order."""
    base = float(r["baseline_readings_per_second"]) or 1.0
    worker = float(r["pipeline_readings_per_second"])
    engine = float(r["engine_readings_per_second"])
    goals = [
        Goal(1, "worker throughput, every rule pack", f"≥ {_fmt(WORKER_GOAL)}/s "
             f"(≥ {WORKER_RATIO_GOAL:g} × baseline)", f"{_fmt(worker)}/s",
             round(worker / base, 3),
             worker >= WORKER_GOAL and worker / base >= WORKER_RATIO_GOAL),
        _latency_goal(r),
        Goal(3, "engine alone, same readings", f"≥ {_fmt(ENGINE_GOAL)}/s", f"{_fmt(engine)}/s",
             round(engine / base, 3), engine >= ENGINE_GOAL),
        *_peer_goals(r),
        *_scale_goals(r, base),
        *_backtest_goals(r),
    ]  # fmt: skip
    return [asdict(g) for g in goals]
