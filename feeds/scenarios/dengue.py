"""``dengue``: a dengue outbreak spreads from one ward to its neighbours.

Each commune's health station (trạm y tế, ``tyt-<commune>``) reports its weekly
case count. The counts are drawn against the endemic channel the rule uses
(rules/baselines/dengue_weekly.csv, mean + k·SD of the same ISO week), so the
outbreak reads the same whatever week the scenario starts in: Vũ Ninh first (one
commune: commune tier), Kinh Bắc the week after (two: the province directs), two
more communes at the peak, then back inside the channel.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

from feeds.scenarios.base import ICT, Event, Scenario, Sent, reading
from pipeline.rules.kinds import Baseline
from topics.models import Domain

COMMUNES = (
    "bn-vu-ninh", "bn-kinh-bac", "bn-hap-linh", "bn-da-mai", "bn-bac-giang", "bn-yen-phong",
    "bn-luc-nam", "bn-luc-ngan", "bn-son-dong",
)  # fmt: skip
# rules/health.yaml: z = (count - mean) / max(SD, min_sd); min_sd is 1.0 there.
MIN_SD = 1.0

# Bands of z a weekly count is drawn in. Each is at least one SD wide, so a whole
# count always falls in it, whatever the week's mean and SD: the story reads the
# same in any week of the year.
Band = tuple[float, float]
QUIET: Band = (0.0, 1.0)  # inside the channel (the rule clears below 1.5)
ABOVE: Band = (2.0, 3.0)  # above the channel: level 1
EPIDEMIC: Band = (3.0, 4.5)  # level 2
EASING: Band = (1.5, 2.5)  # holds level 1, drops level 2 (hysteresis 0.5)

# Week by week, the communes that are not quiet.
OUTBREAK: Sequence[dict[str, Band]] = [
    {},
    {"bn-vu-ninh": ABOVE},
    {"bn-vu-ninh": EPIDEMIC, "bn-kinh-bac": ABOVE},
    {"bn-vu-ninh": EPIDEMIC, "bn-kinh-bac": EPIDEMIC, "bn-hap-linh": ABOVE, "bn-da-mai": ABOVE},
    {"bn-vu-ninh": EASING, "bn-kinh-bac": EASING},
    {},
]
DURATION = timedelta(weeks=len(OUTBREAK) - 1, days=1)
FIRST = timedelta(hours=1)  # the first count of each week, after the week's start


def baseline_path() -> Path:
    # The shipped rule set's baseline: the scenario's counts are drawn against it, as the
    # sample rules judge them (a scenario is sample data, not the province's own).
    return Path(__file__).resolve().parents[2] / "rules" / "baselines" / "dengue_weekly.csv"


@lru_cache(maxsize=4)
def _baseline(path: Path) -> Baseline:
    return Baseline.parse(path.read_text(encoding="utf-8"), str(path))


def channel(area: str, at: datetime, path: Path | None = None) -> tuple[float, float]:
    """(mean, SD) of past seasons for the commune in ``at``'s ISO week."""
    stats = _baseline(path or baseline_path()).stats
    return stats.get((area, at.isocalendar().week), (0.0, 0.0))


def judged_at(area: str, at: datetime, path: Path | None = None) -> datetime:
    """When a count sent at ``at`` is dated: ``at``, unless its ISO week has no baseline
    (week 53, once in five or six years: the rule cannot judge it). Then the count is
    the previous week's, sent late, dated at that week's last second."""
    if (area, at.isocalendar().week) in _baseline(path or baseline_path()).stats:
        return at
    local = at.astimezone(ICT)
    monday = (local - timedelta(days=local.isoweekday() - 1)).replace(hour=0, minute=0, second=0)
    return monday - timedelta(seconds=1)


def cases(area: str, band: Band, at: datetime, path: Path | None = None) -> int:
    """The whole count nearest the middle of ``band`` whose z-score lies in it."""
    mean, sd = channel(area, at, path)
    scale = max(sd, MIN_SD)
    lo, hi = band
    count = max(0, round(mean + (lo + hi) / 2 * scale))
    while (count - mean) / scale >= hi and count > 0:
        count -= 1
    while (count - mean) / scale < lo:
        count += 1
    return count


def weekly_counts(
    start: datetime,
    weeks: Sequence[dict[str, Band]],
    *,
    first: timedelta = FIRST,
    stagger: timedelta = timedelta(minutes=30),
    communes: Sequence[str] = COMMUNES,
    path: Path | None = None,
) -> Iterator[Event | Sent]:
    """One count per commune and week, the communes reporting ``stagger`` apart."""
    for week, bands in enumerate(weeks):
        # The quiet communes report first: a province warning lists the communes above
        # the channel, and this keeps that list steady while they come in.
        order = [c for c in communes if c not in bands] + [c for c in bands if c in communes]
        for i, area in enumerate(order):
            sent = start + timedelta(weeks=week) + first + stagger * i
            at = judged_at(area, sent, path)
            band = bands.get(area, QUIET)
            r = reading(
                f"tyt-{area}", Domain.HEALTH, "dengue_cases_weekly", cases(area, band, at, path),
                at, "cases", area=area,
            )  # fmt: skip
            yield r if at == sent else Sent(sent, r)


def build(start: datetime) -> Iterator[Event | Sent]:
    yield from weekly_counts(start, OUTBREAK)


SCENARIO = Scenario(
    name="dengue",
    summary_vi="Dịch sốt xuất huyết lan từ phường Vũ Ninh sang các xã lân cận: cấp xã lên cấp tỉnh",
    summary_en="A dengue outbreak spreads from Vũ Ninh to neighbouring communes: commune tier"
    " to province tier",
    duration=DURATION,
    build=build,
)
