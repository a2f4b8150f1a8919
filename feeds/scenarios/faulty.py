"""``faulty``: a calm day with broken sensors, which must not cry wolf.

Twelve hours, rivers low and air moderate, but: Phả Lại's gauge freezes at one
value for seven hours (stuck), Lục Nam's reads 9.8 m once (a spike that would be
alarm level III), Phủ Lạng Thương falls silent for two hours, the Yên Phong air
station sends an AQI of 999 and the substation's meter a frequency of 0 Hz (out of
range), and a gateway re-sends and back-dates a reading (duplicate, out of order).
The quality gate must turn these into sensor-fault and data-gap notices for the
station's owner, and raise no hazard warning at all.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta

from feeds.scenarios.base import Event, Scenario, Sent, hours, minutes, reading, series, times
from topics.models import Domain

DURATION = timedelta(hours=12)
STEP = minutes(15)
CALM = {
    "dap-cau": [(0, 3.10), (12, 3.16)],
    "phu-lang-thuong": [(0, 2.95), (12, 3.02)],
    "luc-nam": [(0, 2.70), (12, 2.76)],
    "pha-lai": [(0, 2.60), (12, 2.66)],
    "ha-noi": [(0, 5.40), (12, 5.52)],
    "thuong-cat": [(0, 5.10), (12, 5.20)],
}
STUCK = (hours(1), hours(8))  # Phả Lại repeats its 1-h reading until 8 h
SPIKE = 9.80  # Lục Nam, once, at 6 h
SILENT = (hours(3), hours(5))  # Phủ Lạng Thương sends nothing in between


def _river(station: str, start: datetime, rng: random.Random) -> Iterator[Event | Sent]:
    frozen: float | None = None
    for r in series(
        station, Domain.WATER, "water_level_m", "m", CALM[station], start, DURATION, STEP, rng,
        noise=0.01,
    ):  # fmt: skip
        offset = r.observed_at - start
        if station == "pha-lai" and STUCK[0] <= offset < STUCK[1]:
            # Frozen at a plausible value: no jump in, none out, only the flat line.
            frozen = r.value if frozen is None else frozen
            r = r.model_copy(update={"value": frozen})
        elif station == "luc-nam" and offset == hours(6):
            r = r.model_copy(update={"value": SPIKE})
        elif station == "phu-lang-thuong" and SILENT[0] < offset < SILENT[1]:
            continue
        yield r
        if station == "dap-cau" and offset == hours(2):
            yield r  # a gateway re-sends it: a duplicate, set aside
        if station == "dap-cau" and offset == hours(4):
            # ... and delivers a 55-minute-old reading from its buffer: out of order
            old = r.observed_at - minutes(55)
            yield Sent(r.observed_at, r.model_copy(update={"observed_at": old}))


def build(start: datetime) -> Iterator[Event | Sent]:
    rng = random.Random(2026_01_15)
    for station in CALM:
        yield from _river(station, start, rng)
    for h, at in times(start, DURATION, STEP):
        value = 999.0 if h == 4 else round(78 + rng.uniform(-6, 6))
        yield reading("bn-aqi-yen-phong", Domain.ENVIRONMENT, "vn_aqi", value, at, "AQI")
    for h, at in times(start, DURATION, minutes(5)):
        value = 0.0 if h == 9 else round(50 + rng.uniform(-0.04, 0.04), 3)
        yield reading("grid-bac-ninh", Domain.ENERGY, "grid_frequency_hz", value, at, "Hz")


SCENARIO = Scenario(
    name="faulty",
    summary_vi="Cảm biến hỏng (treo, nhảy số, mất tín hiệu): chỉ báo lỗi thiết bị,"
    " không báo động giả",
    summary_en="Faulty sensors (stuck, spiking, silent): sensor-fault notices, no false alarm",
    duration=DURATION,
    build=build,
)
