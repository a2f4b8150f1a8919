"""Delivery policy shared by every channel: retries with exponential backoff and
full jitter, a per-receiver rate limit, and a per-receiver circuit breaker.
Pure bookkeeping with an injectable clock, so it is tested without waiting."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 10
    base: float = 0.5
    cap: float = 30.0  # the longest single wait
    timeout: float = 10.0  # one attempt

    def backoff(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Equal jitter: half of base·2^(attempt-1) (capped) for sure, the other half
        at random, so dispatchers do not retry in lockstep yet the total is bounded
        below. With the defaults the retries of one notification take 60 to 120 s:
        a receiver down for 30 s still gets it; one that never returns is given up on."""
        step = min(self.cap, self.base * 2 ** (attempt - 1))
        return float(step / 2 + rng() * step / 2)

    def budget(self) -> float:
        """The longest the waits of one notification's retries can add up to."""
        return float(
            sum(min(self.cap, self.base * 2 ** (a - 1)) for a in range(1, self.max_attempts))
        )


@dataclass
class TokenBucket:
    """At most ``rate`` sends per second to one receiver, bursts up to ``burst``."""

    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    tokens: float = field(init=False)
    stamp: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = self.burst
        self.stamp = self.clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_time(self) -> float:
        """Seconds to wait before the next send (0: go now, and a token is taken)."""
        self._refill()
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate

    def reserve(self) -> float:
        """Take the next token now, in debt if need be, and return how long to wait
        until it is due. Senders running at once each get their own slot: with
        ``wait_time`` they would all wait the same time and then all go together."""
        self._refill()
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


@dataclass
class CircuitBreaker:
    """After ``threshold`` consecutive failures the receiver is left alone for
    ``cooldown`` seconds; then one trial request decides (half-open)."""

    threshold: int = 5
    cooldown: float = 15.0
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    opened_at: float | None = None

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "open" if self.clock() - self.opened_at < self.cooldown else "half-open"

    def wait_time(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.cooldown - (self.clock() - self.opened_at))

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None

    def failure(self) -> None:
        self.failures += 1
        if self.failures >= self.threshold:
            self.opened_at = self.clock()


class Offsets:
    """Which records of each partition are finished, for a dispatcher that handles
    several at once: the offset it may commit is that of the lowest record not yet
    finished (everything before it is), or one past the last record taken when all
    are. A record read twice (the group gave its partition back) counts twice."""

    def __init__(self) -> None:
        self._open: dict[Any, dict[int, int]] = {}  # partition -> offset -> unfinished
        self._next: dict[Any, int] = {}  # partition -> one past the highest offset taken
        self._committed: dict[Any, int] = {}

    def take(self, partition: Any, offset: int) -> None:
        open_ = self._open.setdefault(partition, {})
        open_[offset] = open_.get(offset, 0) + 1
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)

    def finish(self, partition: Any, offset: int) -> None:
        open_ = self._open.get(partition)
        if open_ is None or offset not in open_:
            return  # its partition was given up (forgotten) while it was under way
        open_[offset] -= 1
        if not open_[offset]:
            del open_[offset]

    def forget(self, partition: Any) -> None:
        """The partition went to another member: its next owner reads from the last
        commit, and what is still under way here must not move that commit."""
        self._open.pop(partition, None)
        self._next.pop(partition, None)
        self._committed.pop(partition, None)

    @property
    def unfinished(self) -> int:
        return sum(sum(o.values()) for o in self._open.values())

    def committable(self) -> dict[Any, int]:
        """The offsets to commit now: per partition, only where they moved on."""
        out = {}
        for partition, upto in self._next.items():
            open_ = self._open.get(partition)
            offset = min(open_) if open_ else upto
            if offset > self._committed.get(partition, -1):
                out[partition] = offset
        return out

    def committed(self, offsets: dict[Any, int]) -> None:
        self._committed.update(offsets)
