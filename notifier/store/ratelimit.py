"""Sending slots in the shared database (PostgreSQL), so that several replicas together stay within a provider's
limits: a sliding log per bucket, each bucket locked for the decision (a transaction-scoped advisory lock, taken in
one order by every replica, so none waits for another in a cycle)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, insert, select, text
from sqlalchemy.engine import Connection

from notifier.domain import RateRule
from notifier.store.tables import rate_slots


def reserve(conn: Connection, rules: Sequence[RateRule], now: float) -> float:
    """Book a slot in every rule's bucket now and return 0, or return how long to wait, booking nothing."""
    for key in sorted({r.key for r in rules}):
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


def book(conn: Connection, rules: Sequence[RateRule], now: float, count: int) -> None:
    """Count `count` more messages sent now in every rule's bucket, without asking."""
    conn.execute(insert(rate_slots), [{"key": r.key, "at": now} for r in rules for _ in range(count)])
