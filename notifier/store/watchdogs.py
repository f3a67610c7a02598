"""The store's side of the pipeline's watchdog (notifier/watchdog.py decides): when each source's Watchdog was last
seen, and whether it is missing. A source changes state only in the transaction that queues the message telling
it, with its row locked on PostgreSQL: one message per change, across replicas."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import msgspec
from sqlalchemy import select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.store.repository import dialect_insert
from notifier.store.tables import watchdogs


class SourceState(StrEnum):
    OK = "ok"
    MISSING = "missing"


class Sighting(msgspec.Struct, frozen=True, kw_only=True):
    source: str
    name: str
    labels: dict[str, str]
    at: float


class Source(msgspec.Struct, kw_only=True):
    source: str
    name: str
    labels: dict[str, str]
    last_seen: float
    state: SourceState
    missing_since: float | None
    changed_at: float


def _source(row: object) -> Source:
    m = row._mapping  # type: ignore[attr-defined]
    return Source(
        source=m["source"],
        name=m["name"],
        labels=msgspec.json.decode(m["labels"]),
        last_seen=m["last_seen"],
        state=SourceState(m["state"]),
        missing_since=m["missing_since"],
        changed_at=m["changed_at"],
    )


def seen(conn: Connection, sightings: Sequence[Sighting]) -> None:
    """The intake's side: a Watchdog came from these sources (a new source starts as seen)."""
    latest: dict[str, Sighting] = {}
    for s in sightings:
        if s.source not in latest or s.at > latest[s.source].at:
            latest[s.source] = s
    if not latest:
        return
    ins = dialect_insert(conn.dialect.name, watchdogs)
    conn.execute(
        ins.on_conflict_do_update(index_elements=[watchdogs.c.source], set_={"last_seen": ins.excluded.last_seen}),
        [
            {
                "source": s.source,
                "name": s.name,
                "labels": msgspec.json.encode(s.labels).decode(),
                "last_seen": s.at,
                "state": SourceState.OK.value,
                "missing_since": None,
                "changed_at": s.at,
            }
            for s in latest.values()
        ],
    )


def to_check(conn: Connection) -> list[Source]:
    """Every source, locked for this transaction."""
    return [_source(r) for r in conn.execute(select(watchdogs).with_for_update(skip_locked=True))]


def change(conn: Connection, source: str, state: SourceState, missing_since: float | None, now: float) -> None:
    conn.execute(
        update(watchdogs)
        .where(watchdogs.c.source == source)
        .values(state=state.value, missing_since=missing_since, changed_at=now)
    )


async def sources(conn: AsyncConnection) -> list[Source]:
    return [_source(r) for r in await conn.execute(select(watchdogs).order_by(watchdogs.c.name))]
