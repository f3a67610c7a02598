"""Per-target rate limits, enforced before sending so that a provider's 429 is the exception, not the plan.
In memory for a single process (SQLite); in the database when several replicas share PostgreSQL.

A sliding log per bucket: a message may go when fewer than `count` went in the last `per` seconds. A refilling
bucket (`RateRule.refills`, ntfy's request limit) is kept as the time it is full again: a message may go while
at least one message's worth is left. `reserve` either books the slot now (returns 0) or says how long to wait,
booking nothing.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from notifier.domain import Message, RateRule, Severity
from notifier.rates import refill_wait, refilled, turn_at
from notifier.store import Store
from notifier.store import ratelimit as slots

CRITICAL_SHARE = 0.2  # of every minute-scale provider limit, kept free for critical messages


def with_headroom(rules: list[RateRule], message: Message) -> list[RateRule]:
    """A routine message may use only part of each minute-scale limit: a critical alert, or an escalation's page,
    that comes during a flood still finds a free slot at once instead of queueing behind a minute of routine
    messages."""
    if message.note is not None or (message.group.severity is Severity.CRITICAL and message.group.firing):
        return rules
    extra = [
        RateRule(f"{r.key}:routine", max(1, int(r.count * (1 - CRITICAL_SHARE))), r.per, r.refills)
        for r in rules
        if r.per >= 10 and r.count >= 5
    ]
    return rules + extra


class RateLimiter(Protocol):
    """Books sending slots for a set of rules at once."""

    async def reserve(self, rules: list[RateRule], now: float) -> float: ...

    async def book(self, rules: list[RateRule], now: float, count: int) -> None:
        """Count `count` more messages sent now, without asking: the further parts of a message that was split."""
        ...

    async def turn(self, rules: list[RateRule], now: float, ahead: int) -> float:
        """How long until a message that lets `ahead` waiting messages go first may go (rates.turn_at), booking
        nothing."""
        ...


class StoreRateLimiter:
    """Rate limits kept in the shared database (PostgreSQL), so that N replicas together stay within a provider's
    per-chat limits (store/ratelimit.py)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def reserve(self, rules: list[RateRule], now: float) -> float:
        if not rules:
            return 0.0
        wait: float = await self._store.run_in_transaction(lambda conn: slots.reserve(conn, rules, now))
        return wait

    async def book(self, rules: list[RateRule], now: float, count: int) -> None:
        if rules and count > 0:
            await self._store.run_in_transaction(lambda conn: slots.book(conn, rules, now, count))

    async def turn(self, rules: list[RateRule], now: float, ahead: int) -> float:
        if not rules:
            return 0.0
        wait: float = await self._store.run_in_transaction(lambda conn: slots.turn(conn, rules, now, ahead))
        return wait


class MemoryRateLimiter:
    """The single-process limiter (SQLite deployments)."""

    def __init__(self) -> None:
        self._sent: dict[str, deque[float]] = {}
        self._full_at: dict[str, float] = {}  # refilling buckets: when each is full again

    async def reserve(self, rules: list[RateRule], now: float) -> float:
        wait = 0.0
        for r in rules:
            if r.refills:
                wait = max(wait, refill_wait(r, self._full_at.get(r.key), now))
                continue
            log = self._sent.setdefault(r.key, deque())
            while log and log[0] <= now - r.per:
                log.popleft()
            if len(log) >= r.count:
                wait = max(wait, log[len(log) - r.count] + r.per - now)
        if wait > 0:
            return wait
        self._take(rules, now, 1)
        return 0.0

    async def book(self, rules: list[RateRule], now: float, count: int) -> None:
        if count > 0:
            self._take(rules, now, count)

    async def turn(self, rules: list[RateRule], now: float, ahead: int) -> float:
        at = now
        for r in rules:
            sent = [t for t in self._sent.get(r.key, ()) if t > now - r.per]
            at = max(at, turn_at(r, sent, self._full_at.get(r.key), now, ahead))
        return at - now

    def _take(self, rules: list[RateRule], now: float, count: int) -> None:
        for r in rules:
            if r.refills:
                self._full_at[r.key] = refilled(r, self._full_at.get(r.key, now), now, count)
            else:
                self._sent.setdefault(r.key, deque()).extend([now] * count)
