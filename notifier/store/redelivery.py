"""Redelivery keys: what makes an HA peer's copy of a notification, or Alertmanager's resend of one it thinks was
lost, a duplicate of the notification already stored. A stored notification holds its key for
`dedup.redelivery_window`; a webhook whose key is held gets the holder's id back and changes nothing.

Two implementations of one protocol, chosen when the notifier starts (`redelivery_keys`), as the rate limiter is:
in memory on SQLite, where one process serves the store, and in the intake_keys table on PostgreSQL, where replicas
share it. A key counts only once the transaction that stored its notification has committed: a webhook answered
503 leaves no key behind, and Alertmanager's retry is stored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Protocol

from sqlalchemy import bindparam, delete, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from notifier.errors import StoreUnavailable
from notifier.store.tables import intake_keys, notifications


class KeyConflict(StoreUnavailable):
    """Another replica claimed a redelivery key between our read and our write; the batch is retried."""


class RedeliveryKeys(Protocol):
    def live(self, conn: Connection, keys: list[str], now: float) -> dict[str, str]:
        """key -> id of the notification that holds it, for each of `keys` still held at `now`."""
        ...

    def hold(self, conn: Connection, held: dict[str, str], now: float, expires_at: float) -> None:
        """In the intake transaction: these keys (key -> notification id) are held until `expires_at`. Raises
        KeyConflict when another replica took one of them since `live` read it."""
        ...

    def committed(self, held: dict[str, str], expires_at: float) -> None:
        """The transaction that holds these keys committed."""
        ...


def redelivery_keys(dialect: str, window: float) -> RedeliveryKeys:
    return MemoryKeys(window) if dialect == "sqlite" else TableKeys()


class MemoryKeys:
    """The keys of the last window in memory, for SQLite. Every stored notification carries its key and its arrival
    time, so the index is rebuilt from the notifications table by the first transaction after a start: a
    redelivery after a restart is still recognised. Keeping the keys out of SQLite spares every webhook an insert
    at a random place of a key index, which on a busy store is a page of its own to write to the log and again into
    the database file."""

    __slots__ = ("_expires", "_holders", "_loaded", "_next_sweep", "_sweep_every", "_window")

    def __init__(self, window: float) -> None:
        """Expired keys are swept out every tenth of the window (a pass over all of them), so that they take
        memory for at most 1.1 windows."""
        # Two maps of plain strings and floats: the cyclic garbage collector leaves such maps alone. A map of
        # tuples would be walked whole by every young collection after each insert (an insert of a tracked value
        # makes the map young again), which with a busy window's keys is most of the collector's time.
        self._holders: dict[str, str] = {}  # key -> notification id
        self._expires: dict[str, float] = {}  # key -> expires_at
        self._window = window
        self._sweep_every = window / 10
        self._next_sweep = -math.inf
        self._loaded = False

    def __len__(self) -> int:
        return len(self._holders)

    def add(self, key: str, notification_id: str, expires_at: float) -> None:
        self._holders[key] = notification_id
        self._expires[key] = expires_at

    def live(self, conn: Connection, keys: list[str], now: float) -> dict[str, str]:
        if not self._loaded:
            recent = select(notifications.c.redelivery_key, notifications.c.id, notifications.c.received_at).where(
                notifications.c.received_at > bindparam("since")
            )
            for key, nid, received_at in conn.execute(recent, {"since": now - self._window}):
                if received_at + self._window > self._expires.get(key, -math.inf):
                    self.add(key, nid, received_at + self._window)
            self._loaded = True
        return self.held(keys, now)

    def held(self, keys: Iterable[str], now: float) -> dict[str, str]:
        """key -> notification id, for each of `keys` that a notification still holds at `now`."""
        if now >= self._next_sweep:
            self._sweep(now)
        expires = self._expires
        out: dict[str, str] = {}
        for key in keys:
            expires_at = expires.get(key)
            if expires_at is not None and expires_at > now:
                out[key] = self._holders[key]
        return out

    def hold(self, conn: Connection, held: dict[str, str], now: float, expires_at: float) -> None:
        """Nothing to write: the notifications row is the record, and the key counts once committed."""

    def committed(self, held: dict[str, str], expires_at: float) -> None:
        for key, nid in held.items():
            self.add(key, nid, expires_at)

    def _sweep(self, now: float) -> None:
        for key in [k for k, expires_at in self._expires.items() if expires_at <= now]:
            del self._expires[key], self._holders[key]
        self._next_sweep = now + self._sweep_every


class TableKeys:
    """The keys in the intake_keys table, for PostgreSQL: every replica sees what the others stored. The lookups
    go by primary key."""

    def __init__(self) -> None:
        keys: Any = bindparam("keys", expanding=True)
        self._live = select(intake_keys.c.key, intake_keys.c.notification_id).where(
            intake_keys.c.key.in_(keys), intake_keys.c.expires_at > bindparam("now")
        )
        self._expired = delete(intake_keys).where(
            intake_keys.c.key.in_(keys), intake_keys.c.expires_at <= bindparam("now")
        )

    def live(self, conn: Connection, keys: list[str], now: float) -> dict[str, str]:
        return {key: nid for key, nid in conn.execute(self._live, {"keys": keys, "now": now})}

    def hold(self, conn: Connection, held: dict[str, str], now: float, expires_at: float) -> None:
        # Expired keys give way; a live one that another replica wrote since our read makes the plain INSERT fail
        # on the primary key, and the store retries the batch one webhook at a time.
        if not held:
            return
        conn.execute(self._expired, {"keys": list(held), "now": now})
        rows = [{"key": k, "notification_id": nid, "expires_at": expires_at} for k, nid in held.items()]
        try:
            conn.execute(intake_keys.insert(), rows)
        except IntegrityError as exc:
            raise KeyConflict("a redelivery key was claimed concurrently; retrying") from exc

    def committed(self, held: dict[str, str], expires_at: float) -> None:
        """Nothing to do: the rows became visible to every replica with the commit."""
