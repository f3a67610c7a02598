"""Queries of the notifier's outbox, threads and notifications.

Writes are synchronous functions of a `Connection`, run through `Store.run_in_transaction`: on SQLite every write of
the process then goes through one writer thread (no two connections fight for the write lock), on PostgreSQL
through the async engine. Reads are async and take no write lock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import msgspec
from sqlalchemy import and_, delete, exists, func, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.alertmanager import correct_alerts
from notifier.changes import fold_changes
from notifier.domain import ChangeRecord, Claim, Delivery, DeliveryState
from notifier.redaction import redact
from notifier.store.ids import new_id
from notifier.store.payloads import pack, unpack
from notifier.store.tables import deliveries, notifications, threads


def dialect_insert(dialect: str, table: Any) -> Any:
    """The dialect's INSERT (by its name), which has ON CONFLICT on both SQLite and PostgreSQL."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


# -- reads (async) ------------------------------------------------------------------------------------------------


def read_bodies(conn: Connection, ids: Collection[str]) -> dict[str, bytes | None]:
    """Notification bodies as received, by id: None for one whose packed body cannot be read; an id that is not
    stored is left out."""
    return {
        i: unpack(text, packed)
        for i, text, packed in conn.execute(
            select(notifications.c.id, notifications.c.payload, notifications.c.payload_packed).where(
                notifications.c.id.in_(ids)
            )
        ).all()
    }


async def next_due_at(conn: AsyncConnection) -> float | None:
    q = select(func.min(deliveries.c.next_attempt_at)).where(deliveries.c.state == DeliveryState.PENDING.value)
    v = await conn.scalar(q)
    lease_q = select(func.min(deliveries.c.lease_until)).where(deliveries.c.state == DeliveryState.SENDING.value)
    lv = await conn.scalar(lease_q)
    vals = [float(x) for x in (v, lv) if x is not None]
    return min(vals) if vals else None


async def list_deliveries(
    conn: AsyncConnection, state: str | None, limit: int, before: str | None = None
) -> list[Delivery]:
    q = select(deliveries).order_by(deliveries.c.id.desc()).limit(limit)
    if state:
        q = q.where(deliveries.c.state == state)
    if before:
        q = q.where(deliveries.c.id < before)
    return [Delivery.from_row(r) for r in (await conn.execute(q)).mappings()]


async def get_delivery(conn: AsyncConnection, delivery_id: str) -> Delivery | None:
    found: Delivery | None = await conn.run_sync(lambda c: get_delivery_sync(c, delivery_id))
    return found


def get_delivery_sync(conn: Connection, delivery_id: str) -> Delivery | None:
    found = get_deliveries(conn, [delivery_id])
    return found[0] if found else None


def get_deliveries(conn: Connection, ids: Collection[str]) -> list[Delivery]:
    """The outbox rows of these ids that exist, oldest first."""
    q = select(deliveries).where(deliveries.c.id.in_(list(ids))).order_by(deliveries.c.id)
    return [Delivery.from_row(r) for r in conn.execute(q).mappings()]


async def count_pending_by_channel(conn: AsyncConnection) -> dict[str, int]:
    q = (
        select(deliveries.c.channel, func.count())
        .where(deliveries.c.state.in_([DeliveryState.PENDING.value, DeliveryState.SENDING.value]))
        .group_by(deliveries.c.channel)
    )
    return {str(c): int(n) for c, n in (await conn.execute(q)).all()}


async def last_errors(conn: AsyncConnection) -> dict[str, tuple[str, float]]:
    """Each channel's latest delivery error, redacted: (text, when)."""
    q = (
        select(deliveries.c.channel, deliveries.c.last_error, deliveries.c.updated_at)
        .where(deliveries.c.last_error.is_not(None))
        .order_by(deliveries.c.updated_at.desc())
        .limit(500)
    )
    out: dict[str, tuple[str, float]] = {}
    for channel, error, at in await conn.execute(q):
        out.setdefault(str(channel), (redact(str(error)), float(at)))
    return out


async def oldest_pending_created(conn: AsyncConnection) -> float | None:
    q = select(func.min(deliveries.c.created_at)).where(
        deliveries.c.state.in_([DeliveryState.PENDING.value, DeliveryState.SENDING.value])
    )
    v = await conn.scalar(q)
    return float(v) if v is not None else None


# -- writes (sync, one transaction each, through Store.run_in_transaction) -----------------------------------------


def find_pending(conn: Connection, target: str, group_hash: str) -> dict[str, Any] | None:
    q = select(deliveries).where(
        deliveries.c.target == target,
        deliveries.c.group_hash == group_hash,
        deliveries.c.state == DeliveryState.PENDING.value,
    )
    row = conn.execute(q).mappings().first()
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


