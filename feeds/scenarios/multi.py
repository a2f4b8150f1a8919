"""``multi``: one day on which everything happens at once.

A day in the rainy season's tail, hour by hour from the start:

- 0-24 h: the Cầu rises through alarm levels I, II (8 h) and III (13 h) at Đáp Cầu,
  and is back at level II by evening; the other rivers rise a little.
- 0-16 h: 11 mm of rain an hour in the hills of Sơn Động soak the slope: heavy rain,
  then landslide risk (rain over 150 mm in 72 h on saturated soil).
- 6-17 h: an inversion over the Yên Phong industrial park: VN_AQI poor, then bad.
- 6-10 h: the weekly dengue counts come in: Vũ Ninh above the endemic channel
  (commune tier), then Kinh Bắc (province tier); with the river at level II in the
  same wards, the flood-and-dengue warning goes to the Dept. of Health.
- 11-12 h: a brute-force and DDoS attack on the provincial portal.
- 18 h: the evening peak drags the grid frequency below 49.8 Hz for half a minute.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta

from feeds.scenarios import air, cyber, dengue, flood
from feeds.scenarios.base import (
    Event,
    Scenario,
    Sent,
    hours,
    minutes,
    reading,
    report,
    series,
    times,
)
from topics.models import Domain, Severity

DURATION = timedelta(hours=24)

RIVERS: dict[str, flood.Profile] = {
    "dap-cau": [
        (0, 4.00), (2, 4.22), (3, 4.38), (8, 5.40), (13, 6.40), (15, 6.55), (17, 6.45),
        (19, 6.15), (24, 5.60),
    ],
    "phu-lang-thuong": [(0, 3.50), (12, 4.20), (18, 4.55), (24, 4.40)],
    "luc-nam": [(0, 3.20), (12, 3.70), (18, 4.00), (24, 3.90)],
    "pha-lai": [(0, 3.10), (12, 3.60), (20, 4.05), (24, 4.00)],
    "ha-noi": [(0, 6.00), (24, 6.80)],
    "thuong-cat": [(0, 5.60), (24, 6.30)],
}  # fmt: skip
RAIN: dict[str, flood.Profile] = {
    "rg-son-dong": [(0, 0), (1, 11), (15, 11), (16, 0)],
    "rg-bac-giang": [(0, 3), (10, 6), (14, 0)],
    "rg-luc-ngan": [(0, 1), (12, 2), (16, 0)],
}
SOIL = [(0, 32.0), (4, 36.0), (9, 41.5), (14, 45.0), (24, 44.0)]  # % by volume
AQI = [(0, 80), (5, 92), (6.5, 118), (8, 135), (9, 162), (11, 172), (13, 150), (14, 128),
       (17, 86), (24, 78)]  # fmt: skip
DENGUE_WEEK = {"bn-vu-ninh": dengue.ABOVE, "bn-kinh-bac": dengue.ABOVE}
# Grid frequency (Hz) every 5 s through the dip at the evening peak.
DIP = [50.0, 49.92, 49.76, 49.72, 49.68, 49.7, 49.74, 49.79, 49.84, 49.88, 49.95, 49.99]


def geology(start: datetime, rng: random.Random) -> Iterator[Event]:
    yield from series(
        "sm-son-dong", Domain.GEOLOGY, "soil_moisture_pct", "%", SOIL, start, DURATION,
        hours(1), rng, noise=0.2, digits=1,
    )  # fmt: skip


def grid(start: datetime, dip_at: timedelta, rng: random.Random) -> Iterator[Event]:
    """The substation meter every 30 min, and every 5 s while the frequency dips."""
    for _, at in times(start, DURATION, minutes(30)):
        if not dip_at <= at - start < dip_at + timedelta(seconds=5 * len(DIP)):
            value = round(50 + rng.uniform(-0.03, 0.03), 3)
            yield reading("grid-bac-ninh", Domain.ENERGY, "grid_frequency_hz", value, at, "Hz")
    for i, value in enumerate(DIP):
        at = start + dip_at + timedelta(seconds=5 * i)
        yield reading("grid-bac-ninh", Domain.ENERGY, "grid_frequency_hz", value, at, "Hz")


def build(start: datetime) -> Iterator[Event | Sent]:
    rng = random.Random(2026_09_15)
    # Half-hourly gauges and the attack's traffic only around the flood of requests:
    # a day in well under a thousand messages, which a laptop replays in half a minute.
    yield from flood.rivers(start, RIVERS, DURATION, minutes(30), rng)
    yield from flood.rain(start, RAIN, DURATION, rng)
    yield from geology(start, rng)
    yield from air.aqi(start, AQI, DURATION, rng, step=minutes(30))
    yield from air.pm25(start, AQI, DURATION, rng)
    yield from dengue.weekly_counts(start, [DENGUE_WEEK], first=hours(6))
    # The report comes hours after the warning it corroborates: at this compression,
    # minutes of scenario time are milliseconds, less than the pipeline's own hops.
    yield report(
        "multi", 1, start, hours(14), domain=Domain.WATER, category="flooding",
        severity=Severity.SEVERE, areas=["bn-vu-ninh"], reporter="ubnd-bn-vu-ninh",
        text="Nước sông Cầu tràn qua đê bối, khu dân cư ven sông ngập sâu 0,4 m.",
    )  # fmt: skip
    yield from cyber.attack(
        start + hours(11), rng, scenario="multi", traffic=(minutes(30), minutes(40)),
        reported=False,
    )  # fmt: skip
    yield from grid(start, hours(18) + minutes(7), rng)


SCENARIO = Scenario(
    name="multi",
    summary_vi="Một ngày đa thiên tai: lũ, sạt lở, ô nhiễm không khí, sốt xuất huyết,"
    " tấn công mạng, sự cố lưới điện",
    summary_en="A multi-hazard day: flood, landslide risk, air pollution, dengue,"
    " a cyber attack and a grid incident",
    duration=DURATION,
    build=build,
)
