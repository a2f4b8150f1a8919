"""``air``: an air-pollution episode at the Yên Phong industrial park.

Two days: a winter temperature inversion traps the park's emissions overnight.
The hourly VN_AQI (Decision 1459/QĐ-TCMT) climbs from moderate through poor (101)
and bad (151) to very bad (201), then the wind returns and it falls back. The
station also reports PM2.5, from which the 24-hour mean rule works against the
QCVN 05:2023 limit.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta

from feeds.scenarios.base import Event, Scenario, curve, reading, series, times
from topics.models import Domain, Reading

STATION = "bn-aqi-yen-phong"
Profile = Sequence[tuple[float, float]]

# VN_AQI against hours from the start: the rule needs a band to hold for 1 h.
AQI: Profile = [
    (0, 65), (6, 75), (12, 85), (17, 112), (19, 135), (21, 165), (24, 185), (27, 215),
    (30, 235), (33, 212), (36, 172), (39, 138), (42, 102), (44, 84), (48, 70),
]  # fmt: skip

# VN_AQI sub-index breakpoints for PM2.5 (µg/m³ → index), Decision 1459/QĐ-TCMT.
PM25_BREAKPOINTS: Profile = [
    (0, 0), (25, 50), (50, 100), (80, 150), (150, 200), (250, 300), (350, 400), (500, 500),
]  # fmt: skip
DURATION = timedelta(hours=48)
STEP = timedelta(minutes=15)


def pm25_for(aqi: float) -> float:
    """The PM2.5 concentration whose sub-index is ``aqi`` (the inverse breakpoints)."""
    return curve([(i, c) for c, i in PM25_BREAKPOINTS], aqi)


def aqi(
    start: datetime,
    points: Profile,
    until: timedelta,
    rng: random.Random,
    step: timedelta = STEP,
) -> Iterator[Reading]:
    """VN_AQI every ``step`` (a whole number, ±5 of noise near a plant)."""
    yield from series(
        STATION, Domain.ENVIRONMENT, "vn_aqi", "AQI", points, start, until, step, rng,
        noise=5.0, digits=0, floor=0.0,
    )  # fmt: skip


def pm25(
    start: datetime, points: Profile, until: timedelta, rng: random.Random
) -> Iterator[Reading]:
    """Hourly PM2.5 consistent with the AQI curve (PM2.5 drives the index here)."""
    for h, at in times(start, until, timedelta(hours=1)):
        value = pm25_for(curve(points, h)) * rng.uniform(0.93, 1.07)
        yield reading(STATION, Domain.ENVIRONMENT, "pm25_ugm3", round(value, 1), at, "µg/m³")


def build(start: datetime) -> Iterator[Event]:
    rng = random.Random(2025_12_01)
    yield from aqi(start, AQI, DURATION, rng)
    yield from pm25(start, AQI, DURATION, rng)


SCENARIO = Scenario(
    name="air",
    summary_vi="Ô nhiễm không khí quanh KCN Yên Phong: VN_AQI lên kém, xấu, rất xấu rồi giảm",
    summary_en="Air pollution at Yên Phong industrial park: VN_AQI poor, bad, very bad,"
    " then clearing",
    duration=DURATION,
    build=build,
)
