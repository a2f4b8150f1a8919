"""The rule set the benchmark's worker runs: the shipped packs plus one probe rule.

The probe rule raises at 1 and clears below 0.5, so alternating probe readings make
every probe a warning state change: each one is routed and delivered, which is what
end-to-end latency is measured on. Nothing else in the shipped packs fires on the
calm load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from canhbao.bench.load import PROBE_METRIC, PROBE_STATION
from topics import yamlio

PROBE_RULE = f"""\
rules:
  - id: bench.probe
    domain: energy
    hazard: bench_probe
    selector: {{station: {PROBE_STATION}, metric: {PROBE_METRIC}}}
    condition: {{kind: threshold, direction: rising, hysteresis: 0.5}}
    levels:
      - {{level: 1, name: "benchmark probe", value: 1.0, severity: Moderate}}
    annotations:
      summary_vi: "Phép đo thử của benchmark"
      summary_en: "Benchmark probe"
"""


def bench_geography(shipped: Path, into: Path, stations: list[str]) -> Path:
    """The shipped geography plus the benchmark's stations (calm river gauges) and its
    probe metric at the probe station: the validate stage refuses readings from
    stations or of metrics the geography does not know."""
    geography = yamlio.safe_load(shipped.read_text(encoding="utf-8"))
    for station in geography["stations"]:
        if station["id"] == PROBE_STATION:
            station["metrics"] = [*station["metrics"], PROBE_METRIC]
    commune = geography["stations"][0]["commune"]
    owner = geography["stations"][0]["owner"]
    geography["stations"] += [
        {
            "id": s,
            "name": s,
            "commune": commune,
            "owner": owner,
            "domain": "water",
            "metrics": ["water_level_m"],
        }
        for s in stations
    ]
    # Written as JSON, as another system would export thousands of stations: read as
    # YAML, a geography of 100,000 stations costs the worker 800 MB before its first
    # reading (topics/yamlio.py).
    target = into / "geography.json"
    target.write_text(json.dumps(geography, ensure_ascii=False), encoding="utf-8")
    return target


def bench_rules(shipped: Path, into: Path) -> Path:
    target = into / "rules"
    shutil.copytree(shipped, target, ignore=shutil.ignore_patterns("*.test.yaml"))
    (target / "bench.yaml").write_text(PROBE_RULE, encoding="utf-8")
    return target
