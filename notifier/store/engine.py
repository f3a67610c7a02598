"""The store's engine: one async SQLAlchemy engine for SQLite (aiosqlite, WAL, synchronous=FULL) or PostgreSQL
(asyncpg), Alembic migrations, and the translation of driver failures into StoreUnavailable."""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from notifier.errors import StoreUnavailable
from notifier.settings import StorageSettings

log = logging.getLogger("notifier.store")
_MIGRATIONS = Path(__file__).parent / "migrations"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_MIGRATION_LOCK = 0x6E6F7469  # PostgreSQL advisory lock id, so replicas starting together migrate one at a time


def new_id() -> str:
    """A ULID: 48 bits of milliseconds and 80 random bits, 26 characters, sortable by creation time."""
    n = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    out = []
    for _ in range(26):
        out.append(_CROCKFORD[n & 31])
        n >>= 5
    return "".join(reversed(out))


def async_url(url: str) -> str:
    """sqlite:///x -> sqlite+aiosqlite:///x; postgresql://... -> postgresql+asyncpg://..."""
    u = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    if u.drivername == "sqlite":
        u = u.set(drivername="sqlite+aiosqlite")
    elif u.drivername == "postgresql":
        u = u.set(drivername="postgresql+asyncpg")
    return u.render_as_string(hide_password=False)


def redact_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


class Store:
    """The notifier's database: engine, migrations, transactions; every driver failure surfaces as StoreUnavailable."""

    def __init__(self, settings: StorageSettings) -> None:
        self.settings = settings
        self.url = async_url(settings.url)
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            db = make_url(self.url).database
            if db and db != ":memory:":
                Path(db).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs["pool_size"] = settings.pool_size
            kwargs["max_overflow"] = settings.pool_size
            kwargs["pool_pre_ping"] = True
            kwargs["pool_timeout"] = settings.connect_timeout
            kwargs["connect_args"] = {"timeout": settings.connect_timeout, "command_timeout": 30}
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            self._configure_sqlite()

    def _configure_sqlite(self) -> None:
        sync_engine = self.engine.sync_engine

        @event.listens_for(sync_engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # We issue BEGIN ourselves (below) so that every transaction takes the write lock up front: two writers
            # then queue on busy_timeout instead of failing on a lock upgrade.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")  # a 202 survives a power cut, not only a crash
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(sync_engine, "begin")
        def _on_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; commits on success. Driver and connection failures raise StoreUnavailable."""
        try:
            async with self.engine.begin() as conn:
                yield conn
        except (TimeoutError, OperationalError, DBAPIError, OSError, ConnectionError) as exc:
            raise StoreUnavailable(describe_db_error(exc)) from exc
        except SQLAlchemyError as exc:
            if _is_connection_problem(exc):
                raise StoreUnavailable(describe_db_error(exc)) from exc
            raise

    async def ping(self) -> None:
        async with self.begin() as conn:
            await conn.execute(text("SELECT 1"))

    async def migrate(self) -> None:
        """Bring the schema to the newest revision (Alembic), one replica at a time on PostgreSQL."""
        async with self.begin() as conn:
            if not self.is_sqlite:
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            await conn.run_sync(_upgrade)

    async def dispose(self) -> None:
        await self.engine.dispose()


def _upgrade(sync_conn: Connection) -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = sync_conn
    # Alembic configures logging only from an ini file; we hand it none, so our log setup stays as it is.
    command.upgrade(cfg, "head")


def _is_connection_problem(exc: BaseException) -> bool:
    s = f"{type(exc).__name__} {exc}".lower()
    return any(w in s for w in ("connect", "closed", "timeout", "disk", "locked", "readonly", "full"))


def describe_db_error(exc: BaseException) -> str:
    """A one-line reason without SQL, parameters or credentials."""
    orig = getattr(exc, "orig", None) or exc
    name = type(orig).__name__
    msg = str(orig).splitlines()[0] if str(orig) else ""
    if "[SQL:" in msg:
        msg = msg.split("[SQL:")[0].strip()
    return f"{name}: {msg}"[:300] if msg else name


def data_dir_of(url: str) -> str | None:
    u = make_url(async_url(url))
    if u.drivername.startswith("sqlite") and u.database and u.database != ":memory:":
        return os.path.dirname(os.path.abspath(u.database))
    return None
