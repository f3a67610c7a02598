"""The store's facade: the async SQLAlchemy engine for reads and the operator's queries, writes through the group
commit (on SQLite by the SQLite writer, on PostgreSQL in the async engine's transaction), Alembic migrations, and
driver failures turned into StoreUnavailable."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import delete, insert, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from notifier.errors import StoreUnavailable, StoreUnreachable
from notifier.settings import StorageSettings
from notifier.store import sqlite
from notifier.store.failures import describe_db_error, is_connection_problem
from notifier.store.groupcommit import Batch, GroupCommit, Outcomes, run_each
from notifier.store.tables import rate_slots
from notifier.store.urls import async_url, sqlite_file

T = TypeVar("T")
J = TypeVar("J")
R = TypeVar("R")
_MIGRATIONS = Path(__file__).parent / "migrations"
_PROBE = "notifier:heartbeat"  # the rate-limit bucket the write probe writes to and deletes at once
_MIGRATION_LOCK = 0x6E6F7469  # PostgreSQL advisory lock id, so replicas starting together migrate one at a time


class Store:
    """The notifier's database: engine, migrations, transactions; every driver failure surfaces as StoreUnavailable."""

    def __init__(self, settings: StorageSettings) -> None:
        self.settings = settings
        self.url = async_url(settings.url)
        self.is_sqlite = self.url.startswith("sqlite")
        self.dialect = "sqlite" if self.is_sqlite else "postgresql"
        # SQLite: one process serves the store (claim_sqlite_store), so what is half done in it is this process's;
        # PostgreSQL: replicas share it
        self.single_process = self.is_sqlite
        kwargs: dict[str, Any] = {}
        database = sqlite_file(self.url)
        if database is not None:
            sqlite.private_file(Path(database))
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs["pool_size"] = settings.pool_size
            kwargs["max_overflow"] = settings.pool_size
            kwargs["pool_pre_ping"] = True
            kwargs["pool_timeout"] = settings.connect_timeout
            kwargs["connect_args"] = {
                "timeout": settings.connect_timeout,
                "command_timeout": 30,
                # Every statement is planned for the table as it is when it runs. A generic plan, which asyncpg's
                # prepared statements get after a few runs, is fixed when it is made: one made while a table was
                # small scans it sequentially for good, unless ANALYZE (autovacuum) happens to invalidate it.
                "server_settings": {"plan_cache_mode": "force_custom_plan"},
            }
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        self._read_engine = self.engine.execution_options(**{sqlite.READONLY: True})
        self.sqlite_writer: sqlite.SQLiteWriter | None = None
        if self.is_sqlite:
            sqlite.configure(self.engine.sync_engine)
            self.sqlite_writer = sqlite.SQLiteWriter(self.url)
        self._writes = GroupCommit(self._run_transaction)

    async def run_in_transaction(self, fn: Callable[[Connection], T]) -> T:
        """Run a synchronous write function and return once it is durably committed (see store/groupcommit.py)."""
        result: T = await self._writes.submit_function(fn)
        return result

    async def run_batched(self, batch: Batch[J, R], item: J) -> R:
        """Commit `item` together with the other items of `batch` that wait for the same transaction: one call of
        `batch.fn` for all of them. Returns the item's own result once it is durably committed."""
        result: R = await self._writes.submit_item(batch, item)
        return result

    async def _run_transaction(self, fns: list[Callable[[Connection], Any]]) -> Outcomes:
        if self.sqlite_writer is not None:
            return await self.sqlite_writer.run(fns)
        async with self.begin() as conn:
            result: Outcomes = await conn.run_sync(run_each, fns)
        return result

    async def drain_writes(self) -> None:
        """Wait until every submitted write is committed (shutdown)."""
        await self._writes.drain()

    @asynccontextmanager
    async def begin(self, *, readonly: bool = False) -> AsyncIterator[AsyncConnection]:
        """One transaction; commits on success. Driver and connection failures raise StoreUnavailable.
        `readonly` transactions must not write; on SQLite they do not take the write lock."""
        engine = self._read_engine if readonly else self.engine
        try:
            async with engine.begin() as conn:
                yield conn
        except (TimeoutError, OSError, ConnectionError) as exc:
            raise StoreUnreachable(describe_db_error(exc)) from exc
        except (OperationalError, DBAPIError) as exc:
            unreachable = exc.connection_invalidated or isinstance(exc.orig, OSError | ConnectionError | TimeoutError)
            raise (StoreUnreachable if unreachable else StoreUnavailable)(describe_db_error(exc)) from exc
        except SQLAlchemyError as exc:
            if is_connection_problem(exc):
                raise StoreUnavailable(describe_db_error(exc)) from exc
            raise

    async def prove_writable(self, now: float) -> None:
        """A real write that leaves nothing behind: a full disk or a read-only store makes it raise
        StoreUnavailable (the heartbeat's proof that the notifier can take alerts)."""

        def probe(conn: Connection) -> None:
            conn.execute(insert(rate_slots).values(key=_PROBE, at=now))
            conn.execute(delete(rate_slots).where(rate_slots.c.key == _PROBE))

        await self.run_in_transaction(probe)

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
        await self._writes.stop()
        await self.engine.dispose()
        if self.sqlite_writer is not None:
            await self.sqlite_writer.close()


def _upgrade(sync_conn: Connection) -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = sync_conn
    # Alembic configures logging only from an ini file; we hand it none, so our log setup stays as it is.
    command.upgrade(cfg, "head")
