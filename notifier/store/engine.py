"""The store's engine: one async SQLAlchemy engine for SQLite (aiosqlite, WAL, synchronous=FULL) or PostgreSQL
(asyncpg), Alembic migrations, and the translation of driver failures into StoreUnavailable."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from notifier.errors import StoreUnavailable
from notifier.settings import StorageSettings

T = TypeVar("T")
log = logging.getLogger("notifier.store")
_MIGRATIONS = Path(__file__).parent / "migrations"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_READONLY = "notifier_readonly"
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
        self._read_engine = self.engine.execution_options(**{_READONLY: True})
        self.writer_engine: Engine | None = None
        self._writer: ThreadPoolExecutor | None = None
        if self.is_sqlite:
            _configure_sqlite(self.engine.sync_engine)
            # Intake batches run in one thread on the plain sqlite3 driver: one hop per batch instead of several per
            # statement (aiosqlite), which under load each wait for the GIL.
            self.writer_engine = create_engine(
                self.url.replace("sqlite+aiosqlite", "sqlite+pysqlite", 1),
                connect_args={"timeout": 30, "check_same_thread": False},
            )
            _configure_sqlite(self.writer_engine)
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")

    async def run_in_transaction(self, fn: Callable[[Connection], T]) -> T:
        """Run a synchronous function in one transaction: in the writer thread on SQLite, through the async
        connection (greenlet) on PostgreSQL. Store failures raise StoreUnavailable; the function's own errors pass."""
        if self._writer is None:
            async with self.begin() as conn:
                return await conn.run_sync(fn)
        loop = asyncio.get_running_loop()
        result: T = await loop.run_in_executor(self._writer, self._sync_transaction, fn)
        return result

    def _sync_transaction(self, fn: Callable[[Connection], T]) -> T:
        assert self.writer_engine is not None
        try:
            with self.writer_engine.begin() as conn:
                return fn(conn)
        except (OperationalError, DBAPIError, OSError) as exc:
            raise StoreUnavailable(describe_db_error(exc)) from exc

    @asynccontextmanager
    async def begin(self, *, readonly: bool = False) -> AsyncIterator[AsyncConnection]:
        """One transaction; commits on success. Driver and connection failures raise StoreUnavailable.
        `readonly` transactions must not write; on SQLite they do not take the write lock."""
        engine = self._read_engine if readonly else self.engine
        try:
            async with engine.begin() as conn:
                yield conn
        except (TimeoutError, OperationalError, DBAPIError, OSError, ConnectionError) as exc:
            raise StoreUnavailable(describe_db_error(exc)) from exc
        except SQLAlchemyError as exc:
            if _is_connection_problem(exc):
                raise StoreUnavailable(describe_db_error(exc)) from exc
            raise

    async def ping(self) -> None:
        async with self.begin(readonly=True) as conn:
            await conn.execute(text("SELECT 1"))

    async def migrate(self) -> None:
        """Bring the schema to the newest revision (Alembic), one replica at a time on PostgreSQL."""
        async with self.begin() as conn:
            if not self.is_sqlite:
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            await conn.run_sync(_upgrade)

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.writer_engine is not None:
            self.writer_engine.dispose()


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
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

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # readers (health, gauges, the operator API) take no write lock: in WAL mode they never block a writer
        readonly = conn.get_execution_options().get(_READONLY, False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


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
