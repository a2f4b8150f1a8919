"""What a scenario is, and the small helpers the scenario modules share.

A scenario is pure data: from a start instant it yields the readings and reports
that real feeds would send, each timestamped in scenario time. Playing them into
Kafka (``feeds.simulate``) and replaying them through the engine (the tests) are
somebody else's business, so the same data drives the demo and the proofs.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from topics.models import Domain, Reading, Report, Severity

# Sensors in the province stamp their readings in Vietnam time; so do we, which
# keeps ISO weeks (dengue baselines) and the local clock in messages as a user expects.
ICT = timezone(timedelta(hours=7))
# Marks every simulated message, so nobody mistakes it for a real feed on the topics.
SOURCE = "canhbao-simulate"

Event = Reading | Report


@dataclass(frozen=True)
class Sent:
    """A message sent at ``at`` (scenario time), later than it says it was observed:
    how a gateway's backlog or a re-sent reading arrives."""

    at: datetime
    message: Event


def sent_at(item: Event | Sent) -> datetime:
    return item.at if isinstance(item, Sent) else item.observed_at


@dataclass(frozen=True)
class Scenario:
    name: str
    summary_vi: str
    summary_en: str
    duration: timedelta
    # Messages are sent when they are observed, unless wrapped in ``Sent``.
    build: Callable[[datetime], Iterable[Event | Sent]]

    def timeline(self, start: datetime) -> list[Sent]:
        """Every message with the scenario time it is sent at, in sending order."""
        # A stable sort keeps the generation order of messages sent at the same time.
        items = sorted(self.build(align(start)), key=sent_at)
        return [i if isinstance(i, Sent) else Sent(i.observed_at, i) for i in items]

    def events(self, start: datetime) -> list[Event]:
        """Every message, in the order it is sent, for a scenario starting at ``start``."""
        return [s.message for s in self.timeline(start)]


def align(start: datetime) -> datetime:
    if start.tzinfo is None:
        raise ValueError("a scenario start must carry a time zone")
    return start.astimezone(ICT).replace(microsecond=0)


def curve(points: Sequence[tuple[float, float]], x: float) -> float:
    """Piecewise-linear through ``(x, y)`` points (x ascending), flat outside them."""
    xs = [p[0] for p in points]
    if x <= xs[0]:
        return points[0][1]
    if x >= xs[-1]:
        return points[-1][1]
    i = bisect.bisect_right(xs, x)
    (x0, y0), (x1, y1) = points[i - 1], points[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def times(start: datetime, until: timedelta, step: timedelta) -> Iterator[tuple[float, datetime]]:
    """``(hours since start, instant)`` every ``step`` from ``start`` up to ``start + until``."""
    n = 0
    while step * n <= until:
        yield (step * n).total_seconds() / 3600.0, start + step * n
        n += 1


def reading(
    station: str,
    domain: Domain,
    metric: str,
    value: float,
    at: datetime,
    unit: str | None = None,
    *,
    area: str | None = None,
    source: str = SOURCE,
) -> Reading:
    return Reading(
        station_id=station,
        domain=domain,
        metric=metric,
        value=value,
        unit=unit,
        observed_at=at,
        source=source,
        area=area,
    )


def series(
    station: str,
    domain: Domain,
    metric: str,
    unit: str,
    points: Sequence[tuple[float, float]],
    start: datetime,
    until: timedelta,
    step: timedelta,
    rng: random.Random,
    *,
    noise: float = 0.0,
    digits: int = 2,
    floor: float | None = None,
) -> Iterator[Reading]:
    """A sensor following ``points`` (hours → value) with a little jitter, as gauges do."""
    for hours, at in times(start, until, step):
        value = curve(points, hours) + (rng.uniform(-noise, noise) if noise else 0.0)
        if floor is not None:
            value = max(floor, value)
        yield reading(station, domain, metric, round(value, digits), at, unit)


def report(
    scenario: str,
    n: int,
    start: datetime,
    at: timedelta,
    *,
    domain: Domain,
    category: str,
    severity: Severity,
    areas: list[str],
    reporter: str,
    text: str,
) -> Report:
    # The start is in the id: the engine remembers which reports it has applied, so a
    # second run of the same scenario must not look like a replay of the first.
    return Report(
        report_id=f"sim-{scenario}-{start:%Y%m%dt%H%M%S}-{n}",
        domain=domain,
        category=category,
        severity=severity,
        areas=areas,
        observed_at=start + at,
        reporter=reporter,
        text=text,
    )


def hours(h: float) -> timedelta:
    return timedelta(hours=h)


def minutes(m: float) -> timedelta:
    return timedelta(minutes=m)
