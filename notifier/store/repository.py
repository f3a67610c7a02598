"""Queries of the notifier's tables; every function takes an open connection, so callers decide the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.domain import DeliveryState
from notifier.store.tables import deliveries, intake_keys, notifications, threads


def dialect_insert(conn: AsyncConnection | Connection, table: Any) -> Any:
    """The dialect's INSERT, which has ON CONFLICT on both SQLite and PostgreSQL."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def get_notification(conn: AsyncConnection, notification_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(select(notifications).where(notifications.c.id == notification_id))).mappings().first()
    return dict(row) if row else None


async def get_notifications(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    if not ids:
        return {}
    rows = (await conn.execute(select(notifications).where(notifications.c.id.in_(list(set(ids)))))).mappings()
    return {r["id"]: dict(r) for r in rows}


async def find_pending(conn: AsyncConnection, target: str, group_hash: str) -> dict[str, Any] | None:
    row = (
        (
            await conn.execute(
                select(deliveries).where(
                    deliveries.c.target == target,
                    deliveries.c.group_hash == group_hash,
                    deliveries.c.state == DeliveryState.PENDING,
                )
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def _claimable(now: float) -> Any:
    other = deliveries.alias("other")
    blocked = exists(
        select(1)
        .select_from(other)
        .where(
            other.c.target == deliveries.c.target,
            other.c.group_hash == deliveries.c.group_hash,
            other.c.state == DeliveryState.SENDING.value,
            other.c.id != deliveries.c.id,
            or_(other.c.lease_until >= now, other.c.created_at < deliveries.c.created_at),
        )
    )
    due = or_(
        and_(deliveries.c.state == DeliveryState.PENDING.value, deliveries.c.next_attempt_at <= now),
        and_(deliveries.c.state == DeliveryState.SENDING.value, deliveries.c.lease_until < now),
    )
    return and_(due, ~blocked)


async def claim_due(conn: AsyncConnection, owner: str, now: float, lease: float, limit: int) -> list[dict[str, Any]]:
    """Lease up to `limit` due messages to this worker. Rows another replica holds are skipped (SKIP LOCKED); a row
    whose lease ran out (its worker died) is taken over. Only the oldest message of a (target, group) is taken, so a
    group's messages go out in order."""
    q = (
        select(deliveries)
        .where(_claimable(now))
        .order_by(deliveries.c.next_attempt_at, deliveries.c.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True, of=deliveries)
    )
    rows = [dict(r) for r in (await conn.execute(q)).mappings()]
    seen: set[tuple[str, str]] = set()
    chosen = []
    for r in sorted(rows, key=lambda r: r["created_at"]):
        k = (r["target"], r["group_hash"])
        if k not in seen:
            seen.add(k)
            chosen.append(r)
    if chosen:
        await conn.execute(
            update(deliveries)
            .where(deliveries.c.id.in_([r["id"] for r in chosen]))
            .values(state=DeliveryState.SENDING.value, lease_owner=owner, lease_until=now + lease, updated_at=now)
        )
    return chosen


async def next_due_at(conn: AsyncConnection) -> float | None:
    q = select(func.min(deliveries.c.next_attempt_at)).where(deliveries.c.state == DeliveryState.PENDING.value)
    v = await conn.scalar(q)
    lease_q = select(func.min(deliveries.c.lease_until)).where(deliveries.c.state == DeliveryState.SENDING.value)
    lv = await conn.scalar(lease_q)
    vals = [float(x) for x in (v, lv) if x is not None]
    return min(vals) if vals else None


def _owned(delivery_id: str, owner: str) -> Any:
    return and_(
        deliveries.c.id == delivery_id,
        deliveries.c.state == DeliveryState.SENDING.value,
        deliveries.c.lease_owner == owner,
    )


async def mark_sent(
    conn: AsyncConnection, delivery_id: str, owner: str, now: float, ref: str | None, parts: int
) -> bool:
    res = await conn.execute(
        update(deliveries)
        .where(_owned(delivery_id, owner))
        .values(
            state=DeliveryState.SENT.value,
            sent_at=now,
            updated_at=now,
            provider_ref=ref,
            parts_sent=parts,
            attempts=deliveries.c.attempts + 1,
            lease_owner=None,
            lease_until=None,
            last_error=None,
        )
    )
    return bool(res.rowcount)


async def mark_retry(
    conn: AsyncConnection,
    delivery_id: str,
    owner: str,
    now: float,
    next_at: float,
    error: str | None,
    parts: int,
    count_attempt: bool = True,
) -> bool:
    """Back to pending for a later try. If a newer state of the group arrived meanwhile (a pending row exists), this
    one is folded into it instead: the newer row carries the newest state and keeps this back-off."""
    row = (await conn.execute(select(deliveries).where(_owned(delivery_id, owner)))).mappings().first()
    if row is None:
        return False
    newer = await find_pending(conn, row["target"], row["group_hash"])
    attempts = row["attempts"] + (1 if count_attempt else 0)
    if newer is not None:
        await conn.execute(
            update(deliveries)
            .where(deliveries.c.id == newer["id"])
            .values(
                next_attempt_at=max(next_at, newer["next_attempt_at"]),
                attempts=max(attempts, newer["attempts"]),
                created_at=min(row["created_at"], newer["created_at"]),
                last_error=error,
                updated_at=now,
            )
        )
        await conn.execute(delete(deliveries).where(deliveries.c.id == delivery_id))
        return True
    await conn.execute(
        update(deliveries)
        .where(deliveries.c.id == delivery_id)
        .values(
            state=DeliveryState.PENDING.value,
            next_attempt_at=next_at,
            attempts=attempts,
            parts_sent=parts,
            last_error=error if error is not None else row["last_error"],
            updated_at=now,
            lease_owner=None,
            lease_until=None,
        )
    )
    return True


async def mark_dead(conn: AsyncConnection, delivery_id: str, owner: str, now: float, error: str, parts: int) -> bool:
    res = await conn.execute(
        update(deliveries)
        .where(_owned(delivery_id, owner))
        .values(
            state=DeliveryState.DEAD.value,
            updated_at=now,
            last_error=error,
            parts_sent=parts,
            attempts=deliveries.c.attempts + 1,
            lease_owner=None,
            lease_until=None,
        )
    )
    return bool(res.rowcount)


async def list_deliveries(
    conn: AsyncConnection, state: str | None, limit: int, before: str | None = None
) -> list[dict[str, Any]]:
    q = select(deliveries).order_by(deliveries.c.id.desc()).limit(limit)
    if state:
        q = q.where(deliveries.c.state == state)
    if before:
        q = q.where(deliveries.c.id < before)
    return [dict(r) for r in (await conn.execute(q)).mappings()]


async def get_delivery(conn: AsyncConnection, delivery_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(select(deliveries).where(deliveries.c.id == delivery_id))).mappings().first()
    return dict(row) if row else None


async def retry_dead(conn: AsyncConnection, delivery_id: str, now: float) -> str:
    """An operator's retry of a dead message: it becomes pending again with fresh attempts. Returns the row's state
    before ('dead' when retried), or 'missing'. If the group has a pending message already, the dead one is folded
    into it (the pending one is newer and will be sent)."""
    row = await get_delivery(conn, delivery_id)
    if row is None:
        return "missing"
    if row["state"] != DeliveryState.DEAD.value:
        return str(row["state"])
    newer = await find_pending(conn, row["target"], row["group_hash"])
    if newer is not None:
        await conn.execute(
            update(deliveries)
            .where(deliveries.c.id == delivery_id)
            .values(state=DeliveryState.SENT.value, last_error=f"superseded by {newer['id']}", updated_at=now)
        )
        await conn.execute(
            update(deliveries).where(deliveries.c.id == newer["id"]).values(next_attempt_at=now, attempts=0)
        )
        return "dead"
    await conn.execute(
        update(deliveries)
        .where(deliveries.c.id == delivery_id)
        .values(state=DeliveryState.PENDING.value, attempts=0, next_attempt_at=now, updated_at=now, created_at=now)
    )
    return "dead"


async def count_pending_by_channel(conn: AsyncConnection) -> dict[str, int]:
    q = (
        select(deliveries.c.channel, func.count())
        .where(deliveries.c.state.in_([DeliveryState.PENDING.value, DeliveryState.SENDING.value]))
        .group_by(deliveries.c.channel)
    )
    return {str(c): int(n) for c, n in (await conn.execute(q)).all()}


async def oldest_pending_created(conn: AsyncConnection) -> float | None:
    q = select(func.min(deliveries.c.created_at)).where(
        deliveries.c.state.in_([DeliveryState.PENDING.value, DeliveryState.SENDING.value])
    )
    v = await conn.scalar(q)
    return float(v) if v is not None else None


async def get_thread(conn: AsyncConnection, target: str, group_hash: str) -> str | None:
    v = await conn.scalar(
        select(threads.c.provider_ref).where(threads.c.target == target, threads.c.group_hash == group_hash)
    )
    return str(v) if v is not None else None


async def set_thread(conn: AsyncConnection, target: str, group_hash: str, ref: str, now: float) -> None:
    ins = dialect_insert(conn, threads).values(target=target, group_hash=group_hash, provider_ref=ref, created_at=now)
    await conn.execute(ins.on_conflict_do_nothing(index_elements=[threads.c.target, threads.c.group_hash]))


async def clear_thread(conn: AsyncConnection, target: str, group_hash: str) -> None:
    await conn.execute(delete(threads).where(threads.c.target == target, threads.c.group_hash == group_hash))


async def purge_expired_keys(conn: AsyncConnection, now: float) -> int:
    res = await conn.execute(delete(intake_keys).where(intake_keys.c.expires_at <= now))
    return int(res.rowcount or 0)
