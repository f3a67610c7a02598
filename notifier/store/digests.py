"""The store's side of email digests: the items collected at intake (one per alert and firing episode, written with
the intake's batch in one statement), the ticks taken (one row per receiver and tick, so that exactly one digest goes
out per tick, however many workers race for it), and the items a digest covers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy import func, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from notifier.domain import ChangeRecord, Delivery, MessageKind
from notifier.store.ids import new_id
from notifier.store.repository import dialect_insert, insert_own_notification
from notifier.store.tables import deliveries, digest_items, digest_runs


class DigestItem(msgspec.Struct, kw_only=True):
    """One alert's firing episode, as a receiver's digest tells it (the `digest_items` table)."""

    receiver: str
    fingerprint: str
    starts_at: str
    ends_at: str | None
    status: str
    alertname: str
    severity: str
    summary: str
    labels: dict[str, str]
    generator_url: str
    first_seen: float
    last_seen: float

    @classmethod
    def of(cls, receiver: str, alert: dict[str, Any], now: float) -> DigestItem:
        """From an alert of a webhook's payload, as decoded JSON."""
        labels = alert.get("labels", {})
        ends = alert.get("endsAt", "")
        return cls(
            receiver=receiver,
            fingerprint=alert["fingerprint"],
            starts_at=alert["startsAt"],
            ends_at=None if not ends or ends.startswith("0001-") else ends,
            status=alert["status"],
            alertname=labels.get("alertname", "alert"),
            severity=labels.get("severity", "warning"),
            summary=alert.get("annotations", {}).get("summary", ""),
            labels=labels,
            generator_url=alert.get("generatorURL", ""),
            first_seen=now,
            last_seen=now,
        )


def record_items(conn: Connection, items: Sequence[DigestItem]) -> None:
    """Note alerts for their receivers' next digests: a new episode is added, a known one updated (its status, end,
    text and when it was last seen). One statement for the batch; the last state of an episode in it wins."""
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for item in items:
        row = msgspec.structs.asdict(item)
        row["labels"] = msgspec.json.encode(item.labels).decode()
        rows[(item.receiver, item.fingerprint, item.starts_at)] = {"id": new_id(), **row}
    if not rows:
        return
    ins = dialect_insert(conn.dialect.name, digest_items)
    stmt = ins.on_conflict_do_update(
        index_elements=[digest_items.c.receiver, digest_items.c.fingerprint, digest_items.c.starts_at],
        set_={
            name: getattr(ins.excluded, name)
            for name in ("status", "ends_at", "last_seen", "summary", "labels", "generator_url")
        },
    )
    conn.execute(stmt, list(rows.values()))


def take_tick(conn: Connection, receiver: str, tick: float, now: float) -> tuple[bool, float | None]:
    """Claim the receiver's digest of `tick`: (taken, the tick of its previous digest). Not taken when that tick, or a
    later one, was taken already (by this process before, or by another replica just now)."""
    last = conn.execute(select(func.max(digest_runs.c.tick_at)).where(digest_runs.c.receiver == receiver)).scalar()
    if last is not None and float(last) >= tick:
        return False, float(last)
    try:
        with conn.begin_nested():
            conn.execute(digest_runs.insert().values(receiver=receiver, tick_at=tick, ran_at=now))
    except IntegrityError:
        return False, float(last) if last is not None else None
    return True, float(last) if last is not None else None


def items_for(conn: Connection, receiver: str, since: float | None, tick: float) -> list[DigestItem]:
    """What a digest up to `tick` covers: every episode seen since the previous digest, and what still fires."""
    q = select(digest_items).where(digest_items.c.receiver == receiver, digest_items.c.last_seen <= tick)
    if since is not None:
        q = q.where(or_(digest_items.c.last_seen > since, digest_items.c.status == "firing"))
    out = []
    for r in conn.execute(q).mappings():
        row = {k: v for k, v in r.items() if k != "id"}
        row["labels"] = msgspec.json.decode(row["labels"])
        out.append(DigestItem(**row))
    return out


def queue_digest(
    conn: Connection,
    receiver: str,
    targets: Sequence[tuple[str, str]],
    content: dict[str, Any],
    tick: float,
    now: float,
) -> None:
    """The digest of `tick`, stored like a notification, and a message of it to each of `targets` (key, channel)."""
    group_key = f"digest:{receiver}"
    nid = insert_own_notification(
        conn,
        source="digest",
        group_key=group_key,
        status="digest",
        count=int(content.get("total", 0)),
        payload=msgspec.json.encode(content).decode(),
        now=now,
    )
    for target, channel in targets:
        message = Delivery.new(
            id=new_id(),
            notification_id=nid,
            receiver=receiver,
            target=target,
            channel=channel,
            group_key=group_key,
            group_hash=f"digest-{tick:.0f}",
            change=ChangeRecord(),
            now=now,
            kind=MessageKind.DIGEST,
        )
        conn.execute(deliveries.insert(), message.row())
