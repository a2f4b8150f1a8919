"""Delivery policy shared by every channel: retries with exponential backoff and
full jitter, a per-receiver rate limit, and a per-receiver circuit breaker.
Pure bookkeeping with an injectable clock, so it is tested without waiting."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field


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

    def wait_time(self) -> float:
        """Seconds to wait before the next send (0: go now, and a token is taken)."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


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
