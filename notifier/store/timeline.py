"""The timeline's SQL: events are written in the transactions that make the decisions they tell of, and read by
group, newest last, or searched by alert name and time."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.domain import Claim, EventKind, TimelineEvent
from notifier.store.ids import id_floor, new_id
from notifier.store.tables import timeline

MAX_TEXT = 2000  # a reason is a sentence; a provider's answer is clipped to this


def record(conn: Connection, events: Sequence[TimelineEvent]) -> None:
    if events:
        conn.execute(timeline.insert(), event_rows(events))


def event_rows(events: Sequence[TimelineEvent]) -> list[dict[str, object]]:
    """The events as the timeline table keeps them."""
    return [{**e.row(), "text": e.text[:MAX_TEXT]} for e in events]


def attempt_line(claim: Claim, group_hash: str, now: float, outcome: str, text: str) -> TimelineEvent:
    """A delivery attempt's line of the timeline of `group_hash` (the group the message is about)."""
    d = claim.delivery
    return TimelineEvent(
        id=new_id(),
        at=now,
        group_hash=group_hash,
        group_key=d.group_key,
        kind=EventKind.ATTEMPT,
        subject=d.target,
        outcome=outcome,
        text=text,
        notification_id=d.notification_id,
        delivery_id=d.id,
    )


def _event(row: object) -> TimelineEvent:
    data = dict(row._mapping)  # type: ignore[attr-defined]
    return TimelineEvent(**{**data, "kind": EventKind(data["kind"])})


async def group_events(conn: AsyncConnection, group_hash: str, limit: int = 500) -> list[TimelineEvent]:
    """The group's newest `limit` events, oldest first."""
    q = select(timeline).where(timeline.c.group_hash == group_hash).order_by(timeline.c.at.desc()).limit(limit)
    events = [_event(r) for r in await conn.execute(q)]
    events.reverse()
    return events


async def groups_like(
    conn: AsyncConnection, text: str, since: float, limit: int = 50
) -> list[tuple[str, str, float, int]]:
    """Groups with events since `since` whose group key contains `text` (an alert name, a label value):
    (group hash, group key, last event, events), the most recent first."""
    q = (
        select(timeline.c.group_hash, func.max(timeline.c.group_key), func.max(timeline.c.at), func.count())
        .where(timeline.c.id >= id_floor(since))
        .group_by(timeline.c.group_hash)
        .order_by(func.max(timeline.c.at).desc())
        .limit(limit)
    )
    if text:
        q = q.where(timeline.c.group_key.contains(text, autoescape=True))
    return [(str(h), str(k), float(at), int(n)) for h, k, at, n in await conn.execute(q)]


async def hashes_of(conn: AsyncConnection, group_key: str) -> list[str]:
    """The groups (by hash) with this Alertmanager group key: one per Alertmanager receiver that sent it."""
    q = select(timeline.c.group_hash).where(timeline.c.group_key == group_key).distinct()
    return [str(h) for (h,) in await conn.execute(q)]
