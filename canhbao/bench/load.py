"""What the benchmark feeds: plausible river readings from many stations, encoded once.

Values move a millimetre at a time so the quality gate (spike, stuck, range) lets them
through to the rules, as a calm day's data would; timestamps rise per station so none
is a duplicate or out of order."""

from __future__ import annotations

from datetime import datetime, timedelta

from topics.models import Domain, Reading

PROBE_STATION = "grid-bac-ninh"  # a real station, so a probe warning has areas and routes
PROBE_METRIC = "bench_probe"


def station_ids(count: int) -> list[str]:
    return [f"bench-{i:05d}" for i in range(count)]


def reading(station: str, value: float, at: datetime, metric: str = "water_level_m") -> bytes:
    domain = Domain.ENERGY if metric == PROBE_METRIC else Domain.WATER
    return Reading(
        station_id=station, domain=domain, metric=metric, value=value, observed_at=at
    ).to_bytes()


def calm_readings(
    stations: list[str], total: int, start: datetime, step: timedelta
) -> list[tuple[bytes, bytes]]:
    """``total`` readings round-robin over ``stations``: (key, value) pairs."""
    out: list[tuple[bytes, bytes]] = []
    n = len(stations)
    for i in range(total):
        station = stations[i % n]
        k = i // n
        value = 2.0 + 0.001 * (k % 3)
        out.append((station.encode(), reading(station, value, start + k * step)))
    return out
