"""Sending slots in the shared database (PostgreSQL), so that several replicas together stay within a provider's
limits: a sliding log per bucket, or for a refilling bucket the time it is full again; each bucket locked for the
decision (a transaction-scoped advisory lock, taken in one order by every replica, so none waits for another in a
cycle)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.domain import DeliveryState, RateRule
from notifier.rates import refill_wait, refilled, turn_at
from notifier.store.repository import dialect_insert
from notifier.store.tables import deliveries, rate_buckets, rate_slots

WAITING_HORIZON = 300.0  # seconds: a message due within this waits "now" (waiting_ahead)


def reserve(conn: Connection, rules: Sequence[RateRule], now: float) -> float:
    """Book a slot in every rule's bucket now and return 0, or return how long to wait, booking nothing."""
    for key in sorted({r.key for r in rules}):
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": key})
    wait = 0.0
    full_at = _full_at(conn, [r for r in rules if r.refills])
    for r in rules:
        if r.refills:
            wait = max(wait, refill_wait(r, full_at.get(r.key), now))
            continue
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
    _take(conn, rules, full_at, now, 1)
    return 0.0


def book(conn: Connection, rules: Sequence[RateRule], now: float, count: int) -> None:
    """Count `count` more messages sent now in every rule's bucket, without asking."""
    if count > 0:
        _take(conn, rules, _full_at(conn, [r for r in rules if r.refills]), now, count)


def turn(conn: Connection, rules: Sequence[RateRule], now: float, ahead: int) -> float:
    """How long until a message that lets `ahead` waiting messages go first may go, booking nothing."""
    full_at = _full_at(conn, [r for r in rules if r.refills])
    at = now
    for r in rules:
        sent: list[float] = []
        if not r.refills:
            q = select(rate_slots.c.at).where(rate_slots.c.key == r.key, rate_slots.c.at > now - r.per)
            sent = [float(t) for t in conn.execute(q.order_by(rate_slots.c.at)).scalars()]
        at = max(at, turn_at(r, sent, full_at.get(r.key), now, ahead))
    return at - now


def _full_at(conn: Connection, rules: Sequence[RateRule]) -> dict[str, float]:
    if not rules:
        return {}
    q = select(rate_buckets.c.key, rate_buckets.c.full_at).where(rate_buckets.c.key.in_([r.key for r in rules]))
    return {str(k): float(at) for k, at in conn.execute(q)}


def _take(conn: Connection, rules: Sequence[RateRule], full_at: dict[str, float], now: float, count: int) -> None:
    logged = [{"key": r.key, "at": now} for r in rules if not r.refills for _ in range(count)]
    if logged:
        conn.execute(insert(rate_slots), logged)
    buckets = [{"key": r.key, "full_at": refilled(r, full_at.get(r.key, now), now, count)} for r in rules if r.refills]
    if buckets:
        ins = dialect_insert(conn.dialect.name, rate_buckets)
        conn.execute(
            ins.on_conflict_do_update(index_elements=[rate_buckets.c.key], set_={"full_at": ins.excluded.full_at}),
            buckets,
        )


async def waiting_ahead(conn: AsyncConnection, target: str, created_at: float, now: float) -> int:
    """How many messages for `target`, made before `created_at`, wait to go within the next five minutes (held by
    its rate limit, or about to be tried): the ones a message held by the limit lets go first. (Those being sent
    are not counted: they hold their slot already. An older one of the same worker that the limit holds too is
    written down as held before this one counts: delivery/turns.py.)"""
    q = select(func.count()).where(
        deliveries.c.target == target,
        deliveries.c.state == DeliveryState.PENDING.value,
        deliveries.c.created_at < created_at,
        deliveries.c.next_attempt_at <= now + WAITING_HORIZON,
    )
    return int(await conn.scalar(q) or 0)
