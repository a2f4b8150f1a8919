"""The worker's stages, one module each: a small class holding the stage's logic,
its writers passed in (:mod:`pipeline.worker.writers`). ``pipeline.worker.app``
registers them on the Faust app; they import nothing from it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

#: What time it is for a stage (tests pass a fixed clock).
Clock = Callable[[], datetime]


def wall_clock() -> datetime:
    return datetime.now(UTC)
