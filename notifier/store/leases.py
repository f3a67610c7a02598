"""Leases: one replica at a time holds a named job (Telegram's long polling), or a message it sends, until it lets go
or its lease runs out."""

from __future__ import annotations

from sqlalchemy import and_, delete, update
from sqlalchemy.engine import Connection

from notifier.domain import DeliveryState
from notifier.store.repository import dialect_insert
from notifier.store.tables import deliveries, leases


def take_lease(conn: Connection, name: str, owner: str, now: float, ttl: float) -> bool:
    """Hold `name` until now + ttl: renew our own lease, or take one that ran out. False while another holds it."""
    ins = dialect_insert(conn.dialect.name, leases).values(name=name, owner=owner, until=now + ttl)
    conn.execute(ins.on_conflict_do_nothing(index_elements=[leases.c.name]))
    taken = conn.execute(
        update(leases)
        .where(leases.c.name == name, (leases.c.owner == owner) | (leases.c.until < now))
        .values(owner=owner, until=now + ttl)
    )
    return bool(taken.rowcount)


def drop_lease(conn: Connection, name: str, owner: str) -> None:
    conn.execute(delete(leases).where(and_(leases.c.name == name, leases.c.owner == owner)))


def keep_delivery(conn: Connection, delivery_id: str, owner: str, until: float) -> bool:
    """Hold the message we are sending until `until`; False when it is no longer ours (another replica took it over
    once its lease ran out, and sends it)."""
    kept = conn.execute(
        update(deliveries)
        .where(
            deliveries.c.id == delivery_id,
            deliveries.c.state == DeliveryState.SENDING.value,
            deliveries.c.lease_owner == owner,
        )
        .values(lease_until=until)
    )
    return bool(kept.rowcount)
