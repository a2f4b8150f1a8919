"""``flood``: the Cầu river floods, as in October 2025 after typhoon Matmo.

Three days: a day of typhoon rain over the hills, then Đáp Cầu climbs through alarm
levels I, II and III to a peak of about 6.85 m and recedes to all-clear. The other
river gauges of Decision 05/2020/QĐ-TTg rise with it (Lục Nam fast, Phả Lại to
level II), the Red River stations stay below their levels, and two communes report
flooding while the river is at its highest.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta

from feeds.scenarios.base import Event, Scenario, hours, minutes, report, series
from topics.models import Domain, Reading, Severity

Profile = Sequence[tuple[float, float]]

# Water level (m) against hours from the start. Alarm levels: Đáp Cầu, Phủ Lạng
# Thương, Lục Nam 4.30/5.30/6.30; Phả Lại 4.00/5.00/6.00; Hà Nội 9.50; Thượng Cát 9.00.
RIVERS: dict[str, Profile] = {
    "dap-cau": [
        (0, 3.20), (6, 3.30), (12, 3.75), (17, 4.35), (24, 5.05), (28, 5.50), (34, 6.15),
        (37, 6.50), (41, 6.85), (45, 6.70), (49, 6.30), (52, 6.00), (56, 5.55), (60, 5.10),
        (64, 4.65), (68, 4.25), (72, 3.95),
    ],
    "phu-lang-thuong": [
        (0, 3.00), (10, 3.20), (20, 4.10), (30, 5.00), (38, 5.75), (44, 5.95), (50, 5.60),
        (60, 4.70), (72, 3.90),
    ],
    # A mountain river: it rises fastest (over 0.5 m/h), which the rise-rate rule catches.
    "luc-nam": [
        (0, 2.80), (8, 2.90), (10, 3.10), (13, 4.70), (16, 5.30), (24, 5.60), (30, 5.75),
        (36, 5.45), (48, 4.60), (60, 3.90), (72, 3.50),
    ],
    "pha-lai": [
        (0, 2.90), (12, 3.20), (24, 4.10), (36, 4.90), (44, 5.35), (50, 5.20), (60, 4.50),
        (72, 3.80),
    ],
    "ha-noi": [(0, 5.80), (24, 6.60), (48, 7.90), (72, 7.20)],
    "thuong-cat": [(0, 5.50), (24, 6.20), (48, 7.40), (72, 6.90)],
}  # fmt: skip

# Rain (mm per hour) against hours: the typhoon's rain band on the first day.
RAIN: dict[str, Profile] = {
    "rg-bac-giang": [(0, 0), (2, 3), (6, 8), (14, 9), (20, 5), (26, 2), (30, 0)],
    "rg-luc-ngan": [(0, 0), (3, 4), (8, 10), (15, 8), (22, 3), (28, 0)],
    "rg-son-dong": [(0, 0), (2, 5), (6, 12), (14, 10), (22, 4), (30, 0)],
}

DURATION = timedelta(hours=72)


def rivers(
    start: datetime,
    profiles: dict[str, Profile],
    until: timedelta,
    step: timedelta,
    rng: random.Random,
) -> Iterator[Reading]:
    """River gauges: a reading every ``step``, to the centimetre, with 1 cm of jitter."""
    for station, points in profiles.items():
        yield from series(
            station, Domain.WATER, "water_level_m", "m", points, start, until, step, rng,
            noise=0.01,
        )  # fmt: skip


def rain(
    start: datetime, profiles: dict[str, Profile], until: timedelta, rng: random.Random
) -> Iterator[Reading]:
    """Rain gauges: millimetres in the past hour, hourly."""
    for station, points in profiles.items():
        yield from series(
            station, Domain.WATER, "rain_mm", "mm", points, start, until, hours(1), rng,
            noise=1.0, digits=1, floor=0.0,
        )  # fmt: skip


def build(start: datetime) -> Iterator[Event]:
    rng = random.Random(2025_10_07)
    yield from rivers(start, RIVERS, DURATION, minutes(30), rng)
    yield from rain(start, RAIN, DURATION, rng)
    # At the peak, two People's Committees report flooding: each corroborates the
    # river warning that already covers the commune instead of raising its own.
    yield report(
        "flood", 1, start, hours(40), domain=Domain.WATER, category="flooding",
        severity=Severity.SEVERE, areas=["bn-vu-ninh"], reporter="ubnd-bn-vu-ninh",
        text="Nước sông Cầu tràn qua đê bối, khu dân cư ven sông ngập sâu 0,5 m; "
        "đã di dời 120 hộ dân.",
    )  # fmt: skip
    yield report(
        "flood", 2, start, hours(44), domain=Domain.WATER, category="flooding",
        severity=Severity.MODERATE, areas=["bn-hap-linh"], reporter="ubnd-bn-hap-linh",
        text="Nước tràn vào thôn ven sông, ngập 0,3 m.",
    )  # fmt: skip


SCENARIO = Scenario(
    name="flood",
    summary_vi="Lũ sông Cầu như tháng 10/2025: Đáp Cầu vượt báo động I, II, III rồi rút",
    summary_en="Cầu river flood like October 2025: Đáp Cầu passes alarm levels I, II, III"
    " and recedes",
    duration=DURATION,
    build=build,
)
