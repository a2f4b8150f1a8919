"""The benchmark's figures as a table, with the goals from the issue beside them."""

from __future__ import annotations

from typing import Any

# figure → (goal, which way is better) on the reference 2-core machine: issue 12's goals
# (the full list, with ratios, is the goals table at the end: goals.judge).
GOALS = {
    "ratio_to_baseline": (0.13, "higher"),
    "engine_readings_per_second": (150_000.0, "higher"),
    "backtest_readings_per_second": (50_000.0, "higher"),
    "backtest_peak_rss_mb": (500.0, "lower"),
    "fanout_seconds": (5.0, "lower"),
}


def _mark(key: str, value: float | None) -> str:
    goal, better = GOALS[key]
    if value is None or value != value:
        return "n/a"
    ok = value >= goal if better == "higher" else value <= goal
    shown = f"{goal:g} × baseline" if key == "ratio_to_baseline" else f"{goal:,g}"
    return ("meets" if ok else "misses") + f" goal {'≥' if better == 'higher' else '≤'} {shown}"


PER_CPU = "pipeline_readings_per_cpu_second"


def _count(value: float | None) -> str:
    return f"{value:>10,}" if value is not None else f"{'—':>10}"


def table(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"canhbao bench — broker {r['broker']}, {m['cpus']} CPUs, {m['memory_gib']} GiB, "
        f"Python {m['python']}",
        "",
        f"  baseline (raw aiokafka + json.loads)  {r['baseline_readings_per_second']:>10,} /s",
        f"  pipeline (validate, quality, rules)   {r['pipeline_readings_per_second']:>10,} /s",
        f"  per second of the worker's CPU time   {_count(r.get(PER_CPU))} /s",
        f"  ratio to baseline                     {r['ratio_to_baseline']:>10.1%}   "
        + _mark("ratio_to_baseline", r["ratio_to_baseline"]),
        f"  engine alone (Engine.on_reading)      {r['engine_readings_per_second']:>10,} /s   "
        f"{r['engine_ratio_to_baseline']:.2f} × baseline; "
        + _mark("engine_readings_per_second", r["engine_readings_per_second"]),
        "",
        "  end-to-end latency, reading produced → webhook delivered",
        "    offered/s  achieved/s  probes   p50 ms   p95 ms   p99 ms",
    ]
    for x in r["latency"]:
        lines.append(
            f"    {x['offered_per_second']:>9,}  {x['achieved_per_second']:>10,.0f}  "
            f"{x['delivered']:>3}/{x['probes']:<3} {x['p50_ms']:>7}  {x['p95_ms']:>7}  "
            f"{x['p99_ms']:>7}"
        )
    if r.get("capacity_readings_per_second"):
        lines.append(
            f"    capacity {r['capacity_readings_per_second']:,}/s ({r['capacity_found']}); "
            f"80 % of it: {0.8 * r['capacity_readings_per_second']:,.0f}/s"
        )
    f = r["fanout"]
    lines += [
        "",
        f"  fan-out: {f['subscribers']:,} subscribers in {f['notifications']:,} batches, "
        f"{f['seconds']:.2f} s   " + _mark("fanout_seconds", f["seconds"]),
        f"  worker peak RSS ({r['stations']:,} stations): {r['worker_peak_rss_mb']:.0f} MB",
    ]
    p = r.get("peer")
    if p and not p.get("skipped"):
        lines += ["", f"  side by side, {p['alerts']:,} distinct warnings to one webhook receiver "
                  f"({p['alertmanager_version']})"]  # fmt: skip
        for name, key in (("canhbao", "canhbao"), ("Alertmanager", "alertmanager")):
            x = p[key]
            lines.append(
                f"    {name:<13} {x['delivered']:>6,}/{x['alerts']:<6,} "
                f"{x['alerts_per_second']:>9,.0f} /s   p50 {x['p50_ms']:>8} ms   "
                f"p99 {x['p99_ms']:>8} ms"
            )
    elif p:
        lines += ["", f"  side by side with Alertmanager: skipped ({p['skipped']})"]
    s_ = r.get("scale")
    if s_:
        lines.append(f"  worker peak RSS ({s_['stations']:,} stations): "
                     f"{s_['worker_peak_rss_mb']:.0f} MB")  # fmt: skip
    two = r.get("two_workers")
    if two and not two.get("skipped"):
        lines.append(f"  two workers: {two['readings_per_second']:,} /s (one: "
                     f"{r['pipeline_readings_per_second']:,} /s)")  # fmt: skip
    b = r.get("backtest")
    if b:
        lines += [
            f"  backtest ({b['readings']:,} readings, {b['stations']} stations, "
            f"{b['file_mb']:g} MB CSV): {b['seconds']:.1f} s",
            f"    {b['readings_per_second']:>10,} readings/s   "
            + _mark("backtest_readings_per_second", b["readings_per_second"])
            + f"  ({b['readings_per_cpu_second']:,} per CPU-second)",
            f"    peak RSS {b['peak_rss_mb']:.0f} MB   "
            + _mark("backtest_peak_rss_mb", b["peak_rss_mb"]),
        ]
    lines += ["", chart(r["latency"])]
    if r.get("goals"):
        lines += ["", goals_table(r["goals"])]
    return "\n".join(lines)


def goals_table(goals: list[dict[str, Any]]) -> str:
    """Issue 12's goals as a Markdown table (the README's Performance section uses it)."""
    out = [
        "| # | figure | goal | measured | ratio to baseline | met? |",
        "|---|---|---|---|---:|---|",
    ]
    for g in goals:
        ratio = "" if g["ratio_to_baseline"] is None else f"{g['ratio_to_baseline']:.3f}"
        met = {True: "yes", False: "**no**", None: "—"}[g["met"]]
        out.append(
            f"| {g['goal']} | {g['figure']} | {g['target']} | {g['measured']} | {ratio} | {met} |"
        )
    return "\n".join(out)


def chart(loads: list[dict[str, Any]], width: int = 40) -> str:
    """p50 and p99 latency against offered load, as text bars."""
    if not loads:
        return ""
    top = max((x["p99_ms"] for x in loads if x["p99_ms"] == x["p99_ms"]), default=1.0) or 1.0
    out = ["  latency vs offered load (█ p50, ░ up to p99)"]
    for x in loads:
        p50 = x["p50_ms"] if x["p50_ms"] == x["p50_ms"] else 0
        p99 = x["p99_ms"] if x["p99_ms"] == x["p99_ms"] else 0
        a = round(p50 / top * width)
        b = max(0, round(p99 / top * width) - a)
        out.append(f"  {x['offered_per_second']:>6,}/s |{'█' * a}{'░' * b} {p50:g} / {p99:g} ms")
    return "\n".join(out)
