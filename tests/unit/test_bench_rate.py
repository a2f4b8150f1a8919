"""The bench's drain rate over several workers' counters."""

from __future__ import annotations

import math
from typing import cast

from canhbao.bench.worker import Worker, rate_until_all


class Drained:
    """A worker that evaluated everything before the bench first looked."""

    def __init__(self, count: float) -> None:
        self.count = count

    def check(self) -> None:
        return None

    def counter(self, name: str) -> float:
        return self.count


async def test_a_backlog_drained_before_the_first_look_still_gives_a_rate() -> None:
    """A small run on fast workers: a figure, not NaN (which crashed the bench)."""
    workers = cast(list[Worker], [Drained(1_000), Drained(1_000)])
    rate = await rate_until_all(workers, "evaluated", 2_000, limit_seconds=5)
    assert math.isfinite(rate) and rate > 0
