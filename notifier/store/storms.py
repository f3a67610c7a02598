"""The store's side of alert storms (delivery/storms.py decides): the messages that wait for one target, the
summary that still waits, and folding groups into a summary message in one transaction."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from notifier.domain import ChangeRecord, Delivery, DeliveryState, EventKind, MessageKind, TimelineEvent
from notifier.store.ids import new_id
from notifier.store.repository import insert_own_notification, read_bodies
from notifier.store.tables import deliveries
from notifier.store.timeline import record

SUMMARY_PREFIX = "storm:"  # a summary's group key: storm:<target>:<id>


@dataclass(frozen=True, slots=True)
class Waiting:
    """What waits for one target: alert messages due within the horizon, with their notifications' bodies, and a
    storm summary that has not gone out yet (with the alerts it already tells)."""

    messages: list[tuple[Delivery, dict[str, Any]]]
    summary: Delivery | None
    summary_alerts: list[dict[str, Any]]


def waiting(conn: Connection, target: str, until: float) -> Waiting:
    rows = [
        Delivery.from_row(r)
        for r in conn.execute(
            select(deliveries).where(
                deliveries.c.target == target,
                deliveries.c.state == DeliveryState.PENDING.value,
                deliveries.c.kind == MessageKind.ALERT.value,
                deliveries.c.next_attempt_at <= until,
                deliveries.c.group_key.not_like(f"{SUMMARY_PREFIX}%"),
            )
        ).mappings()
    ]
    found = (
        conn.execute(
            select(deliveries).where(
                deliveries.c.target == target,
                deliveries.c.state == DeliveryState.PENDING.value,
                deliveries.c.group_key.like(f"{SUMMARY_PREFIX}%"),
            )
        )
        .mappings()
        .first()
    )
    summary = Delivery.from_row(found) if found is not None else None
    wanted = {r.notification_id for r in rows} | ({summary.notification_id} if summary else set())
    bodies = {i: msgspec.json.decode(b) for i, b in read_bodies(conn, wanted).items() if b is not None}
    messages = [(r, bodies[r.notification_id]) for r in rows if r.notification_id in bodies]
    previous = bodies.get(summary.notification_id, {}).get("alerts", []) if summary is not None else []
    return Waiting(messages, summary, previous)


def fold(
    conn: Connection,
    target: str,
    folded: Sequence[Delivery],
    summary_payload: dict[str, Any],
    waiting_summary: Delivery | None,
    now: float,
    *,
    timeline: bool,
) -> str:
    """Mark `folded` delivered by a summary, and queue the summary (or bring the waiting one up to date); returns the
    summary message's id. With `timeline`, each folded group's timeline says which summary took it."""
    group_key = str(summary_payload["groupKey"])
    alerts = len(summary_payload["alerts"])
    sid = insert_own_notification(
        conn,
        source="storm",
        group_key=group_key,
        status="firing",
        count=alerts,
        payload=msgspec.json.encode(summary_payload).decode(),
        now=now,
    )
    conn.execute(
        update(deliveries)
        .where(deliveries.c.id.in_([d.id for d in folded]))
        .values(
            state=DeliveryState.SENT.value,
            sent_at=now,
            updated_at=now,
            provider_ref=f"storm:{sid}",
            last_error=None,
            lease_owner=None,
            lease_until=None,
        )
    )
    if waiting_summary is not None:  # the waiting summary now shows every group folded so far
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == waiting_summary.id)
            .values(notification_id=sid, updated_at=now, change=ChangeRecord(new=alerts).encode())
        )
        message_id, groups = waiting_summary.id, alerts
    else:
        first = folded[0]
        summary = Delivery.new(
            id=new_id(),
            notification_id=sid,
            receiver=first.receiver,
            target=target,
            channel=first.channel,
            group_key=group_key,
            group_hash=hashlib.sha256(group_key.encode()).hexdigest(),
            change=ChangeRecord(new=len(folded)),
            now=now,
        )
        conn.execute(deliveries.insert(), summary.row())
        message_id, groups = summary.id, len(folded)
    if timeline:
        text = (
            f"folded into the storm summary {message_id} on {target}: {groups} groups waited at once behind the "
            "provider's rate limit"
        )
        record(
            conn,
            [
                TimelineEvent(
                    id=new_id(),
                    at=now,
                    group_hash=d.group_hash,
                    group_key=d.group_key,
                    kind=EventKind.ATTEMPT,
                    subject=target,
                    outcome="folded",
                    text=text,
                    notification_id=d.notification_id,
                    delivery_id=d.id,
                )
                for d in folded
            ],
        )
    return message_id