def claim_due(conn: Connection, owner: str, now: float, lease: float, limit: int) -> list[Claim]:
    """Lease up to `limit` due messages to this worker, each with its notification's body and its group's thread
    reference on that target. Rows another replica holds are skipped (SKIP LOCKED); a row whose lease ran out (its
    worker died) is taken over. Only the oldest message of a (target, group) is taken, so a group's messages go
    out in order."""
    q = (
        select(deliveries)
        .where(_claimable(now))
        .order_by(deliveries.c.next_attempt_at, deliveries.c.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True, of=deliveries)
    )
    rows = [Delivery.from_row(r) for r in conn.execute(q).mappings()]
    seen: set[tuple[str, str]] = set()
    chosen: list[Delivery] = []
    for r in sorted(rows, key=lambda r: r.created_at):
        k = (r.target, r.group_hash)
        if k not in seen:
            seen.add(k)
            chosen.append(r)
    if not chosen:
        return []
    until = now + lease
    conn.execute(
        update(deliveries)
        .where(deliveries.c.id.in_([r.id for r in chosen]))
        .values(state=DeliveryState.SENDING.value, lease_owner=owner, lease_until=until, updated_at=now)
    )
    payloads = read_bodies(conn, {r.notification_id for r in chosen})
    refs = {
        (t, g): ref
        for t, g, ref in conn.execute(
            select(threads.c.target, threads.c.group_hash, threads.c.provider_ref).where(
                tuple_(threads.c.target, threads.c.group_hash).in_(list(seen))
            )
        ).all()
    }
    return [
        Claim.of(
            msgspec.structs.replace(
                r, state=DeliveryState.SENDING, lease_owner=owner, lease_until=until, updated_at=now
            ),
            payloads.get(r.notification_id),
            refs.get((r.target, r.group_hash)),
        )
        for r in chosen
    ]


def _owned(delivery_id: str, owner: str) -> Any:
    return and_(
        deliveries.c.id == delivery_id,
        deliveries.c.state == DeliveryState.SENDING.value,
        deliveries.c.lease_owner == owner,
    )


def mark_sent(conn: Connection, delivery_id: str, owner: str, now: float, ref: str | None, parts: int) -> bool:
    res = conn.execute(
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


def mark_retry(
    conn: Connection,
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
    row = conn.execute(select(deliveries).where(_owned(delivery_id, owner))).mappings().first()
    if row is None:
        return False
    newer = find_pending(conn, row["target"], row["group_hash"])
    attempts = row["attempts"] + (1 if count_attempt else 0)
    if newer is not None:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == newer["id"])
            .values(
                change=_folded_change(conn, row, newer),
                next_attempt_at=max(next_at, newer["next_attempt_at"]),
                attempts=max(attempts, newer["attempts"]),
                created_at=min(row["created_at"], newer["created_at"]),
                last_error=error,
                updated_at=now,
            )
        )
        conn.execute(delete(deliveries).where(deliveries.c.id == delivery_id))
        return True
    conn.execute(
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


def _folded_change(conn: Connection, older: Mapping[Any, Any], newer: Mapping[Any, Any]) -> str:
    """The change record of `newer`, a waiting message of a group, once it takes in `older`, a message of the same
    group and target that did not go out: measured from what was last delivered, so that nothing the older one
    would have told is lost (changes.fold_changes). If either body cannot be read, the newer record stands."""
    bodies = read_bodies(conn, {older["notification_id"], newer["notification_id"]})
    older_body, newer_body = bodies.get(older["notification_id"]), bodies.get(newer["notification_id"])
    if older_body is None or newer_body is None:
        return str(newer["change"])
    newer_change = ChangeRecord.decode(newer["change"])
    alerts = correct_alerts(msgspec.json.decode(newer_body).get("alerts", []), newer_change.stale)
    current = {a["fingerprint"]: a["status"] for a in alerts}
    older_alerts = msgspec.json.decode(older_body).get("alerts", [])
    return fold_changes(ChangeRecord.decode(older["change"]), older_alerts, newer_change, current).encode()


def mark_dead(conn: Connection, delivery_id: str, owner: str, now: float, error: str, parts: int) -> bool:
    res = conn.execute(
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


def release_leases(conn: Connection, owner: str | None) -> int:
    """Hand messages being sent back to the outbox (all of them, or one worker's); returns how many.

    A group has at most one pending message per target (the newest state waits there), and a message that was
    being sent can have a newer one of its group waiting behind it. The oldest leased message of a (target, group)
    with nothing pending becomes pending; every other one keeps its place as a message whose lease has run out,
    which the claim takes over before anything newer of its group (it goes by age), exactly as when another
    replica takes over a dead worker's lease. So taking messages back never meets the one-pending rule, and the
    older change still goes out first."""
    q = select(deliveries.c.id, deliveries.c.target, deliveries.c.group_hash).where(
        deliveries.c.state == DeliveryState.SENDING.value
    )
    if owner is not None:
        q = q.where(deliveries.c.lease_owner == owner)
    leased = conn.execute(q.order_by(deliveries.c.created_at, deliveries.c.id)).all()
    if not leased:
        return 0
    groups = {(t, g) for _i, t, g in leased}
    waiting = {
        (t, g)
        for t, g in conn.execute(
            select(deliveries.c.target, deliveries.c.group_hash).where(
                deliveries.c.state == DeliveryState.PENDING.value,
                deliveries.c.group_hash.in_({g for _t, g in groups}),
            )
        ).all()
        if (t, g) in groups
    }
    to_pending: list[str] = []
    to_expire: list[str] = []
    for delivery_id, target, group in leased:
        if (target, group) in waiting:
            to_expire.append(delivery_id)
        else:
            waiting.add((target, group))
            to_pending.append(delivery_id)
    if to_pending:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id.in_(to_pending))
            .values(state=DeliveryState.PENDING.value, lease_owner=None, lease_until=None)
        )
    if to_expire:
        conn.execute(update(deliveries).where(deliveries.c.id.in_(to_expire)).values(lease_owner=None, lease_until=0.0))
    return len(leased)


