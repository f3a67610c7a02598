"""Per-target rate limits, enforced before sending so that a provider's 429 is the exception, not the plan.
In memory for a single process (SQLite); in the database when several replicas share PostgreSQL.

A sliding log per bucket: a message may go when fewer than `count` went in the last `per` seconds. `reserve` either
books the slot now (returns 0) or says how long to wait, booking nothing.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from sqlalchemy import delete, insert, select, text
from sqlalchemy.engine import Connection

from notifier.channels import RateRule
from notifier.store import Store
from notifier.store.tables import rate_slots


class RateLimiter(Protocol):
    """Books sending slots for a set of rules at once."""

    async def reserve(self, rules: list[RateRule], now: float) -> float: ...

    async def book(self, rules: list[RateRule], now: float, count: int) -> None:
        """Count `count` more messages sent now, without asking: the further parts of a message that was split."""
        ...


class StoreRateLimiter:
    """Rate limits kept in the shared database (PostgreSQL), so that N replicas together stay within a provider's
    per-chat limits. Each bucket is locked for the decision (an advisory lock per key), then the messages of its
    last window are counted."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def reserve(self, rules: list[RateRule], now: float) -> float:
        if not rules:
            return 0.0
        return await self._store.run_in_transaction(lambda conn: _reserve(conn, rules, now))

    async def book(self, rules: list[RateRule], now: float, count: int) -> None:
        if rules and count > 0:
            rows = [{"key": r.key, "at": now} for r in rules for _ in range(count)]
            await self._store.run_in_transaction(lambda conn: conn.execute(insert(rate_slots), rows))


def _reserve(conn: Connection, rules: list[RateRule], now: float) -> float:
    for key in sorted({r.key for r in rules}):  # one order for every replica: no deadlock
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": key})
    wait = 0.0
    for r in rules:
        conn.execute(delete(rate_slots).where(rate_slots.c.key == r.key, rate_slots.c.at <= now - r.per))
        oldest_that_counts = conn.execute(
            select(rate_slots.c.at)
            .where(rate_slots.c.key == r.key, rate_slots.c.at > now - r.per)
            .order_by(rate_slots.c.at.desc())
            .offset(r.count - 1)
            .limit(1)
        ).scalar()
        if oldest_that_counts is not None:
            wait = max(wait, float(oldest_that_counts) + r.per - now)
    if wait > 0:
        return wait
    conn.execute(insert(rate_slots), [{"key": r.key, "at": now} for r in rules])
    return 0.0


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

    async def book(self, rules: list[RateRule], now: float, count: int) -> None:
        for r in rules:
            self._sent.setdefault(r.key, deque()).extend([now] * count)
