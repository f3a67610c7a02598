"""Per-target rate limits, enforced before sending so that a provider's 429 is the exception, not the plan.

A sliding log per bucket: a message may go when fewer than `count` went in the last `per` seconds. `reserve` either
books the slot now (returns 0) or says how long to wait, booking nothing.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from notifier.channels import RateRule


class RateLimiter(Protocol):
    """Books sending slots for a set of rules at once."""

    async def reserve(self, rules: list[RateRule], now: float) -> float: ...


class MemoryRateLimiter:
    """The single-process limiter (SQLite deployments)."""

    def __init__(self) -> None:
        self._sent: dict[str, deque[float]] = {}

    async def reserve(self, rules: list[RateRule], now: float) -> float:
        wait = 0.0
        for r in rules:
            log = self._sent.setdefault(r.key, deque())
            while log and log[0] <= now - r.per:
                log.popleft()
            if len(log) >= r.count:
                wait = max(wait, log[len(log) - r.count] + r.per - now)
        if wait > 0:
            return wait
        for r in rules:
            self._sent[r.key].append(now)
        return 0.0
