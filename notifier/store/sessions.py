"""The web view's sessions in the store: every replica sees a login, a logout ends a session everywhere, and the
store never holds a usable cookie (only its SHA-256 hash: the cookie is 256 random bits)."""

from __future__ import annotations

import hashlib

import msgspec
from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from notifier.store.tables import ui_sessions


class StoredSession(msgspec.Struct, frozen=True):
    user: str
    csrf: str
    expires_at: float


def _hash(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


def start(conn: Connection, cookie: str, user: str, csrf: str, now: float, expires_at: float) -> None:
    conn.execute(
        ui_sessions.insert().values(id_hash=_hash(cookie), user=user, csrf=csrf, created_at=now, expires_at=expires_at)
    )


def find(conn: Connection, cookie: str, now: float) -> StoredSession | None:
    row = conn.execute(
        select(ui_sessions.c.user, ui_sessions.c.csrf, ui_sessions.c.expires_at).where(
            ui_sessions.c.id_hash == _hash(cookie), ui_sessions.c.expires_at > now
        )
    ).first()
    return StoredSession(str(row[0]), str(row[1]), float(row[2])) if row is not None else None


def end(conn: Connection, cookie: str) -> None:
    conn.execute(delete(ui_sessions).where(ui_sessions.c.id_hash == _hash(cookie)))
