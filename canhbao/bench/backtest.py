"""The backtest phase: ``canhbao rules backtest`` over a long history written to a
temporary file (by default a year of 15-minute readings from 100 stations, 3.5 M
readings), as users run it, in its own process: readings/s and that process's peak
RSS, which must not grow with the history's length."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from canhbao.processes import spawn

STEP = timedelta(minutes=15)
YEAR_OF_15_MINUTES = 100 * 365 * 24 * 4  # readings: 100 stations, a year


@dataclass
class BacktestFigures:
    readings: int
    stations: int
    file_mb: float
    seconds: float
    readings_per_second: float
    cpu_seconds: float  # user + system: what a shared machine's wall time hides
    readings_per_cpu_second: float
    peak_rss_mb: float


def write_history(path: Path, stations: list[str], total: int, start: datetime) -> None:
    """``total`` calm river readings, every station every 15 minutes, in time order."""
    n = len(stations)
    with path.open("w", encoding="utf-8") as f:
        f.write("observed_at,station_id,metric,value\n")
        for i in range(0, total, n):
            k = i // n
            at = (start + k * STEP).isoformat()
            value = f"{2.0 + 0.001 * (k % 3):.3f}"
            f.writelines(f"{at},{s},water_level_m,{value}\n" for s in stations[: min(n, total - i)])


def run_backtest(
    work: Path, env: dict[str, str], stations: list[str], total: int, start: datetime
) -> BacktestFigures:
    """Write the history, then time ``canhbao rules backtest`` on it (no HTML report)."""
    data = work / "history.csv"
    write_history(data, stations, total, start)
    started = time.perf_counter()
    proc = spawn(
        ["rules", "backtest", "--rules", env["CANHBAO_RULES_PATH"], "--data", str(data),
         "--json", "--no-html"],
        env,
        work / "backtest.log",
    )  # fmt: skip
    # The peak RSS is the child's own VmHWM, read while it runs: wait4's ru_maxrss
    # also counts the memory of the bench process it was forked from (Linux carries
    # the pre-exec image's high-water mark over), hundreds of MB after the fan-out.
    hwm_kb = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        hwm_kb = max(hwm_kb, _vm_hwm_kb(proc.pid))
        time.sleep(0.1)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    if proc.returncode != 0:
        tail = (work / "backtest.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"canhbao rules backtest failed ({proc.returncode}):\n{tail}")
    return BacktestFigures(
        readings=total,
        stations=len(stations),
        file_mb=round(data.stat().st_size / 1e6, 1),
        seconds=round(seconds, 1),
        readings_per_second=round(total / seconds),
        cpu_seconds=round(cpu, 1),
        readings_per_cpu_second=round(total / cpu) if cpu > 0 else 0,
        peak_rss_mb=round(hwm_kb / 1024, 1),
    )


def _vm_hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0