def retry_dead(conn: Connection, delivery_id: str, now: float) -> str:
    """An operator's retry of a dead message: it becomes pending again with fresh attempts. Returns the row's state
    before ('dead' when retried), or 'missing'. If the group has a pending message already, the dead one is folded
    into it (the pending one is newer and will be sent)."""
    row = conn.execute(select(deliveries).where(deliveries.c.id == delivery_id)).mappings().first()
    if row is None:
        return "missing"
    if row["state"] != DeliveryState.DEAD.value:
        return str(row["state"])
    newer = find_pending(conn, row["target"], row["group_hash"])
    if newer is not None:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == delivery_id)
            .values(state=DeliveryState.SENT.value, last_error=f"superseded by {newer['id']}", updated_at=now)
        )
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == newer["id"])
            .values(next_attempt_at=now, attempts=0, change=_folded_change(conn, row, newer))
        )
        return "dead"
    conn.execute(
        update(deliveries)
        .where(deliveries.c.id == delivery_id)
        .values(state=DeliveryState.PENDING.value, attempts=0, next_attempt_at=now, updated_at=now, created_at=now)
    )
    return "dead"


def set_thread(conn: Connection, target: str, group_hash: str, ref: str, now: float) -> None:
    ins = dialect_insert(conn.dialect.name, threads).values(
        target=target, group_hash=group_hash, provider_ref=ref, created_at=now
    )
    conn.execute(ins.on_conflict_do_nothing(index_elements=[threads.c.target, threads.c.group_hash]))


def clear_thread(conn: Connection, target: str, group_hash: str) -> None:
    conn.execute(delete(threads).where(threads.c.target == target, threads.c.group_hash == group_hash))


def insert_own_notification(
    conn: Connection, *, source: str, group_key: str, status: str, count: int, payload: str, now: float
) -> str:
    """A notification the notifier makes itself (a digest, a storm summary), stored like a received one so that its
    message goes through the outbox like any other. Returns its id."""
    nid = new_id()
    text, packed = pack(payload.encode("utf-8"))
    conn.execute(
        notifications.insert().values(
            id=nid,
            received_at=now,
            am_receiver=source,
            group_key=group_key,
            status=status,
            alert_count=count,
            redelivery_key=hashlib.sha256(f"{source}\x00{group_key}\x00{nid}".encode()).hexdigest(),
            payload=text,
            payload_packed=packed,
        )
    )
    return nid


def queue_newest(conn: Connection, messages: Sequence[Delivery]) -> None:
    """Queue messages the notifier makes itself (an escalation step, a resolve for the receivers it paged, the
    watchdog's). Where a message of the same group already waits for a target, that one is brought up to the newest
    state instead (a group has one waiting message per target)."""
    if not messages:
        return
    waiting = {
        (str(t), str(g))
        for t, g in conn.execute(
            select(deliveries.c.target, deliveries.c.group_hash).where(
                deliveries.c.target.in_([m.target for m in messages]),
                deliveries.c.group_hash.in_({m.group_hash for m in messages}),
                deliveries.c.state == DeliveryState.PENDING.value,
            )
        )
    }
    fresh = [m.row() for m in messages if (m.target, m.group_hash) not in waiting]
    if fresh:
        conn.execute(deliveries.insert(), fresh)
    for m in messages:
        if (m.target, m.group_hash) in waiting:
            conn.execute(
                update(deliveries)
                .where(
                    deliveries.c.target == m.target,
                    deliveries.c.group_hash == m.group_hash,
                    deliveries.c.state == DeliveryState.PENDING.value,
                )
                .values(notification_id=m.notification_id, change=m.change, updated_at=m.updated_at)
            )
